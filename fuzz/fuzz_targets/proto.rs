//! The protobuf and JSON decoders of etcd's bucket values.
#![no_main]
#![deny(unsafe_code)]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    lifeboat::offline::fuzzing::exercise_decoders(data);
});
