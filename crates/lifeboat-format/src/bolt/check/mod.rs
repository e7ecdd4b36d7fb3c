//! The strict structural check of a bbolt file (bbolt's `Tx.Check` and more).
//!
//! One pass over the tree, in key order, that:
//! * checks both meta pages, every reachable page (id below the high-water mark and inside
//!   the data, header id equal to the referencing id, type by position, overflow span),
//!   every element (bounds, zero-length and oversized keys, flags), key order within pages
//!   and against the branch separators above, inline buckets, that top-level entries are
//!   buckets, multiple references, and the freelist when one is persisted;
//! * computes what `etcdutl snapshot status` reports (its CRC-32C hash and entry count)
//!   and hands every top-level entry to an [`EntryVisitor`] (the etcd report and hashkv).
//!
//! It continues past problems where that is safe (a bad page is skipped, its siblings are
//! still read), never recurses on input-controlled depth (explicit stacks, depth capped at
//! [`MAX_DEPTH`]), never descends into a page twice (a reachability bitmap, bounded by the
//! data size), and caps the number of problems it keeps.

use serde::Serialize;

pub(crate) use super::node::show;
use super::{
    flags, le_u64, page_type_name, BucketRoot, Db, FormatError, Node, PageHeader, Problem,
    BUCKET_HEADER_SIZE, BUCKET_LEAF_FLAG, ELEM_SIZE, MAX_DEPTH, PAGE_HEADER_SIZE,
};
use crate::io::ReadAt;
use cache::ChunkCache;

mod cache;
mod pages;
mod tree;

pub use super::node::MAX_KEY_SIZE;
/// bbolt's value size limit.
pub const MAX_VALUE_SIZE: usize = (1 << 31) - 2;

/// One entry of a top-level bucket, as the walk meets it.
#[derive(Debug, Clone, Copy)]
pub struct VisitEntry<'a> {
    pub bucket: &'a [u8],
    pub key: &'a [u8],
    /// The value; for a nested bucket (`flags` has [`BUCKET_LEAF_FLAG`]) the raw bucket
    /// header and inline page.
    pub value: &'a [u8],
    pub flags: u32,
    /// Page holding the entry (None inside an inline bucket).
    pub page: Option<u64>,
    /// Byte offset of the key in the database image.
    pub offset: u64,
}

/// Receives every entry of every top-level bucket, in bucket then key order.
pub trait EntryVisitor {
    /// A top-level bucket starts.
    fn bucket(&mut self, _name: &[u8]) {}
    /// One entry of the current top-level bucket.
    fn entry(&mut self, _e: &VisitEntry<'_>) {}
}

impl EntryVisitor for () {}

impl<V: EntryVisitor + ?Sized> EntryVisitor for &mut V {
    fn bucket(&mut self, name: &[u8]) {
        (**self).bucket(name)
    }
    fn entry(&mut self, e: &VisitEntry<'_>) {
        (**self).entry(e)
    }
}

/// Two visitors on one walk: each sees every bucket and entry, the first first.
impl<A: EntryVisitor, B: EntryVisitor> EntryVisitor for (A, B) {
    fn bucket(&mut self, name: &[u8]) {
        self.0.bucket(name);
        self.1.bucket(name);
    }
    fn entry(&mut self, e: &VisitEntry<'_>) {
        self.0.entry(e);
        self.1.entry(e);
    }
}

/// Options of [`check`].
#[derive(Debug, Clone)]
pub struct CheckOptions {
    /// Keep at most this many problems (the rest are only counted).
    pub max_problems: usize,
}

impl Default for CheckOptions {
    fn default() -> Self {
        CheckOptions { max_problems: 1000 }
    }
}

/// Per top-level bucket figures.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct BucketStats {
    pub name: String,
    pub entries: u64,
    pub key_bytes: u64,
    pub value_bytes: u64,
    pub inline: bool,
    /// Tree depth (1 = a single leaf, 0 = inline).
    pub depth: u32,
    pub branch_pages: u64,
    pub leaf_pages: u64,
    /// Continuation pages of pages with `overflow > 0`.
    pub overflow_pages: u64,
    /// CRC-32C of the bucket's keys and values in order (what etcdutl's hash adds after the
    /// name), and their length: lets hashkv reuse it instead of hashing the same bytes again.
    #[serde(skip)]
    pub content_crc: u32,
    #[serde(skip)]
    pub content_len: u64,
}

/// Page accounting.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct PageCounts {
    /// Pages below the high-water mark.
    pub total: u64,
    /// Reachable: metas, freelist, branch, leaf and overflow pages.
    pub in_use: u64,
    pub branch: u64,
    pub leaf: u64,
    pub overflow: u64,
    pub freelist: u64,
    /// Unreachable pages below the high-water mark (what a defrag gives back).
    pub free: u64,
}

/// Result of [`check`].
#[derive(Debug, Clone, Default, Serialize)]
pub struct CheckReport {
    pub page_size: u32,
    /// High-water mark (`meta.pgid`).
    pub high_water_mark: u64,
    pub txid: u64,
    /// Which meta is current (0 or 1) and why.
    pub current_meta: usize,
    pub why_current_meta: String,
    /// Freelist page id, if one is persisted.
    pub freelist_page: Option<u64>,
    pub pages: PageCounts,
    pub buckets: Vec<BucketStats>,
    /// Entries of all top-level buckets: etcdutl's `totalKey`.
    pub total_entries: u64,
    /// etcdutl's `hash`: CRC-32C over bucket names, keys and values in order.
    pub etcdutl_hash: u32,
    pub problems: Vec<Problem>,
    /// Problems found beyond `max_problems`.
    pub problems_not_shown: u64,
    /// False when no meta page was usable (nothing else could be checked).
    pub opened: bool,
}

impl CheckReport {
    pub fn ok(&self) -> bool {
        self.problems.is_empty() && self.problems_not_shown == 0
    }
}

/// A bitmap of page ids.
struct Bitmap {
    bits: Vec<u64>,
    len: u64,
}

impl Bitmap {
    fn new(len: u64) -> Bitmap {
        Bitmap {
            bits: vec![0; usize::try_from(len.div_ceil(64)).unwrap_or(0)],
            len,
        }
    }
    fn get(&self, i: u64) -> bool {
        i < self.len
            && self
                .bits
                .get((i / 64) as usize)
                .is_some_and(|w| w & (1 << (i % 64)) != 0)
    }
    /// Set; returns the previous value.
    fn set(&mut self, i: u64) -> bool {
        if i >= self.len {
            return false;
        }
        match self.bits.get_mut((i / 64) as usize) {
            Some(w) => {
                let old = *w & (1 << (i % 64)) != 0;
                *w |= 1 << (i % 64);
                old
            }
            None => false,
        }
    }
    fn count(&self) -> u64 {
        self.bits.iter().map(|w| u64::from(w.count_ones())).sum()
    }
}

/// Where a page reference came from, for messages.
#[derive(Debug, Clone, Copy)]
struct From {
    page: Option<u64>,
    offset: Option<u64>,
}

enum Mode<'n> {
    /// The root bucket: entries are the top-level buckets.
    Root,
    /// A top-level bucket: entries go to the visitor and the hash.
    Top(&'n [u8]),
    /// A nested bucket: checked only.
    Nested,
}

struct Child {
    pgid: u64,
    lo: Vec<u8>,
    hi: Option<Vec<u8>>,
    from: From,
}

struct BranchFrame {
    children: Vec<Child>,
    next: usize,
}

struct Walker<'a, R> {
    db: &'a Db<R>,
    hwm: u64,
    /// Pages that exist in the data: min(hwm, data size / page size).
    present: u64,
    reached: Bitmap,
    freed: Option<Bitmap>,
    problems: Vec<Problem>,
    max_problems: usize,
    dropped: u64,
    report: CheckReport,
    hash: u32,
    /// Nested (non-top-level) buckets still to check.
    pending: Vec<(BucketRoot, From)>,
    cache: ChunkCache,
}

/// Run the strict check over a database image; `visitor` sees every top-level entry.
/// Never fails: everything wrong becomes a [`Problem`] in the report.
pub fn check<R: ReadAt + ?Sized>(
    src: &R,
    opts: &CheckOptions,
    visitor: &mut dyn EntryVisitor,
) -> CheckReport {
    let mut report = CheckReport::default();
    let db = match Db::open(src) {
        Ok(db) => db,
        Err(e) => {
            report.problems.push(e.to_problem());
            return report;
        }
    };
    check_db(&db, opts, visitor)
}

/// [`check`] of an opened database.
pub fn check_db<R: ReadAt>(
    db: &Db<R>,
    opts: &CheckOptions,
    visitor: &mut dyn EntryVisitor,
) -> CheckReport {
    let ps = u64::from(db.page_size);
    let hwm = db.meta.pgid;
    let present = hwm.min(db.source().size() / ps.max(1));
    let mut w = Walker {
        db,
        hwm,
        present,
        reached: Bitmap::new(present),
        freed: None,
        problems: Vec::new(),
        max_problems: opts.max_problems,
        dropped: 0,
        report: CheckReport {
            page_size: db.page_size,
            high_water_mark: hwm,
            txid: db.meta.txid,
            current_meta: db.current,
            why_current_meta: db.why_current.clone(),
            freelist_page: db.meta.has_freelist().then_some(db.meta.freelist),
            opened: true,
            ..CheckReport::default()
        },
        hash: 0,
        pending: Vec::new(),
        cache: ChunkCache::new(),
    };
    w.check_metas();
    w.reached.set(0);
    w.reached.set(1);
    if db.meta.has_freelist() {
        w.check_freelist();
    }
    w.walk(
        BucketRoot::Page(db.meta.root),
        Mode::Root,
        From {
            page: Some(db.current as u64),
            offset: Some((db.current as u64).saturating_mul(ps).saturating_add(32)),
        },
        visitor,
    );
    // Nested buckets (none in etcd): checked, not hashed.
    let mut guard = 0u64;
    while let Some((root, from)) = w.pending.pop() {
        guard += 1;
        if guard > hwm.saturating_add(1 << 20) {
            break;
        }
        w.walk(root, Mode::Nested, from, &mut ());
    }
    w.account();
    let mut r = w.report;
    r.etcdutl_hash = w.hash;
    r.problems = w.problems;
    r.problems_not_shown = w.dropped;
    r
}

impl<'a, R: ReadAt> Walker<'a, R> {
    fn problem(&mut self, page: Option<u64>, offset: Option<u64>, msg: impl Into<String>) {
        if self.problems.len() < self.max_problems {
            self.problems.push(Problem::new(page, offset, msg));
        } else {
            self.dropped += 1;
        }
    }

    fn push(&mut self, e: FormatError) {
        let p = e.to_problem();
        if self.problems.len() < self.max_problems {
            self.problems.push(p);
        } else {
            self.dropped += 1;
        }
    }

    fn read_at(&mut self, off: u64, buf: &mut [u8]) -> Result<(), FormatError> {
        let src: &dyn ReadAt = self.db.source();
        self.cache
            .read(src, off, buf)
            .map_err(|source| FormatError::Io {
                offset: off,
                len: buf.len(),
                source,
            })
    }

    fn ps(&self) -> u64 {
        u64::from(self.db.page_size)
    }

    /// Page accounting after the walk.
    fn account(&mut self) {
        let reached = self.reached.count();
        let pc = &mut self.report.pages;
        pc.total = self.hwm;
        pc.in_use = reached;
        pc.free = self.hwm.saturating_sub(reached);
        if let Some(freed) = self.freed.take() {
            let mut unreachable = Vec::new();
            for p in 2..self.present {
                if !self.reached.get(p) && !freed.get(p) {
                    unreachable.push(p);
                }
            }
            for p in unreachable {
                let off = p * self.ps();
                self.problem(Some(p), Some(off), format!("page {p}: unreachable unfreed"));
            }
            self.freed = Some(freed);
        }
    }
}
