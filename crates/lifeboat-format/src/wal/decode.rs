//! Segment files and the frame decoder: etcd's `decoder.decodeRecord` (3.5.1), record by
//! record, with its torn-write test (formats §5.1, §5.2, §5.4, §5.7).
//!
//! Memory is bounded: each segment is read through a window of [`CHUNK`] bytes that grows
//! only to hold one record, and etcd refuses records of 10 MiB or more before reading them,
//! so the decoder never holds more than about 10 MiB whatever the WAL's size.

use std::fmt;

use super::record::Record;
pub use super::segment::{list_dir, parse_segment_name, segment_name, Listing, Segment};
use crate::io::ReadAt;
use crate::wire::WireError;

/// Read size of the segment window.
pub const CHUNK: usize = 1 << 20;
/// etcd 3.5.1–3.5.4 `maxWALEntrySizeLimit` (10 MiB): bigger records are fatal.
pub const MAX_RECORD: u64 = 10 * 1024 * 1024;
/// Preallocated segment size (`SegmentSizeBytes`, 64,000,000, not 64 MiB).
pub const SEGMENT_SIZE: u64 = 64_000_000;
/// Torn-write granularity (`minSectorSize`).
pub const SECTOR: u64 = 512;

/// Why decoding stopped before the end of the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailureKind {
    /// Fewer than 8 bytes where a length field should be (`unexpected EOF`).
    ShortLength { have: u64 },
    /// The record is `MAX_RECORD` or more (`wal: max entry size limit exceeded`): fatal.
    TooLarge { len: u64, pad: u64 },
    /// The record runs past the end of the file (`unexpected EOF`).
    ShortRecord { len: u64, pad: u64, have: u64 },
    /// The record bytes do not unmarshal.
    Proto(WireError),
    /// The record's CRC does not match the chain (`walpb: crc mismatch`).
    Crc { expected: u32, stored: u32 },
    /// The file could not be read.
    Io(String),
}

/// A decoding failure at one frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Index into the decoder's segment list.
    pub seg: usize,
    /// File offset of the frame's length field.
    pub offset: u64,
    /// 1-based record number within its file.
    pub number: u64,
    pub kind: FailureKind,
    /// For Proto/Crc failures in the last file: the file offset of an all-zero 512-byte
    /// sector chunk inside the record, which makes etcd call it a torn write.
    pub zero_sector: Option<u64>,
    /// Whether this happened in the last file of the set being decoded.
    pub in_last_file: bool,
}

impl Failure {
    /// etcd reports this as `io.ErrUnexpectedEOF` (which `Repair` may fix) rather than a
    /// hard error.
    pub fn is_unexpected_eof(&self) -> bool {
        match self.kind {
            FailureKind::ShortLength { .. } | FailureKind::ShortRecord { .. } => true,
            FailureKind::Proto(_) | FailureKind::Crc { .. } => self.zero_sector.is_some(),
            FailureKind::TooLarge { .. } | FailureKind::Io(_) => false,
        }
    }

    /// The error text etcd would log.
    pub fn etcd_error(&self) -> String {
        if self.is_unexpected_eof() {
            return "unexpected EOF".into();
        }
        match &self.kind {
            FailureKind::TooLarge { .. } => "wal: max entry size limit exceeded".into(),
            FailureKind::Crc { .. } => "walpb: crc mismatch".into(),
            FailureKind::Proto(e) => format!("{e}"),
            FailureKind::Io(e) => e.clone(),
            _ => "unexpected EOF".into(),
        }
    }
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FailureKind::ShortLength { have } => {
                write!(f, "only {have} bytes left where a length field should be")
            }
            FailureKind::TooLarge { len, pad } => write!(
                f,
                "record length {len} (+{pad} padding) is at or above etcd's 10 MiB limit"
            ),
            FailureKind::ShortRecord { len, pad, have } => write!(
                f,
                "record of {len} bytes (+{pad} padding) runs past the end of the file ({have} bytes left)"
            ),
            FailureKind::Proto(e) => write!(f, "record does not decode: {e}"),
            FailureKind::Crc { expected, stored } => write!(
                f,
                "CRC mismatch: the chain expects {expected:08x}, the record says {stored:08x}"
            ),
            FailureKind::Io(e) => write!(f, "read error: {e}"),
        }
    }
}

/// One decoded frame.
#[derive(Debug, Clone, Copy)]
pub struct Frame<'a> {
    pub seg: usize,
    pub offset: u64,
    pub number: u64,
    /// Bytes taken by the frame: 8 + record + padding.
    pub frame_len: u64,
    pub record: Record<'a>,
    /// The running CRC before this record (what a crc record must match, if nonzero).
    pub crc_before: u32,
}

/// How one file ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEnd {
    pub seg: usize,
    /// Offset just past the last good frame.
    pub end: u64,
    pub records: u64,
    /// The file ended in a zero length field (rather than exactly at EOF).
    pub zero_length: bool,
    /// First nonzero byte after a zero length field (data etcd silently drops).
    pub nonzero_after: Option<u64>,
}

/// Read window over one segment.
struct Window {
    buf: Vec<u8>,
    start: u64,
    len: usize,
}

impl Window {
    fn new() -> Self {
        Window {
            buf: Vec::new(),
            start: 0,
            len: 0,
        }
    }

    fn reset(&mut self) {
        self.start = 0;
        self.len = 0;
    }

    /// Up to `want` bytes at `off` (fewer only at the end of the file).
    fn get(&mut self, src: &dyn ReadAt, off: u64, want: u64) -> std::io::Result<&[u8]> {
        let size = src.size();
        let avail = size.saturating_sub(off).min(want);
        let have_end = self.start.saturating_add(self.len as u64);
        if off < self.start || off.saturating_add(avail) > have_end {
            let n = size.saturating_sub(off).min(avail.max(CHUNK as u64));
            let n = usize::try_from(n).unwrap_or(CHUNK);
            if self.buf.len() < n {
                self.buf.resize(n, 0);
            }
            let dst = self.buf.get_mut(..n).unwrap_or_default();
            src.read_exact_at(off, dst)?;
            self.start = off;
            self.len = n;
        }
        let from = usize::try_from(off - self.start).unwrap_or(0);
        let to = from.saturating_add(usize::try_from(avail).unwrap_or(0));
        Ok(self.buf.get(from..to).unwrap_or_default())
    }
}

/// Split `data` (starting at `file_off`) at 512-byte file boundaries; the offset of the first
/// chunk that is entirely zero (etcd's `isTornEntry`).
pub fn zero_sector(data: &[u8], file_off: u64) -> Option<u64> {
    let mut cur = 0usize;
    let mut off = file_off;
    while cur < data.len() {
        let chunk = (SECTOR - off % SECTOR) as usize;
        let end = cur.saturating_add(chunk).min(data.len());
        let part = data.get(cur..end).unwrap_or_default();
        if part.iter().all(|&b| b == 0) {
            return Some(off);
        }
        off += (end - cur) as u64;
        cur = end;
    }
    None
}

/// The frame decoder over a set of segments, in order.
pub struct Decoder<'s> {
    segs: &'s [Segment],
    cur: usize,
    off: u64,
    number: u64,
    crc: u32,
    win: Window,
    ends: Vec<FileEnd>,
    scan_tails: bool,
    /// After a failure, accept the next record's CRC unchecked (salvage mode).
    resync: bool,
    done: bool,
}

impl<'s> Decoder<'s> {
    pub fn new(segs: &'s [Segment]) -> Self {
        Decoder {
            segs,
            cur: 0,
            off: 0,
            number: 0,
            crc: 0,
            win: Window::new(),
            ends: Vec::new(),
            scan_tails: true,
            resync: false,
            done: segs.is_empty(),
        }
    }

    /// A decoder that starts at `off` in segment `seg`, in salvage mode (the CRC chain is
    /// re-seeded from the first record).
    pub fn starting_at(segs: &'s [Segment], seg: usize, off: u64) -> Self {
        let mut d = Decoder::new(segs);
        d.cur = seg;
        d.off = off;
        d.resync = true;
        d.done = seg >= segs.len();
        d
    }

    /// Do not look for nonzero bytes after a zero length field (faster on a preallocated tail).
    pub fn without_tail_scan(mut self) -> Self {
        self.scan_tails = false;
        self
    }

    /// The running CRC (etcd `decoder.crc.Sum32()`).
    pub fn crc(&self) -> u32 {
        self.crc
    }

    /// How each file ended, for files finished so far.
    pub fn file_ends(&self) -> &[FileEnd] {
        &self.ends
    }

    /// Current segment index and offset (the start of the next frame).
    pub fn position(&self) -> (usize, u64) {
        (self.cur, self.off)
    }

    fn finish_file(&mut self, zero_length: bool) {
        let mut nonzero_after = None;
        if zero_length && self.scan_tails {
            nonzero_after = self.first_nonzero_after(self.off);
        }
        self.ends.push(FileEnd {
            seg: self.cur,
            end: self.off,
            records: self.number,
            zero_length,
            nonzero_after,
        });
        self.cur += 1;
        self.off = 0;
        self.number = 0;
        self.win.reset();
        if self.cur >= self.segs.len() {
            self.done = true;
        }
    }

    fn first_nonzero_after(&mut self, from: u64) -> Option<u64> {
        let seg = self.segs.get(self.cur)?;
        let size = seg.size();
        let mut off = from;
        while off < size {
            let chunk = self.win.get(seg.src.as_ref(), off, CHUNK as u64).ok()?;
            if chunk.is_empty() {
                return None;
            }
            if let Some(p) = chunk.iter().position(|&b| b != 0) {
                return Some(off + p as u64);
            }
            off += chunk.len() as u64;
        }
        None
    }

    /// Skip the frame that just failed and keep decoding (to count what follows a damaged
    /// record). The CRC chain is re-seeded from the next record. Returns false when the
    /// frame's length cannot be trusted, in which case decoding moves to the next file.
    pub fn skip_failed(&mut self, f: &Failure) -> bool {
        self.resync = true;
        self.done = false;
        match &f.kind {
            FailureKind::Proto(_) | FailureKind::Crc { .. } => {
                let Some(seg) = self.segs.get(f.seg) else {
                    self.done = true;
                    return false;
                };
                if let Ok(b) = self.win.get(seg.src.as_ref(), f.offset, 8) {
                    let mut a = [0u8; 8];
                    if b.len() == 8 {
                        a.copy_from_slice(b);
                        let (n, pad) = frame_size(u64::from_le_bytes(a));
                        self.cur = f.seg;
                        self.off = f.offset + 8 + n + pad;
                        self.number = f.number;
                        return true;
                    }
                }
                self.cur = f.seg;
                self.finish_file(false);
                false
            }
            _ => {
                self.cur = f.seg;
                self.off = f.offset;
                self.number = f.number.saturating_sub(1);
                self.finish_file(false);
                false
            }
        }
    }

    /// The next frame, `Ok(None)` at the end of the last file, or the failure etcd would hit.
    pub fn next_frame(&mut self) -> Result<Option<Frame<'_>>, Failure> {
        loop {
            if self.done {
                return Ok(None);
            }
            let Some(seg) = self.segs.get(self.cur) else {
                self.done = true;
                return Ok(None);
            };
            let in_last_file = self.cur + 1 == self.segs.len();
            let src = seg.src.as_ref();
            let size = src.size();
            let off = self.off;
            let number = self.number + 1;
            let fail = |kind: FailureKind, zero_sector: Option<u64>, seg: usize| Failure {
                seg,
                offset: off,
                number,
                kind,
                zero_sector,
                in_last_file,
            };
            if off >= size {
                self.finish_file(false);
                continue;
            }
            let word = match self.win.get(src, off, 8) {
                Ok(b) if b.len() == 8 => {
                    let mut a = [0u8; 8];
                    a.copy_from_slice(b);
                    u64::from_le_bytes(a)
                }
                Ok(b) => {
                    let have = b.len() as u64;
                    self.done = true;
                    return Err(fail(FailureKind::ShortLength { have }, None, self.cur));
                }
                Err(e) => {
                    self.done = true;
                    return Err(fail(FailureKind::Io(e.to_string()), None, self.cur));
                }
            };
            if word == 0 {
                self.finish_file(true);
                continue;
            }
            let (n, body_len) = match frame_bounds(word, size - off - 8) {
                Ok(x) => x,
                Err(kind) => {
                    self.done = true;
                    return Err(fail(kind, None, self.cur));
                }
            };
            let cur = self.cur;
            let resync = self.resync;
            let crc_before = self.crc;
            let body = match self.win.get(src, off + 8, body_len) {
                Ok(b) => b,
                Err(e) => {
                    self.done = true;
                    return Err(fail(FailureKind::Io(e.to_string()), None, cur));
                }
            };
            let rec_bytes = body.get(..n as usize).unwrap_or_default();
            let torn = |body: &[u8]| {
                if in_last_file {
                    zero_sector(body, off + 8)
                } else {
                    None
                }
            };
            let record = match Record::decode(rec_bytes) {
                Ok(r) => r,
                Err(e) => {
                    let z = torn(body);
                    self.done = true;
                    return Err(fail(FailureKind::Proto(e), z, cur));
                }
            };
            let new_crc = match chain(crc_before, resync, &record) {
                Ok(c) => c,
                Err(kind) => {
                    let z = torn(body);
                    self.done = true;
                    return Err(fail(kind, z, cur));
                }
            };
            if record.rtype != super::record::CRC {
                self.resync = false;
            }
            self.crc = new_crc;
            self.off = off + 8 + body_len;
            self.number = number;
            return Ok(Some(Frame {
                seg: cur,
                offset: off,
                number,
                frame_len: 8 + body_len,
                record,
                crc_before,
            }));
        }
    }
}

/// Find the next plausible frame in segment `seg` at or after `from` (8-byte aligned), for
/// counting what lies past a zeroed region: a frame whose length and padding agree, whose
/// record decodes with a known type, and whose successor continues its CRC chain (or is the
/// end of the log). Scans at most `limit` bytes. Not something etcd does: it only tells the
/// operator what etcd will drop.
pub fn resync(segs: &[Segment], seg: usize, from: u64, limit: u64) -> Option<u64> {
    let s = segs.get(seg)?;
    let src = s.src.as_ref();
    let size = src.size();
    let mut win = Window::new();
    let plausible = |win: &mut Window, o: u64| -> Option<(u64, i64, u32)> {
        let w = win.get(src, o, 8).ok()?;
        let word = u64::from_le_bytes(w.try_into().ok()?);
        if word == 0 {
            return None;
        }
        let (n, pad) = frame_size(word);
        let want_pad = (8 - n % 8) % 8;
        let top = word >> 56;
        let top_ok = if want_pad == 0 {
            top == 0
        } else {
            top == (0x80 | want_pad)
        };
        if n == 0 || n >= MAX_RECORD || pad != want_pad || !top_ok {
            return None;
        }
        let body = win.get(src, o + 8, n).ok()?;
        if body.len() as u64 != n {
            return None;
        }
        let r = Record::decode(body).ok()?;
        if !(1..=5).contains(&r.rtype) {
            return None;
        }
        Some((o + 8 + n + pad, r.rtype, r.crc))
    };
    let mut o = from.div_ceil(8) * 8;
    let end = from.saturating_add(limit).min(size);
    while o + 8 <= end {
        if let Some((next, _, crc)) = plausible(&mut win, o) {
            // Confirm with the following frame.
            let w = win
                .get(src, next, 8)
                .ok()
                .and_then(|b| b.try_into().ok())
                .map(u64::from_le_bytes);
            match w {
                Some(0) | None => return Some(o),
                Some(word) => {
                    let (n, _) = frame_size(word);
                    if n < MAX_RECORD {
                        if let Ok(b) = win.get(src, next + 8, n) {
                            if let Ok(r2) = Record::decode(b) {
                                let ok = r2.rtype == super::record::CRC
                                    || crc32c::crc32c_append(crc, r2.data()) == r2.crc;
                                if ok && (1..=5).contains(&r2.rtype) {
                                    return Some(o);
                                }
                            }
                        }
                    }
                }
            }
        }
        o += 8;
    }
    None
}

/// etcd `decodeFrameSize`: low 56 bits are the record length; a set top bit carries the
/// padding in the low 3 bits of the top byte.
pub fn frame_size(word: u64) -> (u64, u64) {
    let n = word & !(0xffu64 << 56);
    let pad = if (word as i64) < 0 {
        (word >> 56) & 7
    } else {
        0
    };
    (n, pad)
}

/// The record length and the body length (record + padding) a length word announces, or
/// why etcd stops there: `max entry size limit exceeded`, or a record running past the
/// `have` bytes left in the file (`unexpected EOF`).
fn frame_bounds(word: u64, have: u64) -> Result<(u64, u64), FailureKind> {
    let (n, pad) = frame_size(word);
    if n >= MAX_RECORD.saturating_sub(pad) {
        return Err(FailureKind::TooLarge { len: n, pad });
    }
    let body_len = n + pad;
    if body_len > have {
        return Err(FailureKind::ShortRecord { len: n, pad, have });
    }
    Ok((n, body_len))
}

/// The CRC chain after `record`: a data record must extend it (unless salvage is
/// re-seeding it from this record); a crc record re-seeds it, as etcd's ReadAll does after
/// checking one (the caller sees the value it had to match in `Frame::crc_before`).
fn chain(crc_before: u32, resync: bool, record: &Record<'_>) -> Result<u32, FailureKind> {
    if record.rtype == super::record::CRC || resync {
        return Ok(record.crc);
    }
    let c = crc32c::crc32c_append(crc_before, record.data());
    if c != record.crc {
        return Err(FailureKind::Crc {
            expected: c,
            stored: record.crc,
        });
    }
    Ok(c)
}

#[cfg(test)]
mod tests;
