//! Lines ExaBGP writes to the bridge (routes received from the fabric).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(line) = std::str::from_utf8(data) {
        baitwall_control::bgp::fuzz_line(line);
    }
});
