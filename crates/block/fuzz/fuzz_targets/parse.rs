//! Fuzzes the VHD parser, checker and data path with arbitrary file contents.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    block::fuzz::fuzz_image(data);
});
