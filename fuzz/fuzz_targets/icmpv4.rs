//! The icmpv4 parser.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    baitwall_dataplane::fuzzing::icmpv4(data);
});
