//! The capture segment decoder, with a round-trip oracle (what decodes encodes and decodes
//! to the same header and records).
#![no_main]
#![deny(unsafe_code)]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    lifeboat::format::capture::fuzzing::exercise_segment(data);
});
