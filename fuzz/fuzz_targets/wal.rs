//! The WAL decoders (framing, CRC chain, records, etcd's open/read model, `wal dump`).
#![no_main]
#![deny(unsafe_code)]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    lifeboat::format::wal::fuzzing::exercise_wal(data.to_vec());
});
