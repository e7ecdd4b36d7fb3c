//! The seek table: zstd's seekable format (contrib/seekable_format), as lifeboat writes
//! and reads it.
//!
//! ```text
//! skippable frame header: magic 0x184D2A5E (u32 LE), body length (u32 LE)
//! one entry per frame:    compressed size (u32 LE), decompressed size (u32 LE)
//!                         [+ checksum (u32 LE) if descriptor bit 7 is set]
//! footer (9 bytes):       frame count (u32 LE), descriptor (u8), magic 0x8F92EAB1 (u32 LE)
//! ```
//!
//! Every size in it is untrusted on read: the table is checked against the object's size,
//! and no frame may claim more decompressed bytes than [`MAX_FRAME_SIZE`] or than the
//! object's first frame (the declared frame size), so a damaged table can never make a
//! reader allocate more than one frame's worth.

use crate::io::ReadAt;

use super::reader::FrameError;

pub(crate) const SKIPPABLE_MAGIC: u32 = 0x184D_2A5E;
pub(crate) const SEEKABLE_MAGIC: u32 = 0x8F92_EAB1;
pub(crate) const FOOTER_LEN: u64 = 9;
/// Skippable-frame header: magic + frame size.
pub(crate) const SKIPPABLE_HEADER_LEN: u64 = 8;

/// Upper bound on frames in one object (4 TiB at the default frame size); a footer that
/// claims more is damage, and is not allowed to make the reader allocate for it.
pub(crate) const MAX_FRAMES: u64 = 1 << 22;

/// Default decompressed size of one frame: small enough that reading one page decompresses
/// little, large enough that the compression ratio does not suffer.
pub const DEFAULT_FRAME_SIZE: usize = 1 << 20;

/// The largest decompressed frame the format allows (the writer clamps its frame size to
/// it). A table entry above it is damage, not a reason to allocate.
pub const MAX_FRAME_SIZE: u32 = 64 << 20;

/// Descriptor bit 7: entries carry a 4-byte checksum. lifeboat writes 0 (each zstd frame
/// carries its own content checksum) and reads either; bits 0-6 are reserved and must be 0.
pub(crate) const DESCRIPTOR_CHECKSUM: u8 = 0x80;

/// One frame's place in the object and in the decompressed stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameEntry {
    pub stored_offset: u64,
    pub stored_len: u32,
    pub raw_offset: u64,
    pub raw_len: u32,
}

/// The table bytes (skippable frame, entries, footer) for these `(compressed, raw)` sizes.
pub(crate) fn encode(entries: &[(u32, u32)]) -> std::io::Result<Vec<u8>> {
    use std::io;
    let n = u32::try_from(entries.len()).map_err(|_| io::Error::other("too many frames"))?;
    let mut table = Vec::with_capacity(entries.len() * 8 + 17);
    table.extend_from_slice(&SKIPPABLE_MAGIC.to_le_bytes());
    let body = entries.len() * 8 + FOOTER_LEN as usize;
    let body = u32::try_from(body).map_err(|_| io::Error::other("seek table too large"))?;
    table.extend_from_slice(&body.to_le_bytes());
    for (c, r) in entries {
        table.extend_from_slice(&c.to_le_bytes());
        table.extend_from_slice(&r.to_le_bytes());
    }
    table.extend_from_slice(&n.to_le_bytes());
    table.push(0); // descriptor: no per-frame checksums (each frame carries its own)
    table.extend_from_slice(&SEEKABLE_MAGIC.to_le_bytes());
    Ok(table)
}

fn le_u32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    if let Some(s) = b.get(at..at + 4) {
        a.copy_from_slice(s);
    }
    u32::from_le_bytes(a)
}

/// A checked seek table.
#[derive(Debug, Clone)]
pub struct SeekTable {
    pub frames: Vec<FrameEntry>,
    /// Where the table starts in the object (= the sum of the compressed sizes).
    pub table_offset: u64,
    /// Decompressed size of the whole object.
    pub raw_size: u64,
}

/// Read and check the seek table at the end of `inner`.
pub fn read<R: ReadAt + ?Sized>(inner: &R) -> Result<SeekTable, FrameError> {
    let size = inner.size();
    if size < FOOTER_LEN + SKIPPABLE_HEADER_LEN {
        return Err(FrameError::TooShort(size));
    }
    let footer_at = size - FOOTER_LEN;
    let footer = inner
        .read_vec_at(footer_at, FOOTER_LEN as usize)
        .map_err(|source| FrameError::Io {
            offset: footer_at,
            source,
        })?;
    let magic = le_u32(&footer, 5);
    if magic != SEEKABLE_MAGIC {
        return Err(FrameError::NoSeekTable {
            offset: footer_at + 5,
            found: magic,
        });
    }
    let n = u64::from(le_u32(&footer, 0));
    if n > MAX_FRAMES {
        return Err(FrameError::BadSeekTable {
            offset: footer_at,
            what: format!("{n} frames is more than lifeboat ever writes ({MAX_FRAMES})"),
        });
    }
    let descriptor = footer.get(4).copied().unwrap_or(0);
    if descriptor & !DESCRIPTOR_CHECKSUM != 0 {
        return Err(FrameError::BadSeekTable {
            offset: footer_at + 4,
            what: format!("descriptor {descriptor:#04x} sets reserved bits"),
        });
    }
    let entry_len: u64 = if descriptor & DESCRIPTOR_CHECKSUM != 0 {
        12
    } else {
        8
    };
    let body = n
        .checked_mul(entry_len)
        .and_then(|v| v.checked_add(FOOTER_LEN))
        .ok_or(FrameError::TooShort(size))?;
    let table_len = body + SKIPPABLE_HEADER_LEN;
    if table_len > size {
        return Err(FrameError::BadSeekTable {
            offset: footer_at,
            what: format!("{n} frames need {table_len} bytes, object has {size}"),
        });
    }
    let table_offset = size - table_len;
    let table = inner
        .read_vec_at(table_offset, table_len as usize)
        .map_err(|source| FrameError::Io {
            offset: table_offset,
            source,
        })?;
    if le_u32(&table, 0) != SKIPPABLE_MAGIC || u64::from(le_u32(&table, 4)) != body {
        return Err(FrameError::BadSeekTable {
            offset: table_offset,
            what: "skippable frame header does not match the footer".into(),
        });
    }
    let mut frames = Vec::with_capacity(n as usize);
    let (mut stored, mut raw) = (0u64, 0u64);
    for i in 0..n as usize {
        let at = 8 + i * entry_len as usize;
        let c = le_u32(&table, at);
        let r = le_u32(&table, at + 4);
        // The first frame declares the frame size; no frame may be larger, nor larger
        // than the format allows: these sizes become decompression buffers.
        let declared = frames.first().map_or(r, |f: &FrameEntry| f.raw_len);
        if r > MAX_FRAME_SIZE || r > declared {
            return Err(FrameError::BadSeekTable {
                    offset: table_offset + at as u64,
                    what: format!(
                        "frame {i} claims {r} decompressed bytes; the frame size is {} (at most {MAX_FRAME_SIZE})",
                        declared.min(MAX_FRAME_SIZE)
                    ),
                });
        }
        frames.push(FrameEntry {
            stored_offset: stored,
            stored_len: c,
            raw_offset: raw,
            raw_len: r,
        });
        stored += u64::from(c);
        raw += u64::from(r);
    }
    if stored != table_offset {
        return Err(FrameError::BadSeekTable {
            offset: table_offset,
            what: format!("frames add up to {stored} bytes but the table starts at {table_offset}"),
        });
    }
    Ok(SeekTable {
        frames,
        table_offset,
        raw_size: raw,
    })
}
