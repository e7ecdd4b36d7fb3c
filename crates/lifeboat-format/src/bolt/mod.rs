//! A read-only bbolt (v1.3.x, format version 2) reader over any [`ReadAt`].
//!
//! Written against bbolt 1.3.6-1.3.8's page layout (as etcd 3.5 writes it) rather than on top of a bbolt
//! port: etcd 3.5 Linux databases carry no freelist page, a live member's file is locked, and
//! damaged files must produce reports, not panics. Everything here reads pages on demand
//! (so an `inspect` of a compressed backup decodes only what it touches), checks every
//! length, offset and page id before use, and never recurses on input-controlled depth.
//!
//! * [`Db::open`] validates both meta pages like bbolt 1.3.6/1.3.7 and picks the current one.
//! * [`Db::bucket`] finds a top-level bucket; [`Bucket::get`], [`Bucket::last`] and
//!   [`Bucket::cursor`] read it (a cursor streams in key order, one page per tree level held).
//! * [`check_meta`] is the quick meta-page check; [`check`] is the strict full check.
//!
//! Layout: `page` (page header, types, element sizes: what the coming writer shares),
//! `node` (bounds-checked branch/leaf elements and one page's validation), `meta` (meta
//! pages), `cursor` (buckets and the validating cursor), `check/` (the strict check),
//! `error` (errors and problems); this file opens a [`Db`] and reads its pages.
//!
//! Integers are decoded little-endian: bbolt writes native order, and big-endian builds
//! (s390x, ppc64) are detected and refused rather than misread.

#[doc(hidden)]
#[cfg(any(test, feature = "testkit"))]
pub mod build;
pub mod check;
mod cursor;
mod error;
mod meta;
mod node;
mod page;
pub mod write;

use crate::io::ReadAt;

pub use check::{
    check, check_db, BucketStats, CheckOptions, CheckReport, EntryVisitor, PageCounts, VisitEntry,
};
pub use cursor::{Bucket, BucketRoot, Cursor, Entry};
pub use error::{is_damage, FormatError, Problem, Result};
pub use meta::{
    check_meta, fix_checksums, meta_checksum, Meta, MetaFault, MetaSlot, MAGIC, META_SIZE,
    PGID_NO_FREELIST, VERSION,
};
pub use node::{BranchElem, LeafElem, Node};
pub use page::{
    flags, page_type_name, Page, PageHeader, BUCKET_HEADER_SIZE, BUCKET_LEAF_FLAG, ELEM_SIZE,
    PAGE_HEADER_SIZE,
};
pub(crate) use page::{le_u16, le_u32, le_u64};

/// Deepest B+tree this reader follows. Fan-out is at least 2, so a real tree of 2^64 pages
/// is at most 64 levels deep; anything deeper is a cycle or garbage.
pub const MAX_DEPTH: usize = 64;

/// An open database: the chosen meta and the source to read pages from.
pub struct Db<R> {
    src: R,
    /// Page size used to locate pages (from the current meta).
    pub page_size: u32,
    /// The current meta.
    pub meta: Meta,
    /// Both meta pages as found.
    pub metas: [MetaSlot; 2],
    /// Index (0 or 1) of the current meta.
    pub current: usize,
    /// Why that meta is current, in words.
    pub why_current: String,
}

impl<R: ReadAt> Db<R> {
    /// Open a database image: read both meta pages and choose the current one the way bbolt
    /// does (the valid meta with the larger txid, ties to meta 0). Fails only when neither
    /// meta is usable; nothing else is read.
    pub fn open(src: R) -> Result<Db<R>> {
        let m0 = MetaSlot::read(&src, 0);
        // Page size: meta 0's if valid, else probe for meta 1 like bbolt 1.3.7
        // (1.3.6 assumes the OS page size, which is among the probes).
        let mut m1 = None;
        if let Some(m) = m0.valid() {
            m1 = Some(MetaSlot::read(&src, u64::from(m.page_size)));
        } else {
            for i in 0..15u32 {
                let off = 1024u64 << i;
                if off + (PAGE_HEADER_SIZE + META_SIZE) as u64 > src.size() {
                    break;
                }
                let s = MetaSlot::read(&src, off);
                if s.valid().is_some_and(|m| u64::from(m.page_size) == off) {
                    m1 = Some(s);
                    break;
                }
            }
        }
        let m1 = m1.unwrap_or_else(|| {
            // Nothing found: record what sits at 4096 so the report has something to say.
            MetaSlot::read(&src, 4096)
        });
        let (current, why) = match (m0.valid(), m1.valid()) {
            (Some(a), Some(b)) => {
                if b.txid > a.txid {
                    (
                        1,
                        format!("meta 1 has the larger txid ({} > {})", b.txid, a.txid),
                    )
                } else if a.txid == b.txid {
                    (
                        0,
                        format!("both metas valid with txid {}; ties go to meta 0", a.txid),
                    )
                } else {
                    (
                        0,
                        format!("meta 0 has the larger txid ({} > {})", a.txid, b.txid),
                    )
                }
            }
            (Some(a), None) => (
                0,
                format!(
                    "meta 1 is invalid ({}); meta 0 (txid {}) used",
                    m1.fault.as_ref().map(|f| f.to_string()).unwrap_or_default(),
                    a.txid
                ),
            ),
            (None, Some(b)) => (
                1,
                format!(
                    "meta 0 is invalid ({}); meta 1 (txid {}) used",
                    m0.fault.as_ref().map(|f| f.to_string()).unwrap_or_default(),
                    b.txid
                ),
            ),
            (None, None) => {
                let f0 = m0.fault.clone().unwrap_or(MetaFault::Missing);
                let f1 = m1.fault.clone().unwrap_or(MetaFault::Missing);
                return Err(FormatError::corrupt(
                    Some(0),
                    Some(0),
                    format!("no valid meta page: meta 0: {f0}; meta 1: {f1}"),
                ));
            }
        };
        let meta = if current == 0 { m0.valid() } else { m1.valid() }
            .copied()
            .ok_or_else(|| FormatError::corrupt(Some(0), Some(0), "no valid meta page"))?;
        Ok(Db {
            src,
            page_size: meta.page_size,
            meta,
            metas: [m0, m1],
            current,
            why_current: why,
        })
    }
}

impl<R: ReadAt> Db<R> {
    /// The underlying source.
    pub fn source(&self) -> &R {
        &self.src
    }

    /// `pgid * page_size`: the logical database size (etcdutl's totalSize).
    pub fn db_size(&self) -> u64 {
        self.meta.pgid.saturating_mul(u64::from(self.page_size))
    }

    /// Byte offset of a page.
    pub fn page_offset(&self, id: u64) -> Option<u64> {
        id.checked_mul(u64::from(self.page_size))
    }

    pub(crate) fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        self.src
            .read_exact_at(offset, buf)
            .map_err(|source| FormatError::Io {
                offset,
                len: buf.len(),
                source,
            })
    }

    /// Check that pages `id ..= id+overflow` exist: below the high-water mark and inside the
    /// source. Returns the byte offset and length of the span.
    pub fn page_span(&self, id: u64, overflow: u32) -> Result<(u64, u64)> {
        let ps = u64::from(self.page_size);
        let last = id.checked_add(u64::from(overflow));
        let hwm = self.meta.pgid;
        match last {
            Some(last) if id < hwm && last < hwm => {}
            _ => {
                return Err(FormatError::corrupt(
                    Some(id),
                    self.page_offset(id),
                    format!(
                        "page id {id} (+{overflow} overflow) out of range: high-water mark is {hwm}"
                    ),
                ))
            }
        }
        let off = id.checked_mul(ps);
        let len = (u64::from(overflow) + 1).checked_mul(ps);
        match (off, len) {
            (Some(off), Some(len))
                if off.checked_add(len).is_some_and(|e| e <= self.src.size()) =>
            {
                Ok((off, len))
            }
            _ => Err(FormatError::corrupt(
                Some(id),
                off,
                format!(
                    "page {id} (+{overflow} overflow) lies past the end of the data ({} bytes)",
                    self.src.size()
                ),
            )),
        }
    }

    /// Read one page with its overflow pages. The page id must be below the high-water mark
    /// and the whole span inside the source; the header id must equal `id`.
    pub fn page(&self, id: u64) -> Result<Page> {
        let (off, _) = self.page_span(id, 0)?;
        let mut data = vec![0u8; self.page_size as usize];
        self.read_at(off, &mut data)?;
        let hdr = PageHeader::parse(&data)
            .ok_or_else(|| FormatError::corrupt(Some(id), Some(off), "short page"))?;
        if hdr.id != id {
            return Err(FormatError::corrupt(
                Some(id),
                Some(off),
                format!("page {id} has id {} in its header", hdr.id),
            ));
        }
        if hdr.overflow > 0 {
            let (_, len) = self.page_span(id, hdr.overflow)?;
            let len = usize::try_from(len).map_err(|_| {
                FormatError::corrupt(Some(id), Some(off), "overflow span too large")
            })?;
            let first = data.len();
            data.resize(len, 0);
            self.read_at(off + first as u64, &mut data[first..])?;
        }
        Ok(Page {
            id,
            offset: off,
            header: hdr,
            data,
        })
    }

    /// The root bucket (whose entries are the top-level buckets).
    pub fn root_bucket(&self) -> Bucket<'_, R> {
        Bucket {
            db: self,
            root: BucketRoot::Page(self.meta.root),
        }
    }

    /// A top-level bucket by name, or `None` if there is no such entry.
    pub fn bucket(&self, name: &[u8]) -> Result<Option<Bucket<'_, R>>> {
        let root = self.root_bucket();
        match root.get_entry(name)? {
            None => Ok(None),
            Some((fl, v, at)) => {
                if fl & BUCKET_LEAF_FLAG == 0 {
                    return Err(FormatError::corrupt(
                        at.0,
                        Some(at.1),
                        format!(
                            "top-level entry {:?} is not a bucket",
                            String::from_utf8_lossy(name)
                        ),
                    ));
                }
                Ok(Some(Bucket {
                    db: self,
                    root: BucketRoot::parse(&v, at)?,
                }))
            }
        }
    }

    /// Names of the top-level buckets, in order (the root bucket is small).
    pub fn bucket_names(&self) -> Result<Vec<Vec<u8>>> {
        let mut out = Vec::new();
        let root = self.root_bucket();
        let mut c = root.cursor();
        while let Some(e) = c.next()? {
            out.push(e.key.to_vec());
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests;
