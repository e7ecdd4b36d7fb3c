//! The WAL and snap decoders on hostile input, starting from a small real WAL written by etcd
//! 3.5.1: exhaustive single-byte flips and zeroed tails checked against etcd's own rule
//! (formats §5.7), and random mutations that must never panic.
use crate::common::*;

use std::sync::OnceLock;

use lifeboat::format::snap;
use lifeboat::format::wal::{self, decode::zero_sector, Outcome, Segment, Start};
use proptest::prelude::*;

/// A small real WAL: its used bytes followed by 4 KiB of zeros (the preallocated tail), and the
/// newest snap file.
struct Small {
    wal: Vec<u8>,
    used: usize,
    snap: Vec<u8>,
}

fn small() -> &'static Small {
    static S: OnceLock<Small> = OnceLock::new();
    S.get_or_init(|| {
        // Kept under target/tmp so a failure can be replayed on the same bytes.
        let root = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("wal-small");
        let (wp, sp) = (root.join("small.wal"), root.join("newest.snap"));
        if let (Ok(wal), Ok(snap)) = (std::fs::read(&wp), std::fs::read(&sp)) {
            let segs = vec![Segment::from_bytes(0, 0, wal.clone())];
            let used = wal::scan(&segs).files[0].end as usize;
            return Small { wal, used, snap };
        }
        let mut c = Cluster::single(
            &etcd35(),
            Opts {
                snapshot_count: Some(8),
                ..Opts::default()
            },
        );
        for i in 0..20 {
            c.put(&format!("/small/{i}"), &"x".repeat(i * 37));
        }
        c.ctl_ok(&["del", "/small/3"]);
        c.ctl_ok(&["lease", "grant", "60"]);
        c.ctl_ok(&["compact", "5"]);
        c.stop(0);
        let wal_dir = c.data_dir(0).join("member/wal");
        let l = wal::list_dir(&wal_dir).unwrap();
        assert_eq!(l.segments.len(), 1);
        let scan = wal::scan(&l.segments);
        let used = scan.files[0].end as usize;
        let mut bytes = std::fs::read(l.segments[0].path.as_ref().unwrap()).unwrap();
        bytes.truncate(used + 4096);
        let mut snaps = snap::read_dir(&c.data_dir(0).join("member/snap")).unwrap();
        let snap = std::fs::read(&snaps.snaps.remove(0).path).unwrap();
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(&sp, &snap).unwrap();
        std::fs::write(&wp, &bytes).unwrap();
        Small {
            wal: bytes,
            used,
            snap,
        }
    })
}

fn outcome(bytes: Vec<u8>) -> Outcome {
    let segs = vec![Segment::from_bytes(0, 0, bytes)];
    let scan = wal::scan(&segs);
    wal::open(&segs, &scan, Start::default()).outcome
}

/// Frames of the original WAL: (offset, record length, padding).
fn frames(b: &[u8], used: usize) -> Vec<(usize, usize, usize)> {
    let mut v = Vec::new();
    let mut off = 0;
    while off + 8 <= used {
        let w = u64::from_le_bytes(b[off..off + 8].try_into().unwrap());
        if w == 0 {
            break;
        }
        let n = (w & 0x00ff_ffff_ffff_ffff) as usize;
        let pad = if (w as i64) < 0 {
            ((w >> 56) & 7) as usize
        } else {
            0
        };
        v.push((off, n, pad));
        off += 8 + n + pad;
    }
    v
}

/// Every record's (type, crc, data), in order.
fn records(b: &[u8]) -> Vec<(i64, u32, Vec<u8>)> {
    let segs = vec![Segment::from_bytes(0, 0, b.to_vec())];
    let mut d = wal::Decoder::new(&segs);
    let mut v = Vec::new();
    while let Ok(Some(f)) = d.next_frame() {
        v.push((f.record.rtype, f.record.crc, f.record.data().to_vec()));
    }
    v
}

/// etcd's rule, restated independently: the frame at `off` in `b` is torn when its bytes
/// run past the end, or contain a 512-byte-aligned chunk that is all zero.
fn etcd_calls_torn(b: &[u8], off: usize) -> bool {
    let Some(w) = b.get(off..off + 8) else {
        return true;
    };
    let w = u64::from_le_bytes(w.try_into().unwrap());
    let n = w & 0x00ff_ffff_ffff_ffff;
    let pad = if (w as i64) < 0 { (w >> 56) & 7 } else { 0 };
    let start = off + 8;
    let end = (start as u64).saturating_add(n + pad);
    if end > b.len() as u64 {
        return true;
    }
    let data = &b[start..end as usize];
    let mut cur = 0;
    let mut pos = start;
    while cur < data.len() {
        let len = (512 - pos % 512).min(data.len() - cur);
        if data[cur..cur + len].iter().all(|&x| x == 0) {
            return true;
        }
        cur += len;
        pos += len;
    }
    false
}

#[test]
fn the_small_wal_is_clean() {
    let s = small();
    assert_eq!(outcome(s.wal.clone()), Outcome::Clean);
    assert!(frames(&s.wal, s.used).len() > 40);
}

/// Flip every byte of the used part once: never a torn verdict unless etcd's rule says torn,
/// never "clean" unless the byte is padding (etcd does not read padding).
#[test]
fn every_flipped_byte() {
    let s = small();
    let fr = frames(&s.wal, s.used);
    let padding = |p: usize| {
        fr.iter()
            .any(|&(o, n, pad)| p >= o + 8 + n && p < o + 8 + n + pad)
    };
    let (mut torn, mut fatal, mut clean) = (0u32, 0u32, 0u32);
    for p in 0..s.used {
        let mut b = s.wal.clone();
        b[p] ^= 0xff;
        match outcome(b.clone()) {
            Outcome::Clean => {
                // etcd does not read padding, nor the padding bits of the last frame's length
                // when only zeros follow: a flip there changes no record etcd reads.
                assert!(
                    padding(p) || records(&b) == records(&s.wal),
                    "flip at {p} went unnoticed (FLIP={p} cargo test --test wal_robustness debug_flip -- --ignored)"
                );
                clean += 1;
            }
            Outcome::Torn { at, .. } => {
                assert!(
                    etcd_calls_torn(&b, at.offset as usize),
                    "flip at {p}: torn verdict at {} but etcd's rule says not torn",
                    at.offset
                );
                torn += 1;
            }
            Outcome::Fatal { at, etcd_error, .. } => {
                if let Some(at) = at {
                    if etcd_error == "walpb: crc mismatch" || etcd_error.starts_with("proto:") {
                        assert!(
                            !etcd_calls_torn(&b, at.offset as usize),
                            "flip at {p}: fatal at {} but etcd's rule says torn",
                            at.offset
                        );
                    }
                }
                fatal += 1;
            }
        }
    }
    eprintln!("flips: {fatal} fatal, {torn} torn (etcd's rule agrees), {clean} padding");
    assert!(fatal > torn * 10);
}

/// Zero every tail from a sector boundary on: what a power cut does to sector-atomic disks.
/// Never fatal. From any 8-byte-aligned offset: fatal only where etcd's rule says not torn.
#[test]
fn every_zeroed_tail() {
    let s = small();
    for start in (0..s.used).step_by(8) {
        let mut b = s.wal.clone();
        b[start..].fill(0);
        let o = outcome(b.clone());
        if start % 512 == 0 {
            assert!(
                !matches!(o, Outcome::Fatal { .. }) || start < 512,
                "zeroed tail from sector {start}: {o:?}"
            );
        }
        if let Outcome::Fatal {
            at: Some(at),
            etcd_error,
            ..
        } = &o
        {
            if etcd_error == "walpb: crc mismatch" {
                assert!(!etcd_calls_torn(&b, at.offset as usize), "{start}: {o:?}");
            }
        }
    }
}

fn check_never_panics(bytes: Vec<u8>) {
    wal::fuzzing::exercise_wal(bytes);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn mutated_real_wal_never_panics(
        edits in prop::collection::vec((any::<usize>(), any::<u8>()), 1..20),
        cut in any::<usize>(),
    ) {
        let s = small();
        let mut b = s.wal.clone();
        for (p, v) in edits {
            let i = p % b.len();
            b[i] = v;
        }
        if cut % 3 == 0 {
            b.truncate(cut % (b.len() + 1));
        }
        check_never_panics(b);
    }

    #[test]
    fn random_bytes_never_panic(b in prop::collection::vec(any::<u8>(), 0..4096)) {
        check_never_panics(b.clone());
        lifeboat::format::snap::exercise(&b);
    }

    #[test]
    fn mutated_snap_never_panics(edits in prop::collection::vec((any::<usize>(), any::<u8>()), 1..10)) {
        let mut b = small().snap.clone();
        for (p, v) in edits {
            let i = p % b.len();
            b[i] = v;
        }
        let _ = snap::decode(&b);
    }
}

#[test]
fn zero_sector_rule_matches() {
    // The library's sector split agrees with the restatement above on a few shapes.
    let mut b = vec![1u8; 2048];
    b[1024..1536].fill(0);
    assert_eq!(zero_sector(&b[8..], 8), Some(1024));
}

#[test]
#[ignore]
fn debug_flip() {
    let s = small();
    let p: usize = std::env::var("FLIP").unwrap().parse().unwrap();
    let fr = frames(&s.wal, s.used);
    let f = fr
        .iter()
        .find(|&&(o, n, pad)| p >= o && p < o + 8 + n + pad)
        .unwrap();
    eprintln!(
        "frame {f:?} bytes {:02x?}",
        &s.wal[f.0..(f.0 + 8 + f.1 + f.2).min(f.0 + 64)]
    );
    let mut b = s.wal.clone();
    b[p] ^= 0xff;
    eprintln!("{:?}", outcome(b));
}

/// Not a test: writes the seed corpus of the `wal` and `snap` fuzz targets for
/// `scripts/fuzz.sh` (run with --ignored): the small real WAL (whole, and cut after its used
/// bytes) and its snap file.
#[test]
#[ignore]
fn write_fuzz_seeds() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    let s = small();
    let (wal_dir, snap_dir) = (root.join("wal"), root.join("snap"));
    std::fs::create_dir_all(&wal_dir).unwrap();
    std::fs::create_dir_all(&snap_dir).unwrap();
    std::fs::write(wal_dir.join("seed-small"), &s.wal).unwrap();
    std::fs::write(wal_dir.join("seed-used"), &s.wal[..s.used]).unwrap();
    std::fs::write(snap_dir.join("seed-newest"), &s.snap).unwrap();
}
