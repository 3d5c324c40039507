//! The icmpv6 parser.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    baitwall_dataplane::fuzzing::icmpv6(data);
});
