//! The decoy services' parsers (HTTP, TLS, SMB, DCE/RPC, NetBIOS, RTSP, LPD).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    baitwall_dataplane::fuzzing::service(data);
});
