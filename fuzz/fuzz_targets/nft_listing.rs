//! `nft -j list set` output (a remote firewall's, through `ssh`, included).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        baitwall_control::enforce::nft_plan::fuzz_listing(text);
    }
});
