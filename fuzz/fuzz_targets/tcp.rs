//! The tcp parser.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    baitwall_dataplane::fuzzing::tcp(data);
});
