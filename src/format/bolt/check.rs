//! The strict structural check of a bbolt file (etcd-formats.md §1.7 and more).
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

use super::{
    flags, le_u64, page_type_name, BucketRoot, Db, FormatError, Node, PageHeader, Problem,
    BUCKET_HEADER_SIZE, BUCKET_LEAF_FLAG, ELEM_SIZE, MAX_DEPTH, PAGE_HEADER_SIZE,
};
pub(crate) use super::node::show;
use crate::io::ReadAt;

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

/// Reads through aligned 1 MiB chunks kept in a small LRU: bbolt writes a tree mostly in
/// page order, so the walk is ~98% sequential and this turns ~250 page reads into one
/// large read. If the layout turns out random (a cache that mostly misses), it switches
/// itself off and reads pages directly, so a fragmented file costs no extra I/O.
struct ChunkCache {
    slots: Vec<(u64, Vec<u8>)>,
    tick: u64,
    used: Vec<u64>,
    hits: u64,
    misses: u64,
    off: bool,
}

const CHUNK: u64 = 1 << 20;
const CHUNK_SLOTS: usize = 16;

impl ChunkCache {
    fn new() -> Self {
        ChunkCache {
            slots: Vec::new(),
            tick: 0,
            used: Vec::new(),
            hits: 0,
            misses: 0,
            off: false,
        }
    }

    fn read(&mut self, src: &dyn ReadAt, off: u64, buf: &mut [u8]) -> std::io::Result<()> {
        if self.off || buf.len() as u64 > CHUNK / 4 {
            return src.read_exact_at(off, buf);
        }
        let size = src.size();
        let end = off
            .checked_add(buf.len() as u64)
            .filter(|&e| e <= size)
            .ok_or_else(|| crate::io::eof(off, buf.len(), size))?;
        let mut pos = off;
        while pos < end {
            let c = pos / CHUNK;
            let start = c * CHUNK;
            let slot = match self.slots.iter().position(|(i, _)| *i == c) {
                Some(s) => {
                    self.hits += 1;
                    s
                }
                None => {
                    self.misses += 1;
                    if self.misses >= 64 && self.hits < self.misses * 16 {
                        // Under 16 pages used per MiB read: the layout is random.
                        self.off = true;
                        self.slots.clear();
                        let done = (pos - off) as usize;
                        return src.read_exact_at(pos, buf.get_mut(done..).unwrap_or_default());
                    }
                    let len = CHUNK.min(size - start) as usize;
                    // Reuse the evicted slot's buffer: fresh 1 MiB allocations are mapped
                    // and faulted in by the kernel every time, which costs more than the copy.
                    let slot = if self.slots.len() < CHUNK_SLOTS {
                        self.slots.push((u64::MAX, Vec::new()));
                        self.used.push(0);
                        self.slots.len() - 1
                    } else {
                        self.used
                            .iter()
                            .enumerate()
                            .min_by_key(|(_, t)| **t)
                            .map(|(i, _)| i)
                            .unwrap_or(0)
                    };
                    let Some((idx, data)) = self.slots.get_mut(slot) else {
                        return src.read_exact_at(off, buf);
                    };
                    data.resize(len, 0);
                    if let Err(e) = src.read_exact_at(start, data) {
                        *idx = u64::MAX;
                        return Err(e);
                    }
                    *idx = c;
                    slot
                }
            };
            self.tick += 1;
            if let Some(u) = self.used.get_mut(slot) {
                *u = self.tick;
            }
            let data = self
                .slots
                .get(slot)
                .map(|(_, d)| d.as_slice())
                .unwrap_or_default();
            let from = (pos - start) as usize;
            let n = ((end - pos) as usize).min(data.len().saturating_sub(from));
            if n == 0 {
                return Err(crate::io::eof(pos, buf.len(), size));
            }
            let done = (pos - off) as usize;
            if let (Some(dst), Some(srcb)) = (buf.get_mut(done..done + n), data.get(from..from + n))
            {
                dst.copy_from_slice(srcb);
            }
            pos += n as u64;
        }
        Ok(())
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

    fn check_metas(&mut self) {
        let size = self.db.source().size();
        for (i, slot) in self.db.metas.iter().enumerate() {
            let page = Some(i as u64);
            let off = Some(slot.offset);
            if let Some(f) = &slot.fault {
                let msg = format!("meta {i}: {f}");
                self.problem(page, off, msg);
                continue;
            }
            if let Some(h) = slot.header {
                if h.id != i as u64 || h.flags != flags::META || h.count != 0 || h.overflow != 0 {
                    self.problem(
                        page,
                        off,
                        format!(
                            "meta {i}: page header id {} flags {:#x} count {} overflow {}, want id {i} flags 0x4 count 0 overflow 0",
                            h.id, h.flags, h.count, h.overflow
                        ),
                    );
                }
            }
            if let Some(m) = slot.meta {
                if m.page_size != self.db.page_size {
                    self.problem(
                        page,
                        off,
                        format!(
                            "meta {i}: page size {} differs from the current meta's {}",
                            m.page_size, self.db.page_size
                        ),
                    );
                }
                for p in super::meta_sanity(i, &m, slot.offset, size) {
                    self.problem(p.page, p.offset, p.message);
                }
            }
            if slot.offset != i as u64 * self.ps() {
                self.problem(
                    page,
                    off,
                    format!(
                        "meta {i} found at offset {} (page size {})",
                        slot.offset,
                        self.ps()
                    ),
                );
            }
        }
    }

    /// Read the header of page `id`, checking id range, file bounds and header id.
    fn read_header(&mut self, id: u64, from: From) -> Option<PageHeader> {
        if id >= self.hwm {
            self.problem(
                from.page,
                from.offset,
                format!(
                    "reference to page {id}: out of bounds (high-water mark {})",
                    self.hwm
                ),
            );
            return None;
        }
        if id >= self.present {
            self.problem(
                from.page,
                from.offset,
                format!(
                    "reference to page {id}: past the end of the data ({} bytes, {} whole pages)",
                    self.db.source().size(),
                    self.present
                ),
            );
            return None;
        }
        let off = id * self.ps();
        let mut hb = [0u8; PAGE_HEADER_SIZE];
        if let Err(e) = self.read_at(off, &mut hb) {
            self.push(e);
            return None;
        }
        let h = PageHeader::parse(&hb)?;
        if h.id != id {
            self.problem(
                Some(id),
                Some(off),
                format!(
                    "page {id} has id {} in its header (referenced from page {})",
                    h.id,
                    from.page.map(|p| p.to_string()).unwrap_or("?".into())
                ),
            );
            return None;
        }
        Some(h)
    }

    /// Mark `id ..= id+overflow` reachable. Returns false (after reporting) when the span is
    /// out of range or any page in it was already reached: the caller must not descend.
    fn mark(&mut self, id: u64, overflow: u32, from: From) -> bool {
        let last = id.saturating_add(u64::from(overflow));
        if last >= self.hwm || last >= self.present {
            self.problem(
                Some(id),
                Some(id * self.ps()),
                format!(
                    "page {id}: overflow {overflow} runs to page {last}, past {} (high-water mark {}, {} pages in the data)",
                    if last >= self.hwm { "the high-water mark" } else { "the end of the data" },
                    self.hwm,
                    self.present
                ),
            );
            return false;
        }
        let mut ok = true;
        for p in id..=last {
            if self.reached.set(p) {
                self.problem(
                    Some(p),
                    Some(p * self.ps()),
                    format!(
                        "page {p}: multiple references (again from page {} offset {})",
                        from.page.map(|p| p.to_string()).unwrap_or("?".into()),
                        from.offset.map(|p| p.to_string()).unwrap_or("?".into())
                    ),
                );
                ok = false;
            } else if self.freed.as_ref().is_some_and(|f| f.get(p)) {
                self.problem(
                    Some(p),
                    Some(p * self.ps()),
                    format!("page {p}: reachable freed"),
                );
            }
        }
        ok
    }

    /// Read a whole reachable page span (header already validated).
    fn read_span(&mut self, id: u64, overflow: u32) -> Option<Vec<u8>> {
        let len = (u64::from(overflow) + 1) * self.ps();
        let len = usize::try_from(len).ok()?;
        let mut buf = vec![0u8; len];
        if let Err(e) = self.read_at(id * self.ps(), &mut buf) {
            self.push(e);
            return None;
        }
        Some(buf)
    }

    fn check_freelist(&mut self) {
        let id = self.db.meta.freelist;
        let from = From {
            page: Some(self.db.current as u64),
            offset: Some(self.db.current as u64 * self.ps() + 48),
        };
        let Some(h) = self.read_header(id, from) else {
            return;
        };
        if h.flags != flags::FREELIST {
            self.problem(
                Some(id),
                Some(id * self.ps()),
                format!(
                    "freelist page {id} has type {}, want freelist",
                    page_type_name(h.flags)
                ),
            );
            return;
        }
        if !self.mark(id, h.overflow, from) {
            return;
        }
        self.report.pages.freelist = u64::from(h.overflow) + 1;
        let Some(data) = self.read_span(id, h.overflow) else {
            return;
        };
        let (n, start) = if h.count == 0xFFFF {
            (le_u64(&data, 16).unwrap_or(u64::MAX), 24usize)
        } else {
            (u64::from(h.count), 16usize)
        };
        let fits = (data.len().saturating_sub(start) / 8) as u64;
        if n > fits {
            self.problem(
                Some(id),
                Some(id * self.ps()),
                format!(
                    "freelist count {n} does not fit in its {} pages",
                    h.overflow + 1
                ),
            );
            return;
        }
        let mut freed = Bitmap::new(self.present);
        let mut prev: Option<u64> = None;
        for i in 0..n as usize {
            let at = start + 8 * i;
            let Some(p) = le_u64(&data, at) else { break };
            let off = Some(id * self.ps() + at as u64);
            if p < 2 || p >= self.hwm {
                self.problem(
                    Some(id),
                    off,
                    format!("freelist entry {i}: page {p} outside [2, {})", self.hwm),
                );
                continue;
            }
            if prev.is_some_and(|q| p < q) {
                self.problem(Some(id), off, format!("freelist entry {i}: ids not sorted"));
            }
            prev = Some(p);
            if freed.set(p) {
                self.problem(Some(id), off, format!("page {p}: already freed"));
            }
        }
        self.freed = Some(freed);
    }

    /// Walk one bucket's tree.
    fn walk(
        &mut self,
        root: BucketRoot,
        mode: Mode<'_>,
        from: From,
        visitor: &mut dyn EntryVisitor,
    ) {
        let top_name: Option<Vec<u8>> = match &mode {
            Mode::Top(n) => Some(n.to_vec()),
            _ => None,
        };
        let mut stats = BucketStats {
            name: top_name
                .as_deref()
                .map(|n| String::from_utf8_lossy(n).into_owned())
                .unwrap_or_default(),
            ..BucketStats::default()
        };
        if let Some(n) = &top_name {
            visitor.bucket(n);
            self.hash = crc32c::crc32c_append(self.hash, n);
        }
        match root {
            BucketRoot::Inline { data, offset } => {
                stats.inline = true;
                if matches!(mode, Mode::Root) {
                    self.problem(None, Some(offset), "the root bucket is inline");
                }
                match Node::new(&data, None, offset) {
                    Ok(n) if n.is_leaf() => {
                        self.leaf(&n, &mode, None, None, true, &mut stats, visitor);
                    }
                    Ok(n) => self.problem(
                        None,
                        Some(offset),
                        format!(
                            "inline bucket page has type {}, want leaf",
                            page_type_name(n.flags())
                        ),
                    ),
                    Err(e) => self.push(e),
                }
            }
            BucketRoot::Page(root) => {
                let mut stack: Vec<BranchFrame> = vec![BranchFrame {
                    children: vec![Child {
                        pgid: root,
                        lo: Vec::new(),
                        hi: None,
                        from,
                    }],
                    next: 0,
                }];
                let mut depth = 0u32;
                // A bbolt B+tree is balanced: every leaf of one bucket sits at one depth.
                let mut leaf_depth: Option<usize> = None;
                while let Some(top) = stack.last_mut() {
                    let Some(c) = top.children.get(top.next) else {
                        stack.pop();
                        continue;
                    };
                    top.next += 1;
                    let (pgid, lo, hi, cfrom) = (c.pgid, c.lo.clone(), c.hi.clone(), c.from);
                    let level = stack.len(); // 1 = bucket root
                    if level > MAX_DEPTH {
                        self.problem(
                            Some(pgid),
                            Some(pgid.saturating_mul(self.ps())),
                            format!("tree deeper than {MAX_DEPTH} levels"),
                        );
                        continue;
                    }
                    let Some(h) = self.read_header(pgid, cfrom) else {
                        continue;
                    };
                    if h.flags != flags::BRANCH && h.flags != flags::LEAF {
                        // Still account the span so it is not reported as free/unreachable twice.
                        self.mark(pgid, h.overflow, cfrom);
                        self.problem(
                            Some(pgid),
                            Some(pgid * self.ps()),
                            format!(
                                "page {pgid}: invalid type: {} (a tree page must be branch or leaf; referenced from page {})",
                                page_type_name(h.flags),
                                cfrom.page.map(|p| p.to_string()).unwrap_or("?".into())
                            ),
                        );
                        continue;
                    }
                    if !self.mark(pgid, h.overflow, cfrom) {
                        continue;
                    }
                    let Some(data) = self.read_span(pgid, h.overflow) else {
                        continue;
                    };
                    depth = depth.max(level as u32);
                    stats.overflow_pages += u64::from(h.overflow);
                    self.report.pages.overflow += u64::from(h.overflow);
                    let node = match Node::new(&data, Some(pgid), pgid * self.ps()) {
                        Ok(n) => n,
                        Err(e) => {
                            self.push(e);
                            continue;
                        }
                    };
                    if !self.count_fits(&node) {
                        continue;
                    }
                    let lo = (!lo.is_empty()).then_some(lo);
                    if node.is_leaf() {
                        match leaf_depth {
                            None => leaf_depth = Some(level),
                            Some(d) if d != level => self.problem(
                                Some(pgid),
                                Some(pgid * self.ps()),
                                format!(
                                    "leaf page {pgid} at depth {level}, but this bucket's first leaf is at depth {d} (a leaf where a branch belongs, or the reverse)"
                                ),
                            ),
                            Some(_) => {}
                        }
                        stats.leaf_pages += 1;
                        self.report.pages.leaf += 1;
                        let is_root = level == 1;
                        self.leaf(
                            &node,
                            &mode,
                            lo.as_deref(),
                            hi.as_deref(),
                            is_root,
                            &mut stats,
                            visitor,
                        );
                    } else {
                        stats.branch_pages += 1;
                        self.report.pages.branch += 1;
                        let children = self.branch(&node, lo.as_deref(), hi.as_deref());
                        if !children.is_empty() {
                            stack.push(BranchFrame { children, next: 0 });
                        }
                    }
                }
                stats.depth = depth;
            }
        }
        if top_name.is_some() {
            // etcdutl's hash continues with this bucket's content after its name.
            self.hash =
                crc32c::crc32c_combine(self.hash, stats.content_crc, stats.content_len as usize);
            self.report.total_entries += stats.entries;
            self.report.buckets.push(stats);
        }
    }

    /// Element count fits in the page span.
    fn count_fits(&mut self, n: &Node<'_>) -> bool {
        let need = PAGE_HEADER_SIZE + ELEM_SIZE * n.count();
        if need > n.data().len() {
            self.problem(
                n.page(),
                Some(n.offset()),
                format!(
                    "{} page: {} elements need {need} bytes, the page has {}",
                    page_type_name(n.flags()),
                    n.count(),
                    n.data().len()
                ),
            );
            return false;
        }
        true
    }

    #[allow(clippy::too_many_arguments)]
    fn key_problems(
        &mut self,
        n: &Node<'_>,
        i: usize,
        key: &[u8],
        key_off: u64,
        prev: Option<&[u8]>,
        lo: Option<&[u8]>,
        hi: Option<&[u8]>,
    ) {
        let kind = page_type_name(n.flags());
        if key.is_empty() {
            self.problem(
                n.page(),
                Some(key_off),
                format!("{kind} element {i}: zero-length key"),
            );
        }
        if key.len() > MAX_KEY_SIZE {
            self.problem(
                n.page(),
                Some(key_off),
                format!(
                    "{kind} element {i}: key of {} bytes exceeds {MAX_KEY_SIZE}",
                    key.len()
                ),
            );
        }
        if let Some(p) = prev {
            if key <= p {
                self.problem(
                    n.page(),
                    Some(key_off),
                    format!(
                        "{kind} element {i}: key {} is not greater than the previous key {}",
                        show(key),
                        show(p)
                    ),
                );
            }
        }
        if let Some(lo) = lo {
            if key < lo {
                self.problem(
                    n.page(),
                    Some(key_off),
                    format!(
                        "{kind} element {i}: key {} is below the separator {} in the parent branch",
                        show(key),
                        show(lo)
                    ),
                );
            }
        }
        if let Some(hi) = hi {
            if key >= hi {
                self.problem(
                    n.page(),
                    Some(key_off),
                    format!(
                        "{kind} element {i}: key {} is not below the next separator {} in an ancestor branch",
                        show(key),
                        show(hi)
                    ),
                );
            }
        }
    }

    /// Check a branch page's elements; returns the children to visit, in order.
    fn branch(&mut self, n: &Node<'_>, lo: Option<&[u8]>, hi: Option<&[u8]>) -> Vec<Child> {
        if n.count() == 0 {
            self.problem(n.page(), Some(n.offset()), "branch page with no elements");
            return Vec::new();
        }
        let mut elems: Vec<(Vec<u8>, u64, u64)> = Vec::with_capacity(n.count());
        let mut prev: Option<Vec<u8>> = None;
        for i in 0..n.count() {
            let e = match n.branch(i) {
                Ok(e) => e,
                Err(e) => {
                    self.push(e);
                    continue;
                }
            };
            let key_off = n.offset() + e.key_offset as u64;
            self.key_problems(n, i, e.key, key_off, prev.as_deref(), lo, hi);
            if prev.as_deref().is_some_and(|p| e.key <= p) {
                // Out of order: its range would be meaningless; skip the child.
                continue;
            }
            prev = Some(e.key.to_vec());
            let elem_off = n.offset() + (PAGE_HEADER_SIZE + ELEM_SIZE * i) as u64;
            elems.push((e.key.to_vec(), e.pgid, elem_off));
        }
        let mut out = Vec::with_capacity(elems.len());
        let mut it = elems.into_iter().peekable();
        while let Some((key, pgid, off)) = it.next() {
            let next_hi = it.peek().map(|(k, _, _)| k.clone());
            let child_hi = match next_hi {
                Some(k) => Some(k),
                None => hi.map(|h| h.to_vec()),
            };
            out.push(Child {
                pgid,
                lo: key,
                hi: child_hi,
                from: From {
                    page: n.page(),
                    offset: Some(off + 8),
                },
            });
        }
        out
    }

    /// Check a leaf (page or inline) and hand its entries on.
    #[allow(clippy::too_many_arguments)]
    fn leaf(
        &mut self,
        n: &Node<'_>,
        mode: &Mode<'_>,
        lo: Option<&[u8]>,
        hi: Option<&[u8]>,
        is_bucket_root: bool,
        stats: &mut BucketStats,
        visitor: &mut dyn EntryVisitor,
    ) {
        if !self.count_fits(n) {
            return;
        }
        // bbolt merges underfull nodes on commit; an empty non-root leaf is odd but
        // harmless, so it is not reported.
        let _ = is_bucket_root;
        let mut prev: Option<&[u8]> = None;
        for i in 0..n.count() {
            let e = match n.leaf(i) {
                Ok(e) => e,
                Err(e) => {
                    self.push(e);
                    continue;
                }
            };
            let key_off = n.offset() + e.key_offset as u64;
            self.key_problems(n, i, e.key, key_off, prev, lo, hi);
            if prev.is_none_or(|p| e.key > p) {
                prev = Some(e.key);
            }
            if e.value.len() > MAX_VALUE_SIZE {
                self.problem(
                    n.page(),
                    Some(key_off),
                    format!(
                        "leaf element {i}: value of {} bytes exceeds the limit",
                        e.value.len()
                    ),
                );
            }
            if e.flags & !BUCKET_LEAF_FLAG != 0 {
                self.problem(
                    n.page(),
                    Some(key_off),
                    format!("leaf element {i}: unknown flags {:#x}", e.flags),
                );
            }
            let is_bucket = e.flags & BUCKET_LEAF_FLAG != 0;
            let val_off = key_off + e.key.len() as u64;
            match mode {
                Mode::Root => {
                    if !is_bucket {
                        self.problem(
                            n.page(),
                            Some(key_off),
                            format!("top-level entry {} is not a bucket", show(e.key)),
                        );
                        continue;
                    }
                    match self.bucket_root(e.value, n, val_off) {
                        Some(r) => self.walk(
                            r,
                            Mode::Top(e.key),
                            From {
                                page: n.page(),
                                offset: Some(val_off),
                            },
                            visitor,
                        ),
                        None => {
                            // Still a bucket as far as the hash is concerned.
                            self.hash = crc32c::crc32c_append(self.hash, e.key);
                        }
                    }
                }
                Mode::Top(name) => {
                    stats.entries += 1;
                    stats.key_bytes += e.key.len() as u64;
                    stats.content_crc = crc32c::crc32c_append(stats.content_crc, e.key);
                    stats.content_len += e.key.len() as u64;
                    if is_bucket {
                        self.nested(e.value, n, val_off);
                    } else {
                        stats.value_bytes += e.value.len() as u64;
                        stats.content_crc = crc32c::crc32c_append(stats.content_crc, e.value);
                        stats.content_len += e.value.len() as u64;
                    }
                    visitor.entry(&VisitEntry {
                        bucket: name,
                        key: e.key,
                        value: e.value,
                        flags: e.flags,
                        page: n.page(),
                        offset: key_off,
                    });
                }
                Mode::Nested => {
                    if is_bucket {
                        self.nested(e.value, n, val_off);
                    }
                }
            }
        }
    }

    fn nested(&mut self, v: &[u8], n: &Node<'_>, val_off: u64) {
        if n.page().is_none() {
            self.problem(
                None,
                Some(val_off),
                "inline bucket contains a sub-bucket (bbolt never inlines those)",
            );
            return;
        }
        if let Some(r) = self.bucket_root(v, n, val_off) {
            self.pending.push((
                r,
                From {
                    page: n.page(),
                    offset: Some(val_off),
                },
            ));
        }
    }

    /// Decode a bucket value; reports and returns None when unusable.
    fn bucket_root(&mut self, v: &[u8], n: &Node<'_>, val_off: u64) -> Option<BucketRoot> {
        match BucketRoot::parse(v, (n.page(), val_off)) {
            Ok(BucketRoot::Page(p)) => {
                if v.len() != BUCKET_HEADER_SIZE {
                    self.problem(
                        n.page(),
                        Some(val_off),
                        format!(
                            "bucket value with root page {p} is {} bytes, want {BUCKET_HEADER_SIZE}",
                            v.len()
                        ),
                    );
                }
                Some(BucketRoot::Page(p))
            }
            Ok(r) => Some(r),
            Err(e) => {
                self.push(e);
                None
            }
        }
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
