//! The point-in-time replay writer: record streams decoded from arbitrary bytes replayed
//! onto small good databases; an accepted replay must leave a database the strict checker
//! accepts, at the target revision, and a second replay of the same stream must be refused.
#![no_main]
#![deny(unsafe_code)]
use libfuzzer_sys::fuzz_target;
use lifeboat::restore::replay::fuzzing::exercise;

fuzz_target!(|data: &[u8]| {
    exercise(data);
});
