//! The point-in-time replay writer: record streams decoded from arbitrary bytes replayed
//! onto small good databases; an accepted replay must leave a database the strict checker
//! accepts, at the target revision, and a second replay of the same stream must be refused.
#![no_main]
#![deny(unsafe_code)]
use libfuzzer_sys::fuzz_target;
use lifeboat::restore::replay::fuzzing::exercise;

// Its oracle copies small databases and builds small vectors all the time: glibc's malloc
// took a fifth of its time (scripts/fuzz.sh says what else makes it fast).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fuzz_target!(|data: &[u8]| {
    exercise(data);
});
