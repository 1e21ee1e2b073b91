//! Seeded fuzz-style run of [`crate::hypercall::fuzz`]: tens of thousands of random hypercalls
//! in every test run, without cargo-fuzz.

use crate::hypercall::fuzz;
use crate::prng::Prng;

#[test]
fn random_hypercalls_keep_invariants() {
    let mut total = fuzz::Stats::default();
    for seed in 0..48u64 {
        let mut rng = Prng::new(0x4859_5045 + seed);
        let mut data = vec![0u8; 8192 + rng.below(16384) as usize];
        rng.fill(&mut data);
        let s = fuzz::run(&data, |h| h.hv.evtchn().check_invariants());
        total.calls += s.calls;
        total.platform_calls += s.platform_calls;
        for (n, c) in s.ok_by_nr {
            *total.ok_by_nr.entry(n).or_default() += c;
        }
    }
    assert!(total.calls > 20_000, "only {} calls", total.calls);
    // Every implemented hypercall must succeed now and then, or the inputs test little.
    for n in fuzz::IMPLEMENTED {
        let ok = total.ok_by_nr.get(&n).copied().unwrap_or(0);
        assert!(
            ok > 50,
            "hypercall {n} succeeded only {ok} times: {:?}",
            total.ok_by_nr
        );
    }
    assert!(
        total.platform_calls > 1000,
        "{} platform calls",
        total.platform_calls
    );
}

#[test]
fn degenerate_inputs() {
    for data in [&[][..], &[0], &[0xff; 7], &[0; 300], &[0xff; 300]] {
        fuzz::fuzz_hypercalls(data);
    }
}
