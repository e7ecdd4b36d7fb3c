use super::build::{etcd_like, fix_meta_checksum, DbBuilder, Entries};
use super::*;
use super::{check, fix_checksums, CheckOptions};

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

// ---- the strict checker ------------------------------------------------------------

fn problems(img: &[u8]) -> Vec<Problem> {
    check(img, &CheckOptions::default(), &mut ()).problems
}

fn has(ps: &[Problem], page: Option<u64>, needle: &str) -> bool {
    ps.iter()
        .any(|p| p.page == page && p.message.contains(needle))
}

#[test]
fn clean_images_have_no_problems_and_count_pages() {
    for img in [
        etcd_like(4096, 200, 50),
        etcd_like(512, 50, 700),
        DbBuilder::new(4096).build(&[]),
    ] {
        let r = check(&img[..], &CheckOptions::default(), &mut ());
        assert!(r.ok(), "{:?}", r.problems);
        assert_eq!(r.pages.free, 0);
        assert_eq!(r.pages.in_use, r.pages.total);
    }
}

#[test]
fn persisted_freelist_is_checked() {
    // Pages 2 and 3 hold a throwaway tree we then orphan by building again on top.
    let mut b = DbBuilder::new(4096);
    b.freelist = Some(vec![]);
    let img = b.build(&[(bytes("a"), entries(3, 3))]);
    let r = check(&img[..], &CheckOptions::default(), &mut ());
    assert!(r.ok(), "{:?}", r.problems);
    assert_eq!(r.pages.freelist, 1);
    let db = Db::open(&img[..]).unwrap();
    let (root, fl, hwm) = (db.meta.root, db.meta.freelist, db.meta.pgid);

    // Freeing the root page: reachable freed.
    let mut b = DbBuilder::new(4096);
    b.freelist = Some(vec![root]);
    let img = b.build(&[(bytes("a"), entries(3, 3))]);
    assert!(has(&problems(&img), Some(root), "reachable freed"));

    // Duplicate and out-of-range ids.
    let mut b = DbBuilder::new(4096);
    b.freelist = Some(vec![root, root, hwm + 10]);
    let img = b.build(&[(bytes("a"), entries(3, 3))]);
    let ps = problems(&img);
    assert!(has(&ps, Some(fl), "already freed"), "{ps:?}");
    assert!(has(&ps, Some(fl), "outside"), "{ps:?}");

    // A page neither reachable nor freed: append an orphan page by growing the hwm.
    let mut b = DbBuilder::new(4096);
    b.freelist = Some(vec![]);
    let mut img = b.build(&[(bytes("a"), entries(3, 3))]);
    let orphan = img.len() as u64 / 4096;
    img.extend_from_slice(&[0u8; 4096]);
    img[56..64].copy_from_slice(&(orphan + 1).to_le_bytes());
    img[4096 + 56..4096 + 64].copy_from_slice(&(orphan + 1).to_le_bytes());
    fix_checksums(&mut img);
    assert!(has(&problems(&img), Some(orphan), "unreachable unfreed"));

    // The 0xFFFF count form.
    let mut b = DbBuilder::new(4096);
    b.freelist = Some((0..0x1_0000u64).map(|_| 0).collect());
    let img = b.build(&[(bytes("a"), entries(3, 3))]);
    let ps = problems(&img);
    assert!(ps.iter().any(|p| p.message.contains("outside")), "{ps:?}");
}

#[test]
fn element_and_type_problems_name_the_page() {
    let mut b = DbBuilder::new(4096);
    b.fill = 300;
    let img0 = b.build(&[(bytes("big"), entries(300, 10))]);
    let db = Db::open(&img0[..]).unwrap();
    let BucketRoot::Page(r) = db.bucket(b"big").unwrap().unwrap().root().clone() else {
        panic!()
    };
    let child = db.page(r).unwrap().node().unwrap().branch(0).unwrap().pgid;
    let mut leaf = child;
    while db.page(leaf).unwrap().node().unwrap().is_branch() {
        leaf = db
            .page(leaf)
            .unwrap()
            .node()
            .unwrap()
            .branch(0)
            .unwrap()
            .pgid;
    }
    let at = |p: u64| p as usize * 4096;

    // A tree page with the freelist type.
    let mut img = img0.clone();
    img[at(child) + 8..at(child) + 10].copy_from_slice(&flags::FREELIST.to_le_bytes());
    assert!(has(&problems(&img), Some(child), "invalid type"));

    // Header id differs from the referencing id.
    let mut img = img0.clone();
    img[at(child)..at(child) + 8].copy_from_slice(&999u64.to_le_bytes());
    assert!(has(&problems(&img), Some(child), "has id 999"));

    // Zero-length key in a leaf (ksize of element 1 = 0).
    let mut img = img0.clone();
    img[at(leaf) + 16 + 16 + 8..at(leaf) + 16 + 16 + 12].copy_from_slice(&0u32.to_le_bytes());
    let ps = problems(&img);
    assert!(has(&ps, Some(leaf), "zero-length key"), "{ps:?}");

    // Unknown leaf element flags.
    let mut img = img0.clone();
    img[at(leaf) + 16..at(leaf) + 20].copy_from_slice(&0x40u32.to_le_bytes());
    assert!(has(&problems(&img), Some(leaf), "unknown flags"));

    // Element count that cannot fit in the page.
    let mut img = img0.clone();
    img[at(child) + 10..at(child) + 12].copy_from_slice(&0xFFFEu16.to_le_bytes());
    assert!(has(&problems(&img), Some(child), "elements need"));

    // Overflow running past the high-water mark.
    let mut img = img0.clone();
    img[at(child) + 12..at(child) + 16].copy_from_slice(&1000u32.to_le_bytes());
    assert!(has(&problems(&img), Some(child), "overflow 1000"));

    // Swapping two leaf keys breaks the order within the page.
    let mut img = img0.clone();
    let n = Db::open(&img0[..]).unwrap();
    let p = n.page(leaf).unwrap();
    let (e0, e1) = (
        p.node().unwrap().leaf(0).unwrap(),
        p.node().unwrap().leaf(1).unwrap(),
    );
    let (o0, o1) = (at(leaf) + e0.key_offset, at(leaf) + e1.key_offset);
    let (k0, k1) = (e0.key.to_vec(), e1.key.to_vec());
    img[o0..o0 + k0.len()].copy_from_slice(&k1);
    img[o1..o1 + k1.len()].copy_from_slice(&k0);
    assert!(has(
        &problems(&img),
        Some(leaf),
        "not greater than the previous key"
    ));
}

#[test]
fn inline_bucket_and_top_level_problems() {
    let img0 = DbBuilder::new(4096).build(&[(bytes("a"), entries(3, 3)), (bytes("b"), vec![])]);
    let db = Db::open(&img0[..]).unwrap();
    let root = db.meta.root as usize * 4096;
    // Clear the bucket flag of the first top-level entry.
    let mut img = img0.clone();
    img[root + 16..root + 20].copy_from_slice(&0u32.to_le_bytes());
    assert!(has(&problems(&img), Some(db.meta.root), "is not a bucket"));
    // Inline bucket page with a branch type: find "a"'s inline page header in the value.
    let e = db.page(db.meta.root).unwrap();
    let el = e.node().unwrap().leaf(0).unwrap();
    let inline_hdr = root + el.key_offset + el.key.len() + 16;
    let mut img = img0.clone();
    img[inline_hdr + 8..inline_hdr + 10].copy_from_slice(&flags::BRANCH.to_le_bytes());
    assert!(problems(&img)
        .iter()
        .any(|p| p.message.contains("inline bucket page has type branch")));
    // A sub-bucket entry inside an inline bucket.
    let mut img = img0.clone();
    img[inline_hdr + 16..inline_hdr + 20].copy_from_slice(&1u32.to_le_bytes());
    assert!(problems(&img)
        .iter()
        .any(|p| p.message.contains("inline bucket contains a sub-bucket")));
}

#[test]
fn etcdutl_hash_counts_names_keys_values() {
    let img = DbBuilder::new(4096).build(&[
        (bytes("a"), vec![(bytes("k"), bytes("v"))]),
        (bytes("b"), vec![]),
    ]);
    let r = check(&img[..], &CheckOptions::default(), &mut ());
    assert_eq!(r.etcdutl_hash, crc32c::crc32c(b"akvb"));
    assert_eq!(r.total_entries, 1);
}

#[test]
fn unbalanced_tree_is_reported() {
    // Point a branch element at a leaf from a deeper level: a leaf where a branch belongs.
    let mut b = DbBuilder::new(4096);
    b.fill = 300;
    let img0 = b.build(&[(bytes("big"), entries(300, 10))]);
    let db = Db::open(&img0[..]).unwrap();
    let BucketRoot::Page(r) = db.bucket(b"big").unwrap().unwrap().root().clone() else {
        panic!()
    };
    let root = db.page(r).unwrap();
    let n = root.node().unwrap();
    let last = n.count() - 1;
    let c_last = n.branch(last).unwrap().pgid;
    let mut leaf = c_last;
    while db.page(leaf).unwrap().node().unwrap().is_branch() {
        let p = db.page(leaf).unwrap();
        let nn = p.node().unwrap();
        leaf = nn.branch(nn.count() - 1).unwrap().pgid;
    }
    assert_ne!(leaf, c_last, "tree must be at least 3 levels deep");
    let mut img = img0.clone();
    let at = r as usize * 4096 + 16 + 16 * last + 8;
    img[at..at + 8].copy_from_slice(&leaf.to_le_bytes());
    let ps = problems(&img);
    assert!(has(&ps, Some(leaf), "depth"), "{ps:?}");
}

/// Keys of the leaves of bucket `key` under its root branch: (leaf page, key offsets).
fn leaves_of_key_bucket(img: &[u8]) -> Vec<(u64, Vec<usize>)> {
    let db = Db::open(img).unwrap();
    let b = db.bucket(b"key").unwrap().unwrap();
    let BucketRoot::Page(root) = b.root().clone() else {
        panic!("inline")
    };
    let p = db.page(root).unwrap();
    let n = p.node().unwrap();
    assert!(n.is_branch());
    (0..n.count())
        .map(|i| {
            let id = n.branch(i).unwrap().pgid;
            let lp = db.page(id).unwrap();
            let ln = lp.node().unwrap();
            let offs = (0..ln.count())
                .map(|j| id as usize * 4096 + ln.leaf(j).unwrap().key_offset)
                .collect();
            (id, offs)
        })
        .collect()
}

/// The cursor refuses a page whose keys are out of order, or below the separator that
/// leads to it, as the strict check does: no reader answers from such a page.
#[test]
fn cursor_refuses_pages_the_checker_refuses() {
    let img = etcd_like(4096, 400, 20);
    let leaves = leaves_of_key_bucket(&img);
    assert!(leaves.len() >= 2);
    let walk = |img: &[u8]| -> Result<usize> {
        let db = Db::open(img).unwrap();
        let b = db.bucket(b"key")?.unwrap();
        let mut c = b.cursor();
        let mut n = 0;
        while c.next()?.is_some() {
            n += 1;
        }
        Ok(n)
    };
    assert_eq!(walk(&img).unwrap(), 400);

    // Within a page: element 1's key below element 0's.
    let (leaf, offs) = &leaves[0];
    let mut bad = img.clone();
    bad[offs[1]..offs[1] + 8].fill(0);
    let e = walk(&bad).unwrap_err().to_problem();
    assert_eq!(e.page, Some(*leaf));
    assert!(
        e.message.contains("not greater than the previous key"),
        "{e}"
    );
    assert!(!check(&bad[..], &CheckOptions::default(), &mut ()).ok());

    // Against the parent: the second leaf's first key below its separator.
    let (leaf, offs) = &leaves[1];
    let mut bad = img.clone();
    bad[offs[0]..offs[0] + 8].fill(0);
    let e = walk(&bad).unwrap_err().to_problem();
    assert_eq!(e.page, Some(*leaf));
    assert!(e.message.contains("below the separator"), "{e}");
    // A point read that lands there fails the same way.
    let db = Db::open(&bad[..]).unwrap();
    let b = db.bucket(b"key").unwrap().unwrap();
    let key = {
        let good = Db::open(&img[..]).unwrap();
        let gb = good.bucket(b"key").unwrap().unwrap();
        let mut c = gb.cursor();
        let mut k = Vec::new();
        for _ in 0..=leaves[0].1.len() {
            k = c.next().unwrap().unwrap().key.to_vec();
        }
        k
    };
    assert!(b.get(&key).is_err());
}
