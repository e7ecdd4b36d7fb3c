//! The strict checker and the etcd report built on it (hashkv pre-pass included).
#![no_main]
#![deny(unsafe_code)]
use libfuzzer_sys::fuzz_target;
use lifeboat::offline::fuzzing::{exercise_checker, prepare};

fuzz_target!(|data: &[u8]| {
    let img = prepare(data);
    exercise_checker(&img);
});
