//! A copy-on-write bbolt writer: one transaction of edits to top-level buckets of an
//! existing database image, expressed as bytes to write over a copy of that image.
//!
//! Hand-written on the reader's page layout because no crate does this on etcd's files:
//! bbolt-rs cannot open etcd 3.5 databases (DESIGN.md), and a restore must not need Go.
//! It works like a bbolt commit with `NoFreelistSync` (how etcd runs on Linux): every
//! changed node is written to a new page at or above the old high-water mark, the root
//! bucket is rewritten to point at the new bucket values, and a new meta page with txid + 1
//! goes to slot `txid % 2`. Pages the new tree no longer reaches are simply free: the new
//! meta records no freelist page (`PGID_NO_FREELIST`), so bbolt rebuilds its freelist by
//! scanning at open, as it does for every etcd Linux database. The old meta stays valid, so
//! a torn write of the new pages leaves the previous transaction readable.
//!
//! Two ways to change a bucket: a small bucket is rebuilt whole (read every entry, apply
//! the edit, write a new subtree or inline value); a large page-rooted bucket that only
//! gains keys after its last key is extended along its rightmost path ([`Edit::puts`] all
//! greater than the last key), copying only the pages on that path. The second is the
//! bulk append writer that replaying revisions into `key` needs: its cost is the new
//! entries plus one page per tree level, whatever the size of the bucket.

pub mod log;
mod tree;

// For the test-only builder (format::bolt::build).
#[cfg(any(test, feature = "testkit"))]
pub(crate) use tree::{branch_image, leaf_image};

use super::{
    flags, le_u64, BucketRoot, Db, FormatError, Node, Result, BUCKET_LEAF_FLAG, MAX_DEPTH,
    META_SIZE, PAGE_HEADER_SIZE, PGID_NO_FREELIST,
};
use crate::io::ReadAt;
use tree::{bucket_value, pack_branches, pack_leaves, root_over, LeafItem, PageSink};

/// The edit of one top-level bucket. The bucket is created if missing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Edit {
    pub bucket: Vec<u8>,
    /// Remove every entry first (the bucket itself stays).
    pub clear: bool,
    /// Keys to set, in any order; the last of duplicates wins.
    pub puts: Vec<(Vec<u8>, Vec<u8>)>,
}

/// The result of a transaction: bytes to write at byte offsets of a copy of the image.
/// Writing `pages` first and `meta` last (with a sync between) is what makes the commit
/// atomic on disk, as in bbolt.
#[derive(Debug, Clone)]
pub struct Patch {
    /// Byte offset and bytes of the new pages (at the old high-water mark).
    pub pages: (u64, Vec<u8>),
    /// Byte offset and bytes of the new meta page.
    pub meta: (u64, Vec<u8>),
    /// The new high-water mark, in pages.
    pub high_water_mark: u64,
    pub page_size: u32,
    pub txid: u64,
}

impl Patch {
    /// The image length after the patch, at least `old_len`.
    pub fn len_after(&self, old_len: u64) -> u64 {
        old_len.max(
            self.high_water_mark
                .saturating_mul(u64::from(self.page_size)),
        )
    }

    /// Apply to an in-memory image (tests, fuzzing).
    pub fn apply_to(&self, img: &mut Vec<u8>) {
        let len = self.len_after(img.len() as u64) as usize;
        img.resize(len, 0);
        for (off, b) in [&self.pages, &self.meta] {
            let off = *off as usize;
            img[off..off + b.len()].copy_from_slice(b);
        }
    }
}

/// Compute one transaction applying `edits` (bucket names unique) to the database `db`.
/// Reads only the root bucket, the rebuilt buckets and the rightmost path of appended ones,
/// validating every page it reads.
pub fn cow_patch<R: ReadAt>(db: &Db<R>, edits: &[Edit]) -> Result<Patch> {
    let ps = db.page_size as usize;
    let (hwm_in, txid) = checked_meta(db)?;
    let mut sink = PageSink::new(ps, hwm_in);
    // The root bucket's entries, with the edited buckets' values replaced.
    let mut top: Vec<LeafItem> = Vec::new();
    let mut c = db.root_bucket().cursor();
    while let Some(e) = c.next()? {
        top.push((e.flags, e.key.to_vec(), e.value.to_vec()));
    }
    for edit in edits {
        let at = top.binary_search_by(|(_, k, _)| k.as_slice().cmp(&edit.bucket));
        let old = match at {
            Ok(i) => {
                let (fl, _, v) = &top[i];
                if fl & BUCKET_LEAF_FLAG == 0 {
                    return Err(FormatError::corrupt(
                        None,
                        None,
                        format!(
                            "top-level entry {:?} is not a bucket",
                            String::from_utf8_lossy(&edit.bucket)
                        ),
                    ));
                }
                Some(v.clone())
            }
            Err(_) => None,
        };
        let value = edit_bucket(db, &mut sink, old.as_deref(), edit)?;
        match at {
            Ok(i) => top[i].2 = value,
            Err(i) => top.insert(i, (BUCKET_LEAF_FLAG, edit.bucket.clone(), value)),
        }
    }
    let leaves = pack_leaves(&mut sink, &top);
    let root = root_over(&mut sink, leaves);
    let (first, hwm) = checked_span(&sink)?;
    let slot = txid % 2;
    let mut meta = vec![0u8; ps];
    meta[0..8].copy_from_slice(&slot.to_le_bytes());
    meta[8..10].copy_from_slice(&flags::META.to_le_bytes());
    let m = &mut meta[PAGE_HEADER_SIZE..PAGE_HEADER_SIZE + META_SIZE];
    m[0..4].copy_from_slice(&db.meta.magic.to_le_bytes());
    m[4..8].copy_from_slice(&db.meta.version.to_le_bytes());
    m[8..12].copy_from_slice(&db.meta.page_size.to_le_bytes());
    m[12..16].copy_from_slice(&db.meta.flags.to_le_bytes());
    m[16..24].copy_from_slice(&root.to_le_bytes());
    m[24..32].copy_from_slice(&db.meta.sequence.to_le_bytes());
    m[32..40].copy_from_slice(&PGID_NO_FREELIST.to_le_bytes());
    m[40..48].copy_from_slice(&hwm.to_le_bytes());
    m[48..56].copy_from_slice(&txid.to_le_bytes());
    let sum = super::meta_checksum(&m[..56]);
    m[56..64].copy_from_slice(&sum.to_le_bytes());
    Ok(Patch {
        pages: (first, sink.bytes),
        meta: (slot * ps as u64, meta),
        high_water_mark: hwm,
        page_size: db.page_size,
        txid,
    })
}

/// The writer's checks of the meta it builds on, before any number from it is used: the
/// page size, a high-water mark whose pages all lie inside the data (the new pages go right
/// after them, at `hwm * page_size`, which must not overflow), a root page below it, and a
/// txid that has a successor (a wrapped txid 0 would lose to the old meta). Returns the
/// high-water mark and the new txid.
fn checked_meta<R: ReadAt>(db: &Db<R>) -> Result<(u64, u64)> {
    let m = &db.meta;
    let ps = u64::from(db.page_size);
    let meta_at = Some(db.current as u64);
    let meta_off = Some(db.metas[db.current].offset);
    if ps < (PAGE_HEADER_SIZE + META_SIZE) as u64 || ps > u64::from(u32::MAX) {
        return Err(FormatError::corrupt(
            meta_at,
            meta_off,
            format!("page size {ps} is not one the writer can use"),
        ));
    }
    if m.pgid < 3 || m.root < 2 || m.root >= m.pgid {
        return Err(FormatError::corrupt(
            meta_at,
            meta_off,
            format!(
                "meta {}: root page {} and high-water mark {} are not a database's",
                db.current, m.root, m.pgid
            ),
        ));
    }
    let size = db.source().size();
    match m.pgid.checked_mul(ps) {
        Some(need) if need <= size => {}
        need => {
            return Err(FormatError::corrupt(
                meta_at,
                meta_off,
                format!(
                "meta {}: {} pages of {ps} bytes need {} bytes, the data has {size} (truncated?); \
                     the writer adds pages only after a complete database",
                db.current,
                m.pgid,
                need.map(|n| n.to_string())
                    .unwrap_or_else(|| "more than 2^64".into())
            ),
            ))
        }
    }
    let txid = m.txid.checked_add(1).ok_or_else(|| {
        FormatError::corrupt(
            meta_at,
            meta_off,
            format!("meta {}: txid {} has no successor", db.current, m.txid),
        )
    })?;
    Ok((m.pgid, txid))
}

/// The byte offset of the new pages and the new high-water mark, checked: the pages the
/// sink numbered must be exactly its bytes, and every offset must fit in 64 bits.
fn checked_span(sink: &PageSink) -> Result<(u64, u64)> {
    let ps = sink.page_size as u64;
    let n = sink.bytes.len() as u64 / ps.max(1);
    let first = sink.first.checked_mul(ps);
    let hwm = sink.first.checked_add(n);
    let end = hwm.and_then(|h| h.checked_mul(ps));
    match (first, hwm, end) {
        (Some(first), Some(hwm), Some(_)) if hwm == sink.next() => Ok((first, hwm)),
        _ => Err(FormatError::corrupt(
            None,
            None,
            format!(
                "{n} new pages from page {} do not fit in a database of {ps}-byte pages",
                sink.first
            ),
        )),
    }
}

/// The new value of one bucket entry after `edit`.
fn edit_bucket<R: ReadAt>(
    db: &Db<R>,
    sink: &mut PageSink,
    old: Option<&[u8]>,
    edit: &Edit,
) -> Result<Vec<u8>> {
    let mut puts: Vec<(Vec<u8>, Vec<u8>)> = Vec::with_capacity(edit.puts.len());
    for (k, v) in &edit.puts {
        if k.is_empty() {
            return Err(FormatError::corrupt(None, None, "empty key in an edit"));
        }
        puts.push((k.clone(), v.clone()));
    }
    // Stable sort, then keep the last of equal keys.
    puts.sort_by(|a, b| a.0.cmp(&b.0));
    let mut dedup: Vec<(Vec<u8>, Vec<u8>)> = Vec::with_capacity(puts.len());
    for p in puts {
        match dedup.last_mut() {
            Some(last) if last.0 == p.0 => *last = p,
            _ => dedup.push(p),
        }
    }
    let (root, sequence) = match old {
        Some(v) => (
            Some(BucketRoot::parse(v, (None, 0))?),
            le_u64(v, 8).unwrap_or(0),
        ),
        None => (None, 0),
    };
    if let (false, Some(BucketRoot::Page(pgid))) = (edit.clear, &root) {
        if let Some(value) = try_append(db, sink, *pgid, sequence, &dedup)? {
            return Ok(value);
        }
    }
    // Rebuild: every entry of the old bucket (unless cleared) merged with the puts.
    let mut items: Vec<LeafItem> = Vec::new();
    if let (false, Some(root)) = (edit.clear, root) {
        let b = super::Bucket { db, root };
        let mut c = b.cursor();
        while let Some(e) = c.next()? {
            items.push((e.flags, e.key.to_vec(), e.value.to_vec()));
        }
    }
    let mut merged: Vec<LeafItem> = Vec::with_capacity(items.len() + dedup.len());
    let mut old_items = items.into_iter().peekable();
    for (k, v) in dedup {
        while let Some(o) = old_items.next_if(|o| o.1 < k) {
            merged.push(o);
        }
        old_items.next_if(|o| o.1 == k);
        merged.push((0, k, v));
    }
    merged.extend(old_items);
    Ok(bucket_value(sink, &merged, sequence))
}

/// Append `puts` (sorted, unique) after the last key of the page-rooted bucket at `root`,
/// copying only its rightmost path. None when the puts do not all follow the last key.
fn try_append<R: ReadAt>(
    db: &Db<R>,
    sink: &mut PageSink,
    root: u64,
    sequence: u64,
    puts: &[(Vec<u8>, Vec<u8>)],
) -> Result<Option<Vec<u8>>> {
    // The rightmost path: each branch's elements, then the leaf's items.
    let mut branches: Vec<Vec<(Vec<u8>, u64)>> = Vec::new();
    let mut pgid = root;
    let leaf: Vec<LeafItem> = loop {
        if branches.len() > MAX_DEPTH {
            return Err(FormatError::corrupt(
                Some(pgid),
                None,
                "tree deeper than any real database (a cycle?)",
            ));
        }
        let page = db.page(pgid)?;
        let node: Node<'_> = page.node()?;
        node.validate(None, None)?;
        if node.is_leaf() {
            let mut items = Vec::with_capacity(node.count() + puts.len());
            for i in 0..node.count() {
                let e = node.leaf(i)?;
                items.push((e.flags, e.key.to_vec(), e.value.to_vec()));
            }
            break items;
        }
        let mut elems = Vec::with_capacity(node.count());
        for i in 0..node.count() {
            let e = node.branch(i)?;
            elems.push((e.key.to_vec(), e.pgid));
        }
        let Some(last) = elems.last() else {
            return Err(FormatError::corrupt(Some(pgid), None, "empty branch page"));
        };
        pgid = last.1;
        branches.push(elems);
    };
    let last_key = leaf.last().map(|i| i.1.as_slice());
    if puts.is_empty() || last_key.is_some_and(|k| puts[0].0.as_slice() <= k) {
        return Ok(None);
    }
    let mut items = leaf;
    items.extend(puts.iter().map(|(k, v)| (0, k.clone(), v.clone())));
    let mut level = pack_leaves(sink, &items);
    // Each branch on the path: its last child becomes the new pages of the level below.
    // The first of those keeps the old child's separator key.
    while let Some(mut elems) = branches.pop() {
        let (sep, _) = elems.pop().unwrap_or_default();
        if let Some(first) = level.first_mut() {
            first.0 = sep;
        }
        elems.extend(level);
        level = pack_branches_or_one(sink, &elems);
    }
    let root = root_over(sink, level);
    let mut v = vec![0u8; 16];
    v[0..8].copy_from_slice(&root.to_le_bytes());
    v[8..16].copy_from_slice(&sequence.to_le_bytes());
    Ok(Some(v))
}

/// Branch pages over `elems`; a single child (possible only at the root) stays a branch
/// of one, as bbolt allows.
fn pack_branches_or_one(sink: &mut PageSink, elems: &[(Vec<u8>, u64)]) -> Vec<(Vec<u8>, u64)> {
    if elems.len() == 1 {
        let key = elems[0].0.clone();
        return vec![(key, sink.put_branch(elems))];
    }
    pack_branches(sink, elems)
}

/// Fuzzing oracle (`fuzz/fuzz_targets/bolt_writer.rs`, and the unit tests): apply a
/// restore-like transaction to `img`. Must never panic; and when `img` passes the strict
/// check and the writer accepts it, the result must pass the strict check too and read
/// back the edits. Panics (a finding) otherwise. Test-only (feature `testkit`).
#[cfg(any(test, feature = "testkit"))]
pub fn exercise(img: &[u8]) {
    use super::{check, CheckOptions, EntryVisitor};
    struct Nothing;
    impl EntryVisitor for Nothing {}
    let Ok(db) = Db::open(img) else { return };
    let last_key = db
        .bucket(b"key")
        .ok()
        .flatten()
        .and_then(|b| b.last().ok().flatten())
        .map(|(k, _)| k);
    let mut append = last_key.unwrap_or_default();
    append.push(0xff);
    let edits = vec![
        Edit {
            bucket: b"key".to_vec(),
            clear: false,
            puts: vec![(append.clone(), b"v".to_vec())],
        },
        Edit {
            bucket: b"members".to_vec(),
            clear: true,
            puts: vec![(b"1".to_vec(), b"{}".to_vec())],
        },
        Edit {
            bucket: b"meta".to_vec(),
            clear: false,
            puts: vec![(b"term".to_vec(), 1u64.to_be_bytes().to_vec())],
        },
    ];
    let Ok(patch) = cow_patch(&db, &edits) else {
        return;
    };
    let was_ok = check(img, &CheckOptions::default(), &mut Nothing).ok();
    drop(db);
    // A hostile high-water mark could ask for an absurd image; stay within a bound.
    if patch.len_after(img.len() as u64) > (64 << 20) {
        return;
    }
    let mut out = img.to_vec();
    patch.apply_to(&mut out);
    if !was_ok {
        return;
    }
    let r = check(&out, &CheckOptions::default(), &mut Nothing);
    assert!(r.ok(), "writer broke a good database: {:?}", r.problems);
    let db = Db::open(&out).expect("patched database opens");
    let got = |b: &[u8], k: &[u8]| {
        db.bucket(b)
            .ok()
            .flatten()
            .and_then(|b| b.get(k).ok().flatten())
    };
    assert_eq!(got(b"key", &append), Some(b"v".to_vec()));
    assert_eq!(got(b"members", b"1"), Some(b"{}".to_vec()));
}

#[cfg(test)]
mod tests;
