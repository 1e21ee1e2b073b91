use super::*;
use crate::testutil::{fails, load, load_err, parses};

const UUID: &str = "12345678-9abc-def0-1234-56789abcdef0";

fn vif(spec: &str) -> VifSpec {
    parses(parse_vif_spec, spec)
}

fn err(spec: &str) -> String {
    fails(parse_vif_spec, spec)
}

#[test]
fn empty_spec_takes_every_default() {
    let v = vif("");
    assert_eq!(v.bridge, "xenbr0");
    assert_eq!(v.mac.0[..3], XEN_OUI);
    assert_eq!(
        v.mac.0[3] & 0x80,
        0,
        "xl leaves the upper half of the OUI alone"
    );
    assert_eq!(
        (v.devid, v.vifname, v.script, v.ip),
        (None, None, None, None)
    );
    assert_eq!((v.rate, v.mtu, v.queues), (None, None, None));
}

#[test]
fn every_key() {
    let v = vif(
        "mac=00:16:3E:74:3d:76, model=rtl8139, bridge=br1, type=vif, vifname=web0, \
         script=vif-route, ip=10.0.0.2 fd00::2, rate=10Mb/s@20ms, devid=3, mtu=9000, \
         backend=Domain-0, queues=4",
    );
    assert_eq!(v.mac, MacAddr([0x00, 0x16, 0x3e, 0x74, 0x3d, 0x76]));
    assert_eq!(v.mac.to_string(), "00:16:3e:74:3d:76");
    assert_eq!(v.bridge, "br1");
    assert_eq!(v.vifname.as_deref(), Some("web0"));
    assert_eq!(v.script.as_deref(), Some("vif-route"));
    assert_eq!(v.ip.as_deref(), Some("10.0.0.2 fd00::2"));
    let r = v.rate.unwrap();
    assert_eq!(
        (r.bytes_per_sec, r.bytes_per_interval, r.interval_us),
        (1_250_000, 25_000, 20_000)
    );
    assert_eq!((v.devid, v.mtu, v.queues), (Some(3), Some(9000), Some(4)));
}

#[test]
fn mac_parsing() {
    assert_eq!("02:00:00:00:00:01".parse(), Ok(MacAddr([2, 0, 0, 0, 0, 1])));
    for bad in [
        "00:16:3e:74:3d",
        "00:16:3e:74:3d:76:01",
        "00-16-3e-74-3d-76",
        "0:16:3e:74:3d:76",
        "00:16:3e:74:3d:7g",
        "00:16:3e:74:3d:+7",
        "",
    ] {
        assert!(bad.parse::<MacAddr>().is_err(), "{bad:?} accepted");
    }
    assert_eq!(
        err("mac=00:16:3e:74:3d"),
        "'00:16:3e:74:3d' is not a MAC address (six hex pairs such as 00:16:3e:12:34:56)"
    );
    assert_eq!(
        err("mac=01:00:5e:00:00:01"),
        "'01:00:5e:00:00:01' is a multicast address, not a NIC's"
    );
    assert!(err("mac=00:00:00:00:00:00").contains("not a usable MAC"));
}

#[test]
fn generated_macs() {
    let a = MacAddr::xen_derived(UUID, 0);
    assert_eq!(
        a,
        MacAddr::xen_derived(UUID, 0),
        "derived addresses are stable"
    );
    assert_eq!(a, MacAddr::xen_derived(&UUID.to_uppercase(), 0));
    assert_ne!(a, MacAddr::xen_derived(UUID, 1));
    assert_ne!(
        a,
        MacAddr::xen_derived("22345678-9abc-def0-1234-56789abcdef0", 0)
    );
    assert_eq!(a.0[..3], XEN_OUI);
    assert_eq!(a.0[3] & 0x80, 0);
    let b = parse_vif_spec_with("bridge=br0", || a).unwrap();
    assert_eq!(b.mac, a);
    let given = parse_vif_spec_with("mac=00:16:3e:00:00:01", || a).unwrap();
    assert_eq!(given.mac, MacAddr([0, 0x16, 0x3e, 0, 0, 1]));
    // Random ones differ (a clash in 2^23 is not expected in a handful of draws).
    let draws: Vec<MacAddr> = (0..4).map(|_| MacAddr::xen_random()).collect();
    assert!(draws.windows(2).any(|w| w[0] != w[1]), "{draws:?}");
}

#[test]
fn error_messages() {
    assert_eq!(
        err("brige=xenbr1"),
        "unknown vif parameter 'brige' (did you mean 'bridge'?)"
    );
    assert_eq!(err("colour=red"), "unknown vif parameter 'colour'");
    assert_eq!(
        err("bridge"),
        "'bridge' is not KEY=VALUE (did you mean 'bridge'?)"
    );
    assert_eq!(
        err("type=ioemu"),
        "type 'ioemu' (an emulated NIC) is not supported: Oxen gives guests PV network devices (type=vif)"
    );
    assert_eq!(err("type=pv"), "'pv' is not a vif type (vif)");
    assert_eq!(
        err("mac=00:16:3e:00:00:01,mac=00:16:3e:00:00:02"),
        "'mac' is given twice"
    );
    assert_eq!(err("bridge=a,bridge=b"), "'bridge' is given twice");
    assert_eq!(
        err("bridge=a/b"),
        "'bridge': 'a/b' is not an interface name (1 to 15 characters, no '/', ':' or spaces)"
    );
    assert!(err("bridge=").contains("is not an interface name"));
    assert!(err("vifname=averyveryverylongname").contains("is not an interface name"));
    assert!(err("vifname=..").contains("is not an interface name"));
    assert_eq!(
        err("ip=10.0.0.300"),
        "'ip': '10.0.0.300' is not an IP address"
    );
    assert_eq!(err("ip= "), "'ip': no address given");
    assert_eq!(
        vif("ip=10.0.0.2/24 fd00::/64").ip.as_deref(),
        Some("10.0.0.2/24 fd00::/64")
    );
    assert_eq!(
        err("ip=10.0.0.2/33"),
        "'ip': '10.0.0.2/33' is not an IP address"
    );
    assert!(err("ip=fd00::/129").contains("is not an IP address"));
    assert_eq!(
        err("rate=10Mbit/s"),
        "'rate': '10Mbit/s' is not a rate (such as 10Mb/s, 250KB/s, 1GB/s)"
    );
    assert_eq!(
        err("devid=-1"),
        "'devid': '-1' is not a device id (0 to 2147483647)"
    );
    assert_eq!(err("mtu=67"), "'mtu': '67' is not an MTU (68 to 65535)");
    assert_eq!(err("queues=0"), "'queues': 0 is out of range (1 to 16)");
    assert_eq!(err("queues=17"), "'queues': 17 is out of range (1 to 16)");
    assert!(err("backend=netdom").contains("driver domains are not supported"));
    assert_eq!(err("script="), "'script': the script is empty");
}

#[test]
fn domain_config_gets_the_vif_list() {
    let c = load(&format!(
        "vif = [ '', 'bridge=br1,mac=00:16:3e:00:00:01' ]\nuuid = '{UUID}'\n"
    ))
    .unwrap();
    assert_eq!(c.vifs.len(), 2);
    assert_eq!((c.vifs[0].devid, c.vifs[1].devid), (Some(0), Some(1)));
    // The UUID given after the list still seeds the default address.
    assert_eq!(c.vifs[0].mac, MacAddr::xen_derived(UUID, 0));
    assert_eq!(c.vifs[1].mac, MacAddr([0, 0x16, 0x3e, 0, 0, 1]));
    assert_eq!(
        (c.vifs[0].bridge.as_str(), c.vifs[1].bridge.as_str()),
        ("xenbr0", "br1")
    );
    let again = load(&format!(
        "vif = [ '', 'bridge=br1,mac=00:16:3e:00:00:01' ]\nuuid = '{UUID}'\n"
    ))
    .unwrap();
    assert_eq!(again.vifs, c.vifs, "the same file gives the same vifs");
    assert!(load("").unwrap().vifs.is_empty());
}

#[test]
fn missing_devids_take_the_lowest_free_one() {
    let c = load("vif = [ 'devid=1', '', '' ]").unwrap();
    let ids: Vec<Option<u32>> = c.vifs.iter().map(|v| v.devid).collect();
    assert_eq!(ids, [Some(1), Some(0), Some(2)]);
}

#[test]
fn domain_errors_name_file_line_key_and_index() {
    assert_eq!(load_err("vif = [ 'bridge=xenbr0',\n 'type=ioemu' ]"),
        "d.cfg:3: 'vif': vif 1 ('type=ioemu'): type 'ioemu' (an emulated NIC) is not supported: Oxen gives guests PV network devices (type=vif)"
    );
    assert_eq!(
        load_err("vif = [ 'devid=2', 'devid=2' ]"),
        "d.cfg:3: 'vif': vif 1 ('devid=2'): devid 2 is already used by vif 0"
    );
    assert_eq!(load_err("vif = [ 'mac=00:16:3e:00:00:01', 'mac=00:16:3E:00:00:01' ]"),
        "d.cfg:3: 'vif': vif 1 ('mac=00:16:3E:00:00:01'): MAC 00:16:3e:00:00:01 is already used by vif 0"
    );
    let e = load_err("vif = [ 'rate=5' ]");
    assert!(
        e.starts_with("d.cfg:3: 'vif': vif 0 ('rate=5'): 'rate': '5' is not a rate"),
        "{e}"
    );
    assert_eq!(
        load_err("vif = 'bridge=xenbr0'"),
        "d.cfg:3: 'vif': expected a list of strings, found a string"
    );
    assert_eq!(
        load_err("vfi = [ '' ]"),
        "d.cfg:3: 'vfi': unknown setting (did you mean 'vif'?)"
    );
}
