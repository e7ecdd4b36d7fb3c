//! The two meta pages: decoding, bbolt's validation (magic, version, checksum), and the
//! quick meta-only check the pipeline runs on every backup. Choosing the current meta is
//! [`Db::open`](super::Db::open)'s.

use std::fmt;

use serde::Serialize;

use super::{flags, le_u32, le_u64, Db, PageHeader, Problem, PAGE_HEADER_SIZE};
use crate::io::ReadAt;

/// bbolt's magic number.
pub const MAGIC: u32 = 0xED0C_DAED;
/// The only data format version bbolt 1.x writes.
pub const VERSION: u32 = 2;
/// Size of the meta struct that follows the page header of pages 0 and 1.
pub const META_SIZE: usize = 64;
/// `meta.freelist` when the freelist is not persisted (etcd on Linux).
pub const PGID_NO_FREELIST: u64 = u64::MAX;

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
    pub(super) fn read<R: ReadAt + ?Sized>(src: &R, offset: u64) -> MetaSlot {
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
pub(crate) fn meta_sanity(i: usize, m: &Meta, offset: u64, size: u64) -> Vec<Problem> {
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
