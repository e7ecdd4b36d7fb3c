//! Property tests: the bbolt reader, the checker, the etcd report and the decoders never
//! panic and always finish, on damaged copies of valid databases and on random bytes.
//! The same entry points are the fuzz targets in `fuzz/` (see `scripts/fuzz.sh`);
//! crashing inputs found there become cases in `regressions` below.

use lifeboat::format::bolt::build::{etcd_like, DbBuilder};
use lifeboat::format::bolt::{check, fix_checksums, CheckOptions};
use lifeboat::offline::fuzzing::{exercise_checker, exercise_decoders, exercise_reader, prepare};
use proptest::prelude::*;

fn seeds() -> Vec<Vec<u8>> {
    let mut deep = DbBuilder::new(512);
    deep.fill = 200;
    let b = |s: &str| s.as_bytes().to_vec();
    let entries: Vec<(Vec<u8>, Vec<u8>)> = (0..60)
        .map(|i| (format!("k{i:03}").into_bytes(), vec![b'v'; i * 7]))
        .collect();
    vec![
        etcd_like(512, 12, 10),
        etcd_like(512, 40, 300),
        etcd_like(4096, 30, 5000),
        deep.build(&[(b("a"), entries.clone()), (b("key"), entries)]),
    ]
}

fn mutate(img: &mut Vec<u8>, muts: &[(usize, u8)], cut: Option<usize>, fix: bool) {
    for &(at, v) in muts {
        if !img.is_empty() {
            let i = at % img.len();
            img[i] = v;
        }
    }
    if fix {
        fix_checksums(img);
    }
    if let Some(c) = cut {
        if !img.is_empty() {
            img.truncate(c % img.len());
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, .. ProptestConfig::default() })]

    #[test]
    fn damaged_dbs_never_panic(
        seed in 0usize..4,
        muts in prop::collection::vec((any::<usize>(), any::<u8>()), 1..12),
        cut in prop::option::weighted(0.1, any::<usize>()),
        fix in any::<bool>(),
    ) {
        let mut img = seeds()[seed].clone();
        mutate(&mut img, &muts, cut, fix);
        exercise_reader(&img);
        exercise_checker(&img);
    }

    /// Damage confined to page headers and element arrays, behind valid metas: the
    /// checker must report something or nothing, but always finish.
    #[test]
    fn header_damage_is_reported_or_harmless(
        seed in 0usize..4,
        page in 2usize..64,
        off in 0usize..64,
        v in any::<u8>(),
    ) {
        let mut img = seeds()[seed].clone();
        let ps = if seed == 2 { 4096 } else { 512 };
        let at = page * ps + off;
        if at < img.len() {
            img[at] = v;
        }
        fix_checksums(&mut img);
        let r = check(&img[..], &CheckOptions::default(), &mut ());
        // Reports are bounded.
        prop_assert!(r.problems.len() <= CheckOptions::default().max_problems);
        exercise_reader(&img);
    }

    #[test]
    fn random_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..3000)) {
        exercise_decoders(&data);
        let img = prepare(&data);
        exercise_reader(&img);
        exercise_checker(&img);
    }
}

/// Crashing or hanging inputs found by fuzzing, kept as regression cases: every file in
/// tests/fuzz-regressions/ goes through every bbolt entry point (reader, checker, the
/// copy-on-write writer), the decoders, the edit log and the point-in-time replay's oracle (whole,
/// chunked, compacted read twice and read once).
#[test]
fn regressions() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz-regressions");
    let Ok(rd) = std::fs::read_dir(&dir) else {
        return;
    };
    for e in rd {
        let p = e.unwrap().path();
        let data = std::fs::read(&p).unwrap();
        let img = prepare(&data);
        exercise_decoders(&data);
        lifeboat::format::capture::fuzzing::exercise_segment(&data);
        lifeboat::format::bolt::write::log::exercise_log(&data);
        exercise_reader(&img);
        exercise_checker(&img);
        lifeboat::format::bolt::write::exercise(&img);
        lifeboat::restore::replay::fuzzing::exercise(&data);
    }
}

/// Not a test: writes the seed corpus for `scripts/fuzz.sh` (run with --ignored).
#[test]
#[ignore]
fn write_fuzz_seeds() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    for target in ["bolt_reader", "bolt_writer", "checker", "proto"] {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir).unwrap();
        for (i, s) in seeds().iter().enumerate() {
            if s.len() > 60_000 {
                continue;
            }
            let mut with_ctrl = vec![1u8];
            with_ctrl.extend_from_slice(s);
            std::fs::write(dir.join(format!("seed-{i}")), &with_ctrl).unwrap();
        }
    }
    let capture = root.join("capture");
    std::fs::create_dir_all(&capture).unwrap();
    for (i, s) in lifeboat::format::capture::fuzzing::seeds()
        .iter()
        .enumerate()
    {
        std::fs::write(capture.join(format!("seed-{i}")), s).unwrap();
    }
    let edit_log = root.join("edit_log");
    std::fs::create_dir_all(&edit_log).unwrap();
    for (i, s) in lifeboat::format::bolt::write::log::seeds()
        .iter()
        .enumerate()
    {
        std::fs::write(edit_log.join(format!("seed-{i}")), s).unwrap();
    }
    let proto = root.join("proto");
    for (i, v) in [
        hex::decode("0a0c2f7665632f64656c65746564").unwrap(),
        vec![0x08, 0xb4, 0x24, 0x10, 0x90, 0x1c],
        br#"{"voters":[12483363025470639616],"auto_leave":false}"#.to_vec(),
    ]
    .iter()
    .enumerate()
    {
        std::fs::write(proto.join(format!("value-{i}")), v).unwrap();
    }
}

/// A DAG: every element of the key bucket's root branch points at the same subtree. The
/// checker reports multiple references; cursors (get, diff) stop instead of iterating
/// the subtree once per element.
#[test]
fn shared_subtree_does_not_make_readers_loop() {
    use lifeboat::format::bolt::{BucketRoot, Db};
    let mut b = DbBuilder::new(512);
    b.fill = 256;
    let entries: Vec<(Vec<u8>, Vec<u8>)> = (0..3000)
        .map(|i| (format!("k{i:05}").into_bytes(), vec![b'v'; 8]))
        .collect();
    let mut img = b.build(&[(b"key".to_vec(), entries)]);
    let db = Db::open(&img[..]).unwrap();
    let BucketRoot::Page(r) = db.bucket(b"key").unwrap().unwrap().root().clone() else {
        panic!()
    };
    let p = db.page(r).unwrap();
    let n = p.node().unwrap();
    let first = n.branch(0).unwrap().pgid;
    let count = n.count();
    for i in 1..count {
        let at = r as usize * 512 + 16 + 16 * i + 8;
        img[at..at + 8].copy_from_slice(&first.to_le_bytes());
    }
    let t = std::time::Instant::now();
    let rep = check(&img[..], &CheckOptions::default(), &mut ());
    assert!(rep
        .problems
        .iter()
        .any(|p| p.message.contains("multiple references")));
    exercise_reader(&img);
    exercise_checker(&img);
    assert!(
        t.elapsed() < std::time::Duration::from_secs(20),
        "{:?}",
        t.elapsed()
    );
}
