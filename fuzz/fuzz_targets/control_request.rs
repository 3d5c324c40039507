//! Control-socket request lines.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = baitwall_control::api::protocol::parse(data);
});
