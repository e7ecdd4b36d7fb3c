//! What the fuzz targets (`fuzz/`) and the property tests run: every reader entry point
//! over arbitrary bytes, from the bbolt pages up to `get` and `diff`. It lives here, above
//! `format/`, because it drives the offline commands too (the format readers must not
//! depend on them). Results are thrown away; the only thing under test is that nothing
//! panics, reads out of bounds, or fails to finish.

use crate::format::bolt::{
    check, check_meta, fix_checksums, BucketRoot, CheckOptions, Db, Meta, Node, PageHeader,
};
use crate::format::etcd::report::{report, ReportOptions};
use crate::format::etcd::{parse_member, AlarmMember, ConfState, KeyValueRef, Lease, RevKey};

/// Entries read per bucket at most (bounds the time of one run).
const MAX_ENTRIES: usize = 20_000;

/// Turn fuzz input into a database image: the first byte is a control byte; with its low
/// bit set, both meta checksums are recomputed so mutations get past the meta pages and
/// into the tree.
pub fn prepare(data: &[u8]) -> Vec<u8> {
    let Some((&ctrl, rest)) = data.split_first() else {
        return Vec::new();
    };
    let mut img = rest.to_vec();
    if ctrl & 1 == 1 {
        fix_checksums(&mut img);
    }
    img
}

/// Open, list buckets, walk each with a cursor, seek, get and last; the etcd summary.
pub fn exercise_reader(img: &[u8]) {
    let _ = check_meta(img);
    let Ok(db) = Db::open(img) else { return };
    let _ = crate::format::etcd::summary_of(&db);
    let Ok(names) = db.bucket_names() else { return };
    for name in names.iter().take(64) {
        let Ok(Some(b)) = db.bucket(name) else {
            continue;
        };
        let mut c = b.cursor();
        let mut keys = Vec::new();
        for _ in 0..MAX_ENTRIES {
            match c.next() {
                Ok(Some(e)) => {
                    if keys.len() < 8 {
                        keys.push(e.key.to_vec());
                    }
                }
                _ => break,
            }
        }
        for k in &keys {
            let _ = b.get(k);
            let mut c = b.cursor();
            let _ = c.seek(k);
            let _ = c.next();
            let _ = c.current();
        }
        let _ = b.last();
        let _ = b.get(b"");
        let _ = b.get(&[0xff; 40]);
    }
    let _ = crate::offline::get::get(
        &db,
        "fuzz",
        b"",
        &crate::offline::get::GetOptions {
            prefix: true,
            ..Default::default()
        },
    );
    let side = crate::offline::diff::Named {
        db: &db,
        name: "fuzz",
    };
    let _ = crate::offline::diff::diff(side, side, &Default::default());
}

/// The strict check and the full etcd report (with hashkv and the Kubernetes summary).
pub fn exercise_checker(img: &[u8]) {
    let r = check(img, &CheckOptions::default(), &mut ());
    if r.ok() {
        prepass_agrees(img);
    }
    if let Ok(db) = Db::open(img) {
        let _ = report(
            &db,
            &ReportOptions {
                k8s: true,
                by_namespace: true,
                ..ReportOptions::default()
            },
        );
        let _ = crate::format::etcd::hashkv::hashkv(&db, 0, Some(2));
    }
}

/// Every decoder of bucket values and page structures, over the same bytes.
pub fn exercise_decoders(data: &[u8]) {
    let _ = KeyValueRef::decode(data);
    let _ = Lease::decode(data);
    let _ = AlarmMember::decode(data);
    let _ = RevKey::parse(data);
    let _ = serde_json::from_slice::<ConfState>(data);
    let mid = data.len() / 2;
    let (k, v) = data.split_at(mid);
    let _ = parse_member(k, v);
    let _ = BucketRoot::parse(data, (None, 0));
    let _ = PageHeader::parse(data);
    let _ = Meta::parse(data);
    let _ = crate::format::etcd::report::k8s_split(data);
    if let Ok(n) = Node::new(data, None, 0) {
        for i in 0..n.count().min(512) {
            let _ = n.leaf(i);
            let _ = n.branch(i);
        }
        let _ = n.leaf_search(k);
        let _ = n.branch_search(k);
    }
}

/// The hashkv pre-pass made ahead up to a revision (as a point-in-time plan makes it on its
/// base while the window is read) and continued gives every answer the whole one gives, on
/// a database that passes the strict check (only such a base is ever pre-passed: the plan
/// verifies it first, and the walk after the replay checks the result).
fn prepass_agrees(img: &[u8]) {
    use crate::format::etcd::hashkv::{HashKv, PrePass};
    let Ok(db) = Db::open(img) else { return };
    let (Ok(m), Ok(Some(b))) = (
        crate::format::etcd::meta_fields(&db),
        db.bucket(crate::format::etcd::buckets::KEY),
    ) else {
        return;
    };
    let mut mains = Vec::new();
    let mut c = b.cursor();
    while let Ok(Some(e)) = c.next() {
        if mains.len() >= MAX_ENTRIES {
            return;
        }
        mains.extend(RevKey::parse(e.key).map(|rk| rk.rev.main));
    }
    let current = mains.iter().copied().max().unwrap_or(0);
    let answers = |rev: i64, compact: i64, pp: Option<PrePass>| {
        let finished = m.finished_compact;
        let compact = compact.max(finished.unwrap_or(-1));
        let mut hk = HashKv::prepare_continuing(&db, rev, current, finished, compact, pp)
            .ok()?
            .ok()?;
        let mut c = b.cursor();
        while let Ok(Some(e)) = c.next() {
            hk.feed(e.key, e.value);
        }
        Some((hk.answers(), hk.live_after()))
    };
    let picks = [mains.first(), mains.get(mains.len() / 2), mains.last()];
    for upto in picks.into_iter().flatten().copied() {
        let Ok(pp) = PrePass::run(&db, upto) else {
            continue;
        };
        for (rev, compact) in [(0, upto), (current, current - 1), (upto, upto), (0, -1)] {
            assert_eq!(
                answers(rev, compact, Some(pp.clone())),
                answers(rev, compact, None),
                "pre-pass made ahead up to {upto}, hashed at {rev} compacted at {compact}"
            );
        }
    }
}
