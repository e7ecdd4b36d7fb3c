//! A read-only bbolt (v1.3.x, format version 2) reader over any [`ReadAt`].
//!
//! Written against the page layout of `etcd-formats.md` §1 rather than on top of a bbolt
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
//! Integers are decoded little-endian: bbolt writes native order, and big-endian builds
//! (s390x, ppc64) are detected and refused rather than misread.

#[doc(hidden)]
pub mod build;
pub mod check;
mod node;

use std::fmt;
use std::io;

use serde::Serialize;

use crate::io::ReadAt;

pub use check::{
    check, check_db, BucketStats, CheckOptions, CheckReport, EntryVisitor, PageCounts, VisitEntry,
};
pub use node::{BranchElem, LeafElem, Node};

/// bbolt's magic number.
pub const MAGIC: u32 = 0xED0C_DAED;
/// The only data format version bbolt 1.x writes.
pub const VERSION: u32 = 2;
/// Size of a page header.
pub const PAGE_HEADER_SIZE: usize = 16;
/// Size of a branch or leaf element.
pub const ELEM_SIZE: usize = 16;
/// Size of the meta struct that follows the page header of pages 0 and 1.
pub const META_SIZE: usize = 64;
/// `meta.freelist` when the freelist is not persisted (etcd on Linux).
pub const PGID_NO_FREELIST: u64 = u64::MAX;
/// Size of a bucket header (`root`, `sequence`) at the start of a bucket value.
pub const BUCKET_HEADER_SIZE: usize = 16;
/// Leaf element flag of a sub-bucket entry.
pub const BUCKET_LEAF_FLAG: u32 = 0x01;
/// Deepest B+tree this reader follows. Fan-out is at least 2, so a real tree of 2^64 pages
/// is at most 64 levels deep; anything deeper is a cycle or garbage.
pub const MAX_DEPTH: usize = 64;

/// Page header flags.
pub mod flags {
    pub const BRANCH: u16 = 0x01;
    pub const LEAF: u16 = 0x02;
    pub const META: u16 = 0x04;
    pub const FREELIST: u16 = 0x10;
}

/// Human name of a page type, as bbolt prints it.
pub fn page_type_name(f: u16) -> String {
    match f {
        flags::BRANCH => "branch".into(),
        flags::LEAF => "leaf".into(),
        flags::META => "meta".into(),
        flags::FREELIST => "freelist".into(),
        other => format!("unknown<{other:02x}>"),
    }
}

/// An error from reading a database: always says where.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    /// The source could not deliver bytes that should be there.
    #[error("read of {len} bytes at offset {offset} failed: {source}")]
    Io {
        offset: u64,
        len: usize,
        #[source]
        source: io::Error,
    },
    /// The bytes are not a valid database.
    #[error("{0}")]
    Corrupt(Problem),
}

impl FormatError {
    pub(crate) fn corrupt(page: Option<u64>, offset: Option<u64>, msg: impl Into<String>) -> Self {
        FormatError::Corrupt(Problem::new(page, offset, msg))
    }
    /// Where the error happened and what, as a [`Problem`].
    pub fn to_problem(&self) -> Problem {
        match self {
            FormatError::Io {
                offset,
                len,
                source,
            } => Problem::new(
                None,
                Some(*offset),
                format!("read of {len} bytes failed: {source}"),
            ),
            FormatError::Corrupt(p) => p.clone(),
        }
    }
}

impl FormatError {
    /// The library error for this, naming the `file` it came from (an operator reading two
    /// files must learn which one is damaged). Damage is an integrity problem: so is a read
    /// that failed because the data is shorter than it claims or a compressed frame under
    /// it does not decode. Other read failures are the operation failing.
    pub fn in_file(self, file: &str) -> crate::Error {
        match self {
            FormatError::Corrupt(p) => crate::Error::Corrupt {
                file: file.to_string(),
                page: p.page,
                offset: p.offset,
                what: p.message,
            },
            FormatError::Io { offset, source, .. } if is_damage(&source) => crate::Error::Corrupt {
                file: file.to_string(),
                page: None,
                offset: Some(offset),
                what: crate::error::io_words(&source),
            },
            FormatError::Io { source, .. } => crate::Error::Io {
                path: file.into(),
                source,
            },
        }
    }
}

/// Whether a failed read means the data is damaged (rather than unreadable).
fn is_damage(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::UnexpectedEof
        || e.kind() == io::ErrorKind::InvalidData
        || e
            .get_ref()
            .is_some_and(|inner| inner.is::<crate::pipeline::frames::FrameError>())
}

pub type Result<T, E = FormatError> = std::result::Result<T, E>;

/// One thing found wrong with a file: the page (if known), the byte offset in the database
/// image (if known) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub page: Option<u64>,
    pub offset: Option<u64>,
    pub message: String,
}

impl Problem {
    pub fn new(page: Option<u64>, offset: Option<u64>, message: impl Into<String>) -> Self {
        Problem {
            page,
            offset,
            message: message.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.page, self.offset) {
            (Some(p), Some(o)) => write!(f, "page {p} (offset {o}): {}", self.message),
            (Some(p), None) => write!(f, "page {p}: {}", self.message),
            (None, Some(o)) => write!(f, "offset {o}: {}", self.message),
            (None, None) => f.write_str(&self.message),
        }
    }
}

pub(crate) fn le_u16(b: &[u8], at: usize) -> Option<u16> {
    let s = b.get(at..at.checked_add(2)?)?;
    Some(u16::from_le_bytes([s[0], s[1]]))
}
pub(crate) fn le_u32(b: &[u8], at: usize) -> Option<u32> {
    let s: [u8; 4] = b.get(at..at.checked_add(4)?)?.try_into().ok()?;
    Some(u32::from_le_bytes(s))
}
pub(crate) fn le_u64(b: &[u8], at: usize) -> Option<u64> {
    let s: [u8; 8] = b.get(at..at.checked_add(8)?)?.try_into().ok()?;
    Some(u64::from_le_bytes(s))
}

/// The 16-byte header at the start of every page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PageHeader {
    pub id: u64,
    pub flags: u16,
    pub count: u16,
    pub overflow: u32,
}

impl PageHeader {
    pub fn parse(b: &[u8]) -> Option<PageHeader> {
        Some(PageHeader {
            id: le_u64(b, 0)?,
            flags: le_u16(b, 8)?,
            count: le_u16(b, 10)?,
            overflow: le_u32(b, 12)?,
        })
    }
}

/// The meta struct of page 0 or 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Meta {
    pub magic: u32,
    pub version: u32,
    pub page_size: u32,
    pub flags: u32,
    /// Root page of the root bucket.
    pub root: u64,
    pub sequence: u64,
    /// Freelist page, or [`PGID_NO_FREELIST`].
    pub freelist: u64,
    /// High-water mark: number of pages in use.
    pub pgid: u64,
    pub txid: u64,
    pub checksum: u64,
}

/// Why a meta page is not usable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum MetaFault {
    /// Not enough bytes in the file.
    Missing,
    /// bbolt's `invalid database`.
    BadMagic(u32),
    /// Written by a big-endian host; this reader decodes little-endian only.
    BigEndian,
    /// bbolt's `version mismatch`.
    BadVersion(u32),
    /// bbolt's `checksum error`.
    BadChecksum { stored: u64, computed: u64 },
    /// A page size bbolt would never produce (and that would make page arithmetic absurd).
    BadPageSize(u32),
}

impl fmt::Display for MetaFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MetaFault::Missing => f.write_str("meta page missing (file too short)"),
            MetaFault::BadMagic(m) => {
                write!(f, "invalid database: magic {m:#010x}, want {MAGIC:#010x}")
            }
            MetaFault::BigEndian => {
                f.write_str("database written by a big-endian host (s390x/ppc64); not supported")
            }
            MetaFault::BadVersion(v) => write!(f, "version mismatch: {v}, want {VERSION}"),
            MetaFault::BadChecksum { stored, computed } => write!(
                f,
                "checksum error: stored {stored:#018x}, computed {computed:#018x}"
            ),
            MetaFault::BadPageSize(p) => write!(f, "implausible page size {p}"),
        }
    }
}

/// FNV-1a 64 over the first 56 bytes of the meta struct (magic through txid).
pub fn meta_checksum(meta_bytes: &[u8]) -> u64 {
    use std::hash::Hasher;
    let mut h = fnv::FnvHasher::default();
    h.write(meta_bytes.get(..56).unwrap_or(meta_bytes));
    h.finish()
}

/// Recompute the checksums of both meta pages in place (page size taken from meta 0, else
/// 4096). For tests and fuzzing: damage placed behind valid metas.
#[doc(hidden)]
pub fn fix_checksums(img: &mut [u8]) {
    let ps = le_u32(img, 24)
        .filter(|p| plausible_page_size(*p))
        .unwrap_or(4096) as usize;
    for at in [16usize, ps + 16] {
        if let Some(m) = img.get_mut(at..at + META_SIZE) {
            let sum = meta_checksum(&m[..56]);
            m[56..64].copy_from_slice(&sum.to_le_bytes());
        }
    }
}

fn plausible_page_size(p: u32) -> bool {
    p.is_power_of_two() && (512..=16 << 20).contains(&p)
}

impl Meta {
    /// Decode the meta struct from its 64 bytes (page offset 16..80).
    pub fn parse(b: &[u8]) -> Option<Meta> {
        Some(Meta {
            magic: le_u32(b, 0)?,
            version: le_u32(b, 4)?,
            page_size: le_u32(b, 8)?,
            flags: le_u32(b, 12)?,
            root: le_u64(b, 16)?,
            sequence: le_u64(b, 24)?,
            freelist: le_u64(b, 32)?,
            pgid: le_u64(b, 40)?,
            txid: le_u64(b, 48)?,
            checksum: le_u64(b, 56)?,
        })
    }

    /// bbolt's validation, in bbolt's order (magic, version, checksum), plus a sane page
    /// size. A stored checksum of 0 is accepted here like bbolt 1.3.6 does (1.3.7 refuses
    /// it); [`check_meta`] reports it.
    fn validate(&self, raw: &[u8]) -> Result<(), MetaFault> {
        if self.magic != MAGIC {
            if self.magic.swap_bytes() == MAGIC {
                return Err(MetaFault::BigEndian);
            }
            return Err(MetaFault::BadMagic(self.magic));
        }
        if self.version != VERSION {
            return Err(MetaFault::BadVersion(self.version));
        }
        let computed = meta_checksum(raw);
        if self.checksum != 0 && self.checksum != computed {
            return Err(MetaFault::BadChecksum {
                stored: self.checksum,
                computed,
            });
        }
        if !plausible_page_size(self.page_size) {
            return Err(MetaFault::BadPageSize(self.page_size));
        }
        Ok(())
    }

    /// Whether a freelist page is persisted.
    pub fn has_freelist(&self) -> bool {
        self.freelist != PGID_NO_FREELIST
    }
}

/// One of the two meta pages as found in the file.
#[derive(Debug, Clone, Serialize)]
pub struct MetaSlot {
    /// Byte offset of the page in the file.
    pub offset: u64,
    /// Page header, if the bytes were there.
    pub header: Option<PageHeader>,
    /// Decoded meta struct, if the bytes were there (even when invalid).
    pub meta: Option<Meta>,
    /// Why it cannot be used, if it cannot.
    pub fault: Option<MetaFault>,
}

impl MetaSlot {
    fn read<R: ReadAt + ?Sized>(src: &R, offset: u64) -> MetaSlot {
        let mut buf = [0u8; PAGE_HEADER_SIZE + META_SIZE];
        if src.read_exact_at(offset, &mut buf).is_err() {
            return MetaSlot {
                offset,
                header: None,
                meta: None,
                fault: Some(MetaFault::Missing),
            };
        }
        let header = PageHeader::parse(&buf);
        let raw = &buf[PAGE_HEADER_SIZE..];
        let meta = Meta::parse(raw);
        let fault = match &meta {
            Some(m) => m.validate(raw).err(),
            None => Some(MetaFault::Missing),
        };
        MetaSlot {
            offset,
            header,
            meta,
            fault,
        }
    }

    /// The meta, if it passed validation.
    pub fn valid(&self) -> Option<&Meta> {
        if self.fault.is_none() {
            self.meta.as_ref()
        } else {
            None
        }
    }
}

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

/// A page read from the source, with its overflow pages.
#[derive(Debug, Clone)]
pub struct Page {
    pub id: u64,
    /// Byte offset of the page.
    pub offset: u64,
    pub header: PageHeader,
    /// The whole span: header, elements, data, overflow pages.
    pub data: Vec<u8>,
}

impl Page {
    /// View the page as a branch or leaf node.
    pub fn node(&self) -> Result<Node<'_>> {
        Node::new(&self.data, Some(self.id), self.offset)
    }
}

/// Where a bucket's tree lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BucketRoot {
    /// A tree rooted at this page.
    Page(u64),
    /// An inline bucket: the page image stored in the parent's value, with the file
    /// offset of that image (for messages).
    Inline { data: Vec<u8>, offset: u64 },
}

impl BucketRoot {
    /// Decode a bucket value (header + optional inline page). `at` is (page, offset) of the
    /// value, for messages.
    pub fn parse(v: &[u8], at: (Option<u64>, u64)) -> Result<BucketRoot> {
        let root = le_u64(v, 0).ok_or_else(|| {
            FormatError::corrupt(
                at.0,
                Some(at.1),
                format!(
                    "bucket value of {} bytes is shorter than its header",
                    v.len()
                ),
            )
        })?;
        if root != 0 {
            return Ok(BucketRoot::Page(root));
        }
        let data = v.get(BUCKET_HEADER_SIZE..).unwrap_or_default();
        if data.len() < PAGE_HEADER_SIZE {
            return Err(FormatError::corrupt(
                at.0,
                Some(at.1),
                format!("inline bucket value of {} bytes has no page", v.len()),
            ));
        }
        Ok(BucketRoot::Inline {
            data: data.to_vec(),
            offset: at.1 + BUCKET_HEADER_SIZE as u64,
        })
    }
}

/// A bucket: read with [`Bucket::get`], [`Bucket::last`] or a [`Cursor`].
pub struct Bucket<'db, R> {
    db: &'db Db<R>,
    root: BucketRoot,
}

/// One leaf entry yielded by a cursor. Borrowed from the cursor's current page.
#[derive(Debug, Clone, Copy)]
pub struct Entry<'a> {
    pub key: &'a [u8],
    pub value: &'a [u8],
    /// Leaf element flags ([`BUCKET_LEAF_FLAG`] for sub-buckets).
    pub flags: u32,
    /// Page the entry is on (None for an inline bucket).
    pub page: Option<u64>,
    /// File offset of the key bytes.
    pub offset: u64,
}

impl<'db, R: ReadAt> Bucket<'db, R> {
    pub fn root(&self) -> &BucketRoot {
        &self.root
    }

    /// Value of `key`, or None. Sub-bucket entries are returned like any value.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.get_entry(key)?.map(|(_, v, _)| v))
    }

    /// (flags, value, (page, offset of value)) of `key`.
    #[allow(clippy::type_complexity)]
    fn get_entry(&self, key: &[u8]) -> Result<Option<(u32, Vec<u8>, (Option<u64>, u64))>> {
        let mut c = self.cursor();
        match c.seek(key)? {
            Some(e) if e.key == key => Ok(Some((
                e.flags,
                e.value.to_vec(),
                (e.page, e.offset + key.len() as u64),
            ))),
            _ => Ok(None),
        }
    }

    /// The last entry (largest key), or None when empty. Reads only the rightmost path.
    pub fn last(&self) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
        let mut c = self.cursor();
        Ok(c.last()?.map(|e| (e.key.to_vec(), e.value.to_vec())))
    }

    /// A cursor positioned before the first entry.
    pub fn cursor(&self) -> Cursor<'db, R> {
        Cursor {
            db: self.db,
            root: self.root.clone(),
            stack: Vec::new(),
            state: CursorState::Unstarted,
            loads: 0,
        }
    }
}

struct Frame {
    /// Page bytes (or inline page image).
    data: Vec<u8>,
    page: Option<u64>,
    offset: u64,
    is_leaf: bool,
    count: usize,
    idx: usize,
    /// The separator this page's keys must stay below, from the branches above: a
    /// child's keys lie in `[its element's key, the next element's key or this bound)`.
    hi: Option<Vec<u8>>,
}

impl Frame {
    fn node(&self) -> Result<Node<'_>> {
        Node::new(&self.data, self.page, self.offset)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CursorState {
    Unstarted,
    /// The top frame's `idx` is the entry last returned.
    At,
    Done,
}

/// Streams a bucket's entries in key order, holding one page per tree level.
///
/// Every page is validated as it is loaded, as strictly as the checker does for one page
/// (id in range, header id, branch/leaf type, every element's bounds, keys non-empty,
/// ascending and within the parent's separators), before any of its entries is used: a
/// reader never answers from a page that fails a check. A cycle cannot loop forever because descent is capped at [`MAX_DEPTH`] levels
/// and every descent step is to a distinct page.
pub struct Cursor<'db, R> {
    db: &'db Db<R>,
    root: BucketRoot,
    stack: Vec<Frame>,
    state: CursorState,
    /// Pages loaded so far: a well-formed walk loads each page once, so more loads than
    /// pages means a page is referenced twice (and a hostile DAG could loop for ages).
    loads: u64,
}

impl<'db, R: ReadAt> Cursor<'db, R> {
    fn load(&mut self, id: u64, lo: Option<Vec<u8>>, hi: Option<Vec<u8>>) -> Result<Frame> {
        self.loads += 1;
        if self.loads > self.db.meta.pgid.saturating_add(2 * MAX_DEPTH as u64) {
            return Err(FormatError::corrupt(
                Some(id),
                self.db.page_offset(id),
                "bucket tree visits more pages than the file has (a page is referenced twice)",
            ));
        }
        if self.stack.len() >= MAX_DEPTH {
            return Err(FormatError::corrupt(
                Some(id),
                self.db.page_offset(id),
                format!("tree deeper than {MAX_DEPTH} levels (a cycle?)"),
            ));
        }
        if self.stack.iter().any(|f| f.page == Some(id)) {
            return Err(FormatError::corrupt(
                Some(id),
                self.db.page_offset(id),
                format!("page {id} is its own ancestor (cycle)"),
            ));
        }
        let p = self.db.page(id)?;
        let n = p.node()?;
        n.validate(lo.as_deref(), hi.as_deref())?;
        let (is_leaf, count) = (n.is_leaf(), n.count());
        Ok(Frame {
            page: Some(id),
            offset: p.offset,
            data: p.data,
            is_leaf,
            count,
            idx: 0,
            hi,
        })
    }

    fn root_frame(&mut self) -> Result<Frame> {
        match &self.root {
            BucketRoot::Page(id) => self.load(*id, None, None),
            BucketRoot::Inline { data, offset } => {
                let n = Node::new(data, None, *offset)?;
                if !n.is_leaf() {
                    return Err(FormatError::corrupt(
                        None,
                        Some(*offset),
                        format!(
                            "inline bucket page has type {}, want leaf",
                            page_type_name(n.flags())
                        ),
                    ));
                }
                n.validate(None, None)?;
                let count = n.count();
                Ok(Frame {
                    data: data.clone(),
                    page: None,
                    offset: *offset,
                    is_leaf: true,
                    count,
                    idx: 0,
                    hi: None,
                })
            }
        }
    }

    /// Child page id of branch frame `f` at its current index, and the separators that
    /// bound the child's keys.
    #[allow(clippy::type_complexity)]
    fn child_of(f: &Frame) -> Result<(u64, Option<Vec<u8>>, Option<Vec<u8>>)> {
        let n = f.node()?;
        let e = n.branch(f.idx)?;
        let hi = if f.idx + 1 < f.count {
            Some(n.branch(f.idx + 1)?.key.to_vec())
        } else {
            f.hi.clone()
        };
        Ok((e.pgid, Some(e.key.to_vec()), hi))
    }

    /// From the current top frame (a branch at some idx, or a leaf), descend to a leaf,
    /// taking the first (or last) child at every level below.
    fn descend(&mut self, rightmost: bool) -> Result<()> {
        loop {
            let Some(top) = self.stack.last() else {
                return Ok(());
            };
            if top.is_leaf {
                return Ok(());
            }
            if top.idx >= top.count {
                return Err(FormatError::corrupt(
                    top.page,
                    Some(top.offset),
                    "empty branch page",
                ));
            }
            let (child, lo, hi) = Self::child_of(top)?;
            let mut f = self.load(child, lo, hi)?;
            if rightmost {
                f.idx = f.count.saturating_sub(1);
            }
            self.stack.push(f);
        }
    }

    /// The entry the cursor is at (the one last returned), without moving.
    pub fn current(&self) -> Result<Option<Entry<'_>>> {
        if self.state != CursorState::At {
            return Ok(None);
        }
        self.here()
    }

    fn here(&self) -> Result<Option<Entry<'_>>> {
        let Some(f) = self.stack.last() else {
            return Ok(None);
        };
        if !f.is_leaf || f.idx >= f.count {
            return Ok(None);
        }
        let n = f.node()?;
        let e = n.leaf(f.idx)?;
        Ok(Some(Entry {
            key: e.key,
            value: e.value,
            flags: e.flags,
            page: f.page,
            offset: f.offset + e.key_offset as u64,
        }))
    }

    /// Move to the next leaf entry after the current top-of-stack position (which may be
    /// past the end of its leaf), climbing and descending as needed. Skips empty leaves.
    fn advance(&mut self) -> Result<bool> {
        loop {
            let Some(top) = self.stack.last_mut() else {
                return Ok(false);
            };
            if top.is_leaf && top.idx < top.count {
                return Ok(true);
            }
            // Leaf exhausted (or empty): pop until a branch has a next child.
            self.stack.pop();
            loop {
                let Some(b) = self.stack.last_mut() else {
                    return Ok(false);
                };
                b.idx += 1;
                if b.idx < b.count {
                    break;
                }
                self.stack.pop();
            }
            self.descend(false)?;
        }
    }

    /// The first entry.
    pub fn first(&mut self) -> Result<Option<Entry<'_>>> {
        self.stack.clear();
        let f = self.root_frame()?;
        self.stack.push(f);
        self.descend(false)?;
        if self.advance()? {
            self.state = CursorState::At;
            self.here()
        } else {
            self.state = CursorState::Done;
            Ok(None)
        }
    }

    /// The last entry.
    pub fn last(&mut self) -> Result<Option<Entry<'_>>> {
        self.stack.clear();
        let mut f = self.root_frame()?;
        f.idx = f.count.saturating_sub(1);
        self.stack.push(f);
        self.descend(true)?;
        // An empty rightmost leaf (possible after deletes before a rebalance) would need a
        // backwards step; bbolt rebalances on commit, so treat it as the end.
        let found = self.here()?.is_some();
        self.state = if found {
            CursorState::At
        } else {
            CursorState::Done
        };
        self.here()
    }

    /// Position at the first entry with key >= `key` and return it.
    pub fn seek(&mut self, key: &[u8]) -> Result<Option<Entry<'_>>> {
        self.stack.clear();
        let f = self.root_frame()?;
        self.stack.push(f);
        while let Some(top) = self.stack.last_mut() {
            let n = Node::new(&top.data, top.page, top.offset)?;
            if top.is_leaf {
                top.idx = n.leaf_search(key)?;
                break;
            }
            // Last element whose key <= search key, or 0.
            top.idx = n.branch_search(key)?;
            let (child, lo, hi) = Self::child_of(top)?;
            let f = self.load(child, lo, hi)?;
            self.stack.push(f);
        }
        if self.advance()? {
            self.state = CursorState::At;
            self.here()
        } else {
            self.state = CursorState::Done;
            Ok(None)
        }
    }

    /// The next entry (the first one on the first call).
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<Option<Entry<'_>>> {
        match self.state {
            CursorState::Unstarted => self.first(),
            CursorState::Done => Ok(None),
            CursorState::At => {
                if let Some(top) = self.stack.last_mut() {
                    top.idx += 1;
                }
                if self.advance()? {
                    self.here()
                } else {
                    self.state = CursorState::Done;
                    Ok(None)
                }
            }
        }
    }
}

/// Quick check of the two meta pages only: magic, version, checksum, page header, sane
/// root/freelist/high-water mark, and the file long enough for `pgid` pages.
/// Reads 160 bytes plus a probe or two; the pipeline runs it on every backup.
pub fn check_meta<R: ReadAt + ?Sized>(src: &R) -> Vec<Problem> {
    let mut problems = Vec::new();
    let db = match Db::open(src) {
        Ok(db) => db,
        Err(e) => {
            problems.push(e.to_problem());
            return problems;
        }
    };
    for (i, slot) in db.metas.iter().enumerate() {
        let page = Some(i as u64);
        let off = Some(slot.offset);
        if let Some(f) = &slot.fault {
            problems.push(Problem::new(page, off, format!("meta {i}: {f}")));
            continue;
        }
        if let Some(h) = &slot.header {
            if h.id != i as u64 || h.flags != flags::META || h.count != 0 || h.overflow != 0 {
                problems.push(Problem::new(
                    page,
                    off,
                    format!(
                        "meta {i}: page header id {} flags {:#x} count {} overflow {}, want id {i} flags 0x4 count 0 overflow 0",
                        h.id, h.flags, h.count, h.overflow
                    ),
                ));
            }
        }
        if let Some(m) = &slot.meta {
            problems.extend(meta_sanity(i, m, slot.offset, src.size()));
        }
    }
    problems
}

/// Sanity of a validated meta: what bbolt does not check but a stricter validator should.
fn meta_sanity(i: usize, m: &Meta, offset: u64, size: u64) -> Vec<Problem> {
    let mut out = Vec::new();
    let page = Some(i as u64);
    let off = Some(offset);
    if m.checksum == 0 {
        out.push(Problem::new(
            page,
            off,
            format!("meta {i}: no checksum (accepted by bbolt 1.3.6, refused by 1.3.7+)"),
        ));
    }
    if m.pgid < 3 {
        out.push(Problem::new(
            page,
            off,
            format!("meta {i}: high-water mark {} is too small", m.pgid),
        ));
    }
    if m.root < 2 || m.root >= m.pgid {
        out.push(Problem::new(
            page,
            off,
            format!(
                "meta {i}: root page {} outside [2, high-water mark {})",
                m.root, m.pgid
            ),
        ));
    }
    if m.has_freelist() && (m.freelist < 2 || m.freelist >= m.pgid) {
        out.push(Problem::new(
            page,
            off,
            format!(
                "meta {i}: freelist page {} outside [2, high-water mark {})",
                m.freelist, m.pgid
            ),
        ));
    }
    let need = m.pgid.checked_mul(u64::from(m.page_size));
    if need.is_none_or(|n| n > size) {
        out.push(Problem::new(
            page,
            off,
            format!(
                "meta {i}: {} pages of {} bytes need {} bytes, the data has {size} (truncated?)",
                m.pgid,
                m.page_size,
                need.map(|n| n.to_string())
                    .unwrap_or_else(|| "more than 2^64".into())
            ),
        ));
    }
    out
}

#[cfg(test)]
mod tests;
