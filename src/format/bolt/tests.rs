use super::build::{etcd_like, fix_meta_checksum, DbBuilder, Entries};
use super::*;

fn bytes(s: &str) -> Vec<u8> {
    s.as_bytes().to_vec()
}

fn entries(n: usize, vsize: usize) -> Entries {
    (0..n)
        .map(|i| (format!("k{i:06}").into_bytes(), vec![b'x'; vsize]))
        .collect()
}

#[test]
fn open_picks_meta0_of_snapshot_like_image() {
    let img = etcd_like(4096, 10, 10);
    let db = Db::open(&img[..]).unwrap();
    assert_eq!(db.current, 0);
    assert_eq!(db.page_size, 4096);
    assert_eq!(db.meta.txid, 5);
    assert!(db.why_current.contains("larger txid"), "{}", db.why_current);
    assert!(
        check_meta(&img[..]).is_empty(),
        "{:?}",
        check_meta(&img[..])
    );
}

#[test]
fn corrupt_meta0_falls_back_to_meta1() {
    let mut img = etcd_like(4096, 10, 10);
    img[40] ^= 0xff; // root field of meta 0
    let db = Db::open(&img[..]).unwrap();
    assert_eq!(db.current, 1);
    assert!(db.why_current.contains("checksum"), "{}", db.why_current);
    let p = check_meta(&img[..]);
    assert_eq!(p.len(), 1, "{p:?}");
    assert_eq!(p[0].page, Some(0));
}

#[test]
fn both_metas_bad_fails() {
    let mut img = etcd_like(4096, 10, 10);
    img[16] ^= 1;
    img[4096 + 16] ^= 1;
    assert!(Db::open(&img[..]).is_err());
    assert_eq!(check_meta(&img[..]).len(), 1);
    assert!(Db::open(&[0u8; 10][..]).is_err());
}

#[test]
fn meta1_probed_when_meta0_bad_with_other_page_size() {
    let mut img = DbBuilder::new(16384).build(&[(bytes("a"), entries(3, 3))]);
    img[16] ^= 1;
    let db = Db::open(&img[..]).unwrap();
    assert_eq!((db.current, db.page_size), (1, 16384));
}

#[test]
fn meta_sanity_reports_truncation_and_bad_root() {
    let img = etcd_like(4096, 10, 10);
    let short = &img[..img.len() - 4096];
    let p = check_meta(short);
    assert!(p.iter().any(|p| p.message.contains("truncated")), "{p:?}");
    let mut img2 = img.clone();
    img2[32..40].copy_from_slice(&9999u64.to_le_bytes());
    fix_meta_checksum(&mut img2, 4096, 0);
    let p = check_meta(&img2[..]);
    assert!(
        p.iter().any(|p| p.message.contains("root page 9999")),
        "{p:?}"
    );
}

#[test]
fn get_last_and_cursor_over_multilevel_tree() {
    let mut b = DbBuilder::new(4096);
    b.fill = 300; // many small leaves and a few branch levels
    let e = entries(2000, 20);
    let img = b.build(&[(bytes("a"), vec![]), (bytes("big"), e.clone())]);
    let db = Db::open(&img[..]).unwrap();
    let bk = db.bucket(b"big").unwrap().unwrap();
    assert!(matches!(bk.root(), BucketRoot::Page(_)));
    assert_eq!(bk.get(b"k000123").unwrap(), Some(vec![b'x'; 20]));
    assert_eq!(bk.get(b"k000123x").unwrap(), None);
    assert_eq!(bk.get(b"a").unwrap(), None);
    assert_eq!(bk.get(b"z").unwrap(), None);
    let (lk, _) = bk.last().unwrap().unwrap();
    assert_eq!(lk, b"k001999");
    let mut c = bk.cursor();
    let mut n = 0;
    while let Some(en) = c.next().unwrap() {
        assert_eq!(en.key, e[n].0.as_slice());
        n += 1;
    }
    assert_eq!(n, 2000);
    assert!(c.next().unwrap().is_none());
    // seek in the middle, then continue
    let mut c = bk.cursor();
    assert_eq!(c.seek(b"k000999z").unwrap().unwrap().key, b"k001000");
    assert_eq!(c.next().unwrap().unwrap().key, b"k001001");
    assert!(c.seek(b"l").unwrap().is_none());
    // empty inline bucket
    let a = db.bucket(b"a").unwrap().unwrap();
    assert!(matches!(a.root(), BucketRoot::Inline { .. }));
    assert!(a.cursor().next().unwrap().is_none());
    assert!(a.last().unwrap().is_none());
    assert!(db.bucket(b"nope").unwrap().is_none());
    assert_eq!(db.bucket_names().unwrap(), vec![bytes("a"), bytes("big")]);
}

#[test]
fn overflow_values_read_back() {
    let e = vec![
        (bytes("a"), vec![1u8; 10]),
        (bytes("b"), vec![2u8; 10240]),
        (bytes("c"), vec![3u8; 5]),
    ];
    let img = DbBuilder::new(4096).build(&[(bytes("x"), e)]);
    let db = Db::open(&img[..]).unwrap();
    let b = db.bucket(b"x").unwrap().unwrap();
    assert_eq!(b.get(b"b").unwrap(), Some(vec![2u8; 10240]));
    assert_eq!(b.get(b"c").unwrap(), Some(vec![3u8; 5]));
}

#[test]
fn non_bucket_top_level_entry_is_an_error() {
    // Build, then clear the bucket flag of the first root-leaf element.
    let img0 = DbBuilder::new(4096).build(&[(bytes("a"), vec![])]);
    let db = Db::open(&img0[..]).unwrap();
    let root = db.meta.root as usize;
    let mut img = img0.clone();
    img[root * 4096 + 16..root * 4096 + 20].copy_from_slice(&0u32.to_le_bytes());
    let db = Db::open(&img[..]).unwrap();
    assert!(db.bucket(b"a").is_err());
}

#[test]
fn cycles_and_out_of_range_children_are_errors_not_hangs() {
    let mut b = DbBuilder::new(4096);
    b.fill = 200;
    let img0 = b.build(&[(bytes("big"), entries(300, 10))]);
    let db = Db::open(&img0[..]).unwrap();
    let bk = db.bucket(b"big").unwrap().unwrap();
    let BucketRoot::Page(r) = bk.root().clone() else {
        panic!()
    };
    // Point the first child of the bucket root branch at itself.
    let at = r as usize * 4096 + 16 + 8;
    let mut img = img0.clone();
    img[at..at + 8].copy_from_slice(&r.to_le_bytes());
    let db = Db::open(&img[..]).unwrap();
    let bk = db.bucket(b"big").unwrap().unwrap();
    let mut c = bk.cursor();
    assert!(c.next().is_err());
    // Out of range child.
    let mut img = img0.clone();
    img[at..at + 8].copy_from_slice(&u64::MAX.to_le_bytes());
    let db = Db::open(&img[..]).unwrap();
    let bk = db.bucket(b"big").unwrap().unwrap();
    let e = bk.cursor().next().unwrap_err();
    assert!(e.to_string().contains("out of range"), "{e}");
}
