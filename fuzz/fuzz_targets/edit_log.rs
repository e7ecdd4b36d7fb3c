//! The edit log a compacted restore plan keeps for `restore apply`: the decoder, with a
//! round-trip oracle (what decodes encodes to the same bytes and decodes to the same
//! transactions).
#![no_main]
#![deny(unsafe_code)]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    lifeboat::format::bolt::write::log::exercise_log(data);
});
