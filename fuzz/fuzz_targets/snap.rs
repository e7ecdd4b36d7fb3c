//! The `*.snap` file decoder.
#![no_main]
#![deny(unsafe_code)]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    lifeboat::format::snap::exercise(data);
});
