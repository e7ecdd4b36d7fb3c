//! The page reader: open, list buckets, walk every bucket with a cursor, seek, get, last.
#![no_main]
#![deny(unsafe_code)]
use libfuzzer_sys::fuzz_target;
use lifeboat::offline::fuzzing::{exercise_reader, prepare};

fuzz_target!(|data: &[u8]| {
    let img = prepare(data);
    exercise_reader(&img);
});
