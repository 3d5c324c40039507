//! Frames from the wire: classification, the engine, and every header parser.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    baitwall_dataplane::fuzzing::frame(data);
});
