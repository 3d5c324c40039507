//! Configuration files.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    baitwall_dataplane::fuzzing::config(data);
});
