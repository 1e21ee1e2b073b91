//! Fuzzes the Xenstore message parser and request handling with arbitrary byte streams.
//! Run with `cargo fuzz run message_parser` (needs a nightly toolchain).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    xenstore::fuzzing::run(data);
});
