use std::io::Write;

use sha2::{Digest, Sha256};

use super::*;
use crate::io::ReadAt;

fn sample(len: usize) -> Vec<u8> {
    (0..len).map(|i| ((i * 7919) % 251) as u8).collect()
}

fn compress(data: &[u8], threads: usize, frame_size: usize) -> (Vec<u8>, FramedStats) {
    let mut w = FrameWriter::new(
        Vec::new(),
        FrameOptions {
            level: 3,
            adaptive: false,
            frame_size,
            threads,
        },
    )
    .unwrap();
    for chunk in data.chunks(10_000) {
        w.write_all(chunk).unwrap();
    }
    w.finish().unwrap()
}

#[test]
fn round_trip_random_access_and_plain_zstd() {
    let data = sample(1_000_000);
    for threads in [1, 3] {
        let (obj, stats) = compress(&data, threads, 64 * 1024);
        assert_eq!(stats.raw_len, data.len() as u64);
        assert_eq!(stats.stored_len, obj.len() as u64);
        assert_eq!(stats.frames, 16);
        assert_eq!(stats.stored_sha256, <[u8; 32]>::from(Sha256::digest(&obj)));
        // Plain zstd decodes it, skipping the seek table.
        assert_eq!(zstd::decode_all(&obj[..]).unwrap(), data);
        let r = FramedReader::open(obj).unwrap();
        assert_eq!(r.size(), data.len() as u64);
        for (off, len) in [
            (0usize, 10usize),
            (65_530, 20),
            (999_990, 10),
            (300_000, 200_000),
        ] {
            let got = r.read_vec_at(off as u64, len).unwrap();
            assert_eq!(got, data[off..off + len]);
        }
        assert!(r.read_vec_at(999_995, 10).is_err());
        // Parallel walk sees the same frames, in order.
        let mut seen = Vec::new();
        let mut next = 0;
        let table = r
            .walk_parallel(3, |i, _, raw| {
                assert_eq!(i, next);
                next += 1;
                seen.extend_from_slice(&raw.unwrap());
                Ok(())
            })
            .unwrap();
        assert_eq!(seen, data);
        assert_eq!(table.len() as u64, stats.stored_len - r.table_offset());
    }
}

#[test]
fn empty_input_is_a_valid_object() {
    let (obj, stats) = compress(&[], 1, 64 * 1024);
    assert_eq!(stats.frames, 0);
    let r = FramedReader::open(obj).unwrap();
    assert_eq!(r.size(), 0);
}

#[test]
fn truncation_and_damage_are_reported_not_panicked() {
    let data = sample(300_000);
    let (obj, _) = compress(&data, 1, 64 * 1024);
    for cut in [0, 1, 8, obj.len() / 2, obj.len() - 1] {
        assert!(
            FramedReader::open(obj[..cut].to_vec()).is_err(),
            "cut {cut}"
        );
    }
    let mut bad = obj.clone();
    bad[100] ^= 0xff;
    let r = FramedReader::open(bad).unwrap();
    assert!(r.read_vec_at(0, 100).is_err());
}

proptest::proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
        if let Ok(r) = FramedReader::open(data) {
            let _ = r.read_vec_at(0, r.size().min(64) as usize);
        }
    }
}

/// A damaged seek table must not size a decompression buffer: an entry claiming 4 GiB
/// is refused when the table is read, before any frame is decoded.
#[test]
fn oversized_frame_claims_are_refused() {
    let data = sample(200_000);
    let (obj, _) = compress(&data, 1, 64 * 1024);
    let r = FramedReader::open(obj.clone()).unwrap();
    let table = r.table_offset() as usize;
    // Second entry's decompressed size (entry 1 at table + 8 + 8, raw size 4 bytes in).
    for (entry, claim) in [
        (1usize, u32::MAX),
        (0, MAX_FRAME_SIZE + 1),
        (1, 64 * 1024 + 1),
    ] {
        let mut bad = obj.clone();
        let at = table + 8 + entry * 8 + 4;
        bad[at..at + 4].copy_from_slice(&claim.to_le_bytes());
        let e = FramedReader::open(bad).err().expect("refused");
        assert!(e.to_string().contains("decompressed bytes"), "{e}");
    }
    // Reserved descriptor bits are damage too.
    let mut bad = obj.clone();
    let d = obj.len() - 5;
    bad[d] = 0x01;
    assert!(FramedReader::open(bad).is_err());
}

#[test]
fn level_policy_steps_down_when_workers_hold_the_stream_and_back_up_when_idle() {
    let mut p = writer::LevelPolicy::new(3);
    // Waiting for a worker twice in a row: one step down; never below 1.
    let down: Vec<i32> = (0..8).map(|_| p.next(true, false)).collect();
    assert_eq!(down, [3, 2, 2, 1, 1, 1, 1, 1]);
    // A frame that neither waited nor found a worker idle changes nothing.
    assert_eq!(p.next(false, false), 1);
    // Eight idle frames in a row: one step up; never above the configured level.
    let up: Vec<i32> = (0..24).map(|_| p.next(false, true)).collect();
    assert_eq!(up[6], 1);
    assert_eq!(up[7], 2);
    assert_eq!(up[15], 3);
    assert_eq!(up[23], 3);
    // A wait interrupts an idle streak (and the reverse).
    let mut p = writer::LevelPolicy::new(3);
    p.next(true, false);
    assert_eq!(p.next(true, false), 2);
    for _ in 0..7 {
        p.next(false, true);
    }
    assert_eq!(p.next(true, false), 2, "one wait: no step down");
    for _ in 0..7 {
        assert_eq!(p.next(false, true), 2, "the idle streak started again");
    }
    assert_eq!(p.next(false, true), 3);
    // A configured level of 1 (or below) stays where it is.
    let mut p = writer::LevelPolicy::new(1);
    assert_eq!(p.next(true, false), 1);
    assert_eq!(p.next(true, false), 1);
}

#[test]
fn adaptive_frames_of_mixed_levels_read_back_and_are_counted() {
    let data = sample(3_000_000);
    let mut w = FrameWriter::new(
        Vec::new(),
        FrameOptions {
            level: 19,
            adaptive: true,
            frame_size: 64 * 1024,
            threads: 2,
        },
    )
    .unwrap();
    // Large writes: the producer keeps finding both workers busy at level 19.
    for chunk in data.chunks(1 << 20) {
        w.write_all(chunk).unwrap();
    }
    let (obj, stats) = w.finish().unwrap();
    assert_eq!(stats.levels.values().sum::<u64>(), stats.frames as u64);
    assert!(
        stats.levels.keys().all(|l| (1..=19).contains(l)),
        "{:?}",
        stats.levels
    );
    assert_eq!(zstd::decode_all(&obj[..]).unwrap(), data);
    let r = FramedReader::open(obj).unwrap();
    assert_eq!(r.read_vec_at(2_999_000, 1000).unwrap(), data[2_999_000..]);
}
