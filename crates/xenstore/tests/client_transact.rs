//! `Client::transact` over a real daemon: a commit that conflicts is run again.

use xenstore::client::ClientError;
use xenstore::testing::TestDaemon;
use xenstore::XsError;

#[test]
fn a_conflicting_commit_is_retried_and_an_error_aborts() {
    let d = TestDaemon::start();
    let mut c = d.client();
    let mut other = d.client();
    other.write(0, "/n", b"0").unwrap();
    let mut attempts = 0;
    let v = c
        .transact(|c, tx| -> Result<u32, ClientError> {
            attempts += 1;
            let n: u32 = String::from_utf8_lossy(&c.read(tx, "/n")?).parse().unwrap();
            // Another client changes the node the first time: that commit must fail.
            if attempts == 1 {
                other.write(0, "/n", b"5").unwrap();
            }
            c.write(tx, "/n", (n + 1).to_string().as_bytes())?;
            Ok(n + 1)
        })
        .unwrap();
    assert_eq!((attempts, v), (2, 6));
    assert_eq!(d.read("/n").as_deref(), Some("6"));

    // An error inside aborts: nothing written.
    let r: Result<(), ClientError> = c.transact(|c, tx| {
        c.write(tx, "/m", b"x")?;
        Err(ClientError::Xs(XsError::Inval))
    });
    assert!(matches!(r, Err(ClientError::Xs(XsError::Inval))));
    assert_eq!(d.read("/m"), None);

    // A node that always changes gives EAGAIN after the attempts run out.
    let r: Result<(), ClientError> = c.transact(|c, tx| {
        c.read(tx, "/n")?;
        other.write(0, "/n", b"7").unwrap();
        c.write(tx, "/n", b"8")
    });
    assert!(matches!(r, Err(ClientError::Xs(XsError::Again))));
}
