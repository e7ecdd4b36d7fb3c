use super::*;
use crate::bolt::{build::etcd_like, check, CheckOptions, EntryVisitor};

struct Nothing;
impl EntryVisitor for Nothing {}

fn strict(img: &Vec<u8>) {
    let r = check(img, &CheckOptions::default(), &mut Nothing);
    assert!(r.ok(), "{:?}", r.problems);
}

fn entries(img: &Vec<u8>, bucket: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
    let db = Db::open(img).unwrap();
    let b = db.bucket(bucket).unwrap().unwrap();
    let mut c = b.cursor();
    let mut out = Vec::new();
    while let Some(e) = c.next().unwrap() {
        out.push((e.key.to_vec(), e.value.to_vec()));
    }
    out
}

fn kv(k: &str, v: &str) -> (Vec<u8>, Vec<u8>) {
    (k.as_bytes().to_vec(), v.as_bytes().to_vec())
}

#[test]
fn small_buckets_rebuilt_and_new_meta() {
    for ps in [4096, 1024] {
        let mut img = etcd_like(ps, 50, 30);
        strict(&img);
        let before = Db::open(&img).unwrap().meta;
        let keys_before = entries(&img, b"key");
        let edits = vec![
            Edit {
                bucket: b"members".to_vec(),
                clear: true,
                puts: vec![kv("b", "2"), kv("a", "1"), kv("a", "0")],
            },
            Edit {
                bucket: b"meta".to_vec(),
                clear: false,
                puts: vec![(b"term".to_vec(), 1u64.to_be_bytes().to_vec())],
            },
            Edit {
                bucket: b"zzz".to_vec(),
                clear: false,
                puts: vec![],
            },
        ];
        let db = Db::open(&img).unwrap();
        let p = cow_patch(&db, &edits).unwrap();
        drop(db);
        p.apply_to(&mut img);
        strict(&img);
        let db = Db::open(&img).unwrap();
        assert_eq!(db.meta.txid, before.txid + 1);
        assert!(db.meta.pgid > before.pgid);
        drop(db);
        assert_eq!(entries(&img, b"members"), vec![kv("a", "0"), kv("b", "2")]);
        let meta = entries(&img, b"meta");
        assert_eq!(meta.len(), 3);
        assert_eq!(meta[2], (b"term".to_vec(), 1u64.to_be_bytes().to_vec()));
        assert!(entries(&img, b"zzz").is_empty());
        assert_eq!(entries(&img, b"key"), keys_before);
    }
}

#[test]
fn append_copies_only_the_rightmost_path() {
    let mut img = etcd_like(1024, 3000, 20);
    let before = entries(&img, b"key");
    let last = before.last().unwrap().0.clone();
    let mut puts = Vec::new();
    for i in 0..2500u64 {
        let mut k = (1_000_000 + i).to_be_bytes().to_vec();
        k.push(b'_');
        k.extend_from_slice(&0u64.to_be_bytes());
        assert!(k > last);
        puts.push((k, vec![b'x'; (i % 300) as usize]));
    }
    for round in 0..2 {
        let chunk = &puts[round * 1250..(round + 1) * 1250];
        let db = Db::open(&img).unwrap();
        let hwm = db.meta.pgid;
        let p = cow_patch(
            &db,
            &[Edit {
                bucket: b"key".to_vec(),
                clear: false,
                puts: chunk.to_vec(),
            }],
        )
        .unwrap();
        drop(db);
        // Far fewer pages than a rebuild of 3000+ entries.
        assert!(p.high_water_mark - hwm < 600, "{}", p.high_water_mark - hwm);
        p.apply_to(&mut img);
        strict(&img);
    }
    let after = entries(&img, b"key");
    assert_eq!(after.len(), before.len() + puts.len());
    assert_eq!(&after[..before.len()], &before[..]);
    assert_eq!(&after[before.len()..], &puts[..]);
}

#[test]
fn one_key_append_to_a_single_leaf_and_edits_of_garbage_fail_cleanly() {
    let mut img = etcd_like(4096, 5, 10);
    let db = Db::open(&img).unwrap();
    let p = cow_patch(
        &db,
        &[Edit {
            bucket: b"key".to_vec(),
            clear: false,
            puts: vec![kv("\u{7f}", "")],
        }],
    )
    .unwrap();
    drop(db);
    p.apply_to(&mut img);
    strict(&img);
    assert_eq!(entries(&img, b"key").len(), 6);
    // A value that is no bucket.
    let db = Db::open(&img).unwrap();
    assert!(cow_patch(
        &db,
        &[Edit {
            bucket: b"meta".to_vec(),
            clear: false,
            puts: vec![(Vec::new(), Vec::new())],
        }],
    )
    .is_err());
}

#[test]
fn fuzz_oracle_on_good_and_damaged_images() {
    for (ps, n, vs) in [
        (4096, 0, 0),
        (4096, 10, 10),
        (1024, 800, 30),
        (4096, 200, 3000),
    ] {
        let img = etcd_like(ps, n, vs);
        exercise(&img);
        // Damaged copies: the writer must fail cleanly or produce something, never panic.
        for at in (0..img.len()).step_by(img.len() / 97 + 1) {
            let mut bad = img.clone();
            bad[at] ^= 0x5a;
            crate::bolt::fix_checksums(&mut bad);
            exercise(&bad);
        }
    }
}

#[test]
fn a_persisted_freelist_is_dropped_and_its_pages_become_free() {
    use crate::bolt::build::DbBuilder;
    let mut b = DbBuilder::new(4096);
    b.freelist = Some(vec![]);
    let buckets = vec![
        (b"key".to_vec(), vec![kv("a", "1")]),
        (b"members".to_vec(), vec![kv("x", "y")]),
    ];
    let mut img = b.build(&buckets);
    strict(&img);
    assert!(Db::open(&img).unwrap().meta.has_freelist());
    let db = Db::open(&img).unwrap();
    let p = cow_patch(
        &db,
        &[Edit {
            bucket: b"members".to_vec(),
            clear: true,
            puts: vec![],
        }],
    )
    .unwrap();
    drop(db);
    p.apply_to(&mut img);
    strict(&img);
    assert!(!Db::open(&img).unwrap().meta.has_freelist());
    assert!(entries(&img, b"members").is_empty());
    assert_eq!(entries(&img, b"key"), vec![kv("a", "1")]);
}

/// Rewrite the current meta's field at `at` (offset in the 64-byte meta) and its checksum.
fn set_meta_u64(img: &mut [u8], at: usize, v: u64) {
    let db = Db::open(&img[..]).unwrap();
    let off = db.metas[db.current].offset as usize + PAGE_HEADER_SIZE;
    drop(db);
    img[off + at..off + at + 8].copy_from_slice(&v.to_le_bytes());
    crate::bolt::fix_checksums(img);
}

/// Every number the writer takes from the meta is checked before it becomes an offset:
/// a high-water mark past the data (the fuzz finding: `hwm * page_size` overflowed), one
/// whose product overflows, and a txid without a successor fail with the meta named.
#[test]
fn hostile_meta_numbers_fail_before_use() {
    let img = etcd_like(512, 20, 10);
    let edits = [Edit {
        bucket: b"members".to_vec(),
        clear: true,
        puts: vec![kv("a", "1")],
    }];
    let pgid = Db::open(&img[..]).unwrap().meta.pgid;
    for (field, v, want) in [
        (40, u64::MAX - 3, "more than 2^64"),
        (40, pgid + 1, "truncated?"),
        (40, 0x0fff_ffff_ffff_ff6c, "truncated?"),
        (48, u64::MAX, "no successor"),
    ] {
        let mut bad = img.clone();
        set_meta_u64(&mut bad, field, v);
        let Ok(db) = Db::open(&bad[..]) else {
            panic!("meta field {field} = {v} should still open")
        };
        let e = cow_patch(&db, &edits).unwrap_err().to_string();
        assert!(e.contains(want), "{field}={v}: {e}");
        drop(db);
        exercise(&bad);
    }
    // A file longer than its high-water mark (bbolt grows files ahead) is fine: the new
    // pages go at the mark.
    let mut longer = img.clone();
    longer.extend_from_slice(&[0u8; 4096]);
    let db = Db::open(&longer[..]).unwrap();
    let p = cow_patch(&db, &edits).unwrap();
    assert_eq!(p.pages.0, pgid * 512);
}

#[test]
fn the_fuzz_finding_fails_cleanly() {
    let data =
        include_bytes!("../../../../../tests/fuzz-regressions/bolt_writer-crash-d40ad7bf.bin");
    // As the fuzz target prepares its input (`offline::fuzzing::prepare`, which this module
    // below it must not call): a control byte, whose low bit asks for fixed checksums.
    let (&ctrl, rest) = data.split_first().unwrap();
    let mut img = rest.to_vec();
    if ctrl & 1 == 1 {
        crate::bolt::fix_checksums(&mut img);
    }
    exercise(&img);
}
