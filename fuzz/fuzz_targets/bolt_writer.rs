//! The copy-on-write writer: a restore-like transaction on arbitrary images; a good image
//! must stay good (strict check) and read back the edits.
#![no_main]
#![deny(unsafe_code)]
use libfuzzer_sys::fuzz_target;
use lifeboat::format::bolt::write::exercise;
use lifeboat::offline::fuzzing::prepare;

fuzz_target!(|data: &[u8]| {
    let img = prepare(data);
    exercise(&img);
});
