//! Entry points shared by the cargo-fuzz targets (`fuzz/fuzz_targets/wal.rs`) and the
//! property tests (`tests/it/wal_robustness.rs`): feed arbitrary bytes through every WAL
//! decoding path (the snap files' entry point is `snap::exercise`). They must return, never panic, whatever the input.

use super::{dump, open, scan, Decoder, Segment, Start};

/// Treat `bytes` as the only WAL segment and run the scan, etcd's open/read-all model and
/// the record-by-record decoder with `wal dump`'s descriptions.
pub fn exercise_wal(bytes: Vec<u8>) {
    let segs = vec![Segment::from_bytes(0, 0, bytes)];
    let sc = scan(&segs);
    let _ = open(&segs, &sc, Start { index: 3, term: 2 });
    let mut d = Decoder::new(&segs);
    // Every step consumes input or stops; the bound only guards against a bug looping.
    for _ in 0..100_000 {
        match d.next_frame() {
            Ok(Some(f)) => {
                let _ = dump::describe("x", f.offset, f.number, &f.record);
            }
            Ok(None) => break,
            Err(f) => {
                // False means "moves on to the next file": still progress.
                d.skip_failed(&f);
            }
        }
    }
}
