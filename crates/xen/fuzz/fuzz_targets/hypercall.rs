//! Fuzzes the hypercall dispatcher: raw bytes decoded into hypercall numbers, arguments and
//! argument memory against a synthetic guest (`xen::hypercall::fuzz`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    xen::hypercall::fuzz::fuzz_hypercalls(data);
});
