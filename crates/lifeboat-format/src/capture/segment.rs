//! A capture segment's bytes (DESIGN.md "Capture segments" is the contract).
//!
//! ```text
//! header  (80 bytes, little-endian)
//!   0  magic            8  "LBCAPSEG"
//!   8  format version   2  2 (1 is read too: its digest is SHA-256)
//!  10  flags            2  bit 0: gap (revisions between the previous segment's last and
//!                          this segment's first were compacted away before capture saw them)
//!  12  cluster id       8
//!  20  first revision   8  i64, >= 1
//!  28  last revision    8  i64, >= first
//!  36  previous digest 32  the previous segment's digest; zeros for the first of a chain
//!  68  record count     4
//!  72  body length      8  bytes of records that follow
//! body    record count records (below)
//! trailer (40 bytes)
//!   0  magic            8  "LBCAPEND"
//!   8  digest          32  BLAKE3 (version 2) or SHA-256 (version 1) of header and body:
//!                          the segment's digest
//! ```
//!
//! A record is a tag byte, the revision as an unsigned LEB128 delta from the previous
//! record's (the first record's from `first`), then its fields: signed values zigzag LEB128,
//! keys as (bytes shared with the previous key of a Put/Delete, suffix length, suffix),
//! values as (length, bytes), the hash as 4 bytes. Records never go back in revision and
//! stay inside `[first, last]`. Nothing in the bytes is trusted: every length is checked
//! against what is left, and every error names its offset.
//!
//! Version 2 differs from version 1 only in its digest: BLAKE3 instead of SHA-256. A
//! restore reads every segment of its window and recomputes each digest, an hour of changes
//! at 1,000 writes/s being 3.8 GB of plaintext; on a core with SHA extensions SHA-256 runs
//! at about 1 GB/s and BLAKE3 at three times that, so the digest went from a quarter of the
//! read's CPU to a tenth. Both are 256-bit cryptographic hashes; the chain links a segment
//! to its predecessor's digest of that predecessor's own version, so a capture written by an
//! older lifeboat continues across the change.

use sha2::{Digest, Sha256};

use super::{KeyValue, Record};

pub const MAGIC: &[u8; 8] = b"LBCAPSEG";
pub const TRAILER_MAGIC: &[u8; 8] = b"LBCAPEND";
/// The version [`encode`] writes.
pub const VERSION: u16 = 2;
/// The versions [`decode`] reads.
pub const VERSIONS: [u16; 2] = [1, 2];
pub const HEADER_LEN: usize = 80;
pub const TRAILER_LEN: usize = 40;
const FLAG_GAP: u16 = 1;

const TAG_PUT: u8 = 1;
const TAG_DELETE: u8 = 2;
const TAG_LEASE_GRANT: u8 = 3;
const TAG_LEASE_REVOKE: u8 = 4;
const TAG_COMPACT: u8 = 5;
const TAG_CLOCK: u8 = 6;
const TAG_LIVE_HASH: u8 = 7;

/// What a segment says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub cluster_id: u64,
    pub first: i64,
    pub last: i64,
    /// The previous segment's digest, zeros for the first segment of a chain.
    pub prev: [u8; 32],
    /// Revisions between the previous segment's last and `first` are missing (compacted
    /// before capture saw them). The link to the previous segment still holds.
    pub gap: bool,
}

/// A decoded segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// The format version it was written in (one of [`VERSIONS`]).
    pub version: u16,
    pub header: Header,
    pub records: Vec<Record>,
    /// The digest of header and body ([`digest`] of its version), as the trailer records
    /// it (checked).
    pub digest: [u8; 32],
}

/// The digest a segment of format `version` carries in its trailer, of `bytes` (its header
/// and body): BLAKE3 for version 2, SHA-256 for version 1. None for another version.
pub fn digest(version: u16, bytes: &[u8]) -> Option<[u8; 32]> {
    match version {
        1 => Some(Sha256::digest(bytes).into()),
        2 => Some(*blake3::hash(bytes).as_bytes()),
        _ => None,
    }
}

/// Why bytes are not a segment, with the byte offset where it shows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SegmentError {
    #[error("offset {offset}: segment ends early ({what})")]
    Truncated { offset: usize, what: &'static str },
    #[error("offset 0: not a capture segment (magic {0:02x?})")]
    Magic([u8; 8]),
    #[error("offset 8: segment format version {0} is not one this lifeboat reads (1 or 2)")]
    Version(u16),
    #[error("offset {offset}: {what}")]
    Invalid { offset: usize, what: String },
    #[error(
        "offset {offset}: digest mismatch (trailer {stored}, header and body hash to {computed})"
    )]
    Digest {
        offset: usize,
        stored: String,
        computed: String,
    },
}

impl SegmentError {
    fn invalid(offset: usize, what: impl Into<String>) -> Self {
        SegmentError::Invalid {
            offset,
            what: what.into(),
        }
    }
}

/// Encode a segment in the current format [`VERSION`]. Refuses (as
/// [`SegmentError::Invalid`], offset 0) records out of revision order or outside
/// `[first, last]`, and a header whose range is empty.
pub fn encode(header: &Header, records: &[Record]) -> Result<Vec<u8>, SegmentError> {
    encode_as(VERSION, header, records)
}

/// [`encode`] in format `version` (one of [`VERSIONS`]; another is refused as
/// [`SegmentError::Version`]): what an older lifeboat wrote, for tests and the fuzz oracle.
pub fn encode_as(
    version: u16,
    header: &Header,
    records: &[Record],
) -> Result<Vec<u8>, SegmentError> {
    if !VERSIONS.contains(&version) {
        return Err(SegmentError::Version(version));
    }
    if header.first < 1 || header.last < header.first {
        return Err(SegmentError::invalid(
            0,
            format!(
                "revision range [{}, {}] is empty or below 1",
                header.first, header.last
            ),
        ));
    }
    let mut body = Vec::with_capacity(records.len() * 32);
    let mut rev = header.first;
    let mut prev_key: &[u8] = &[];
    for (i, r) in records.iter().enumerate() {
        let at = r.revision();
        if at < rev || at > header.last {
            return Err(SegmentError::invalid(
                0,
                format!(
                    "record {i} at revision {at} is out of order or outside [{}, {}]",
                    header.first, header.last
                ),
            ));
        }
        let delta = (at - rev) as u64;
        rev = at;
        match r {
            Record::Put(kv) => {
                body.push(TAG_PUT);
                put_uvarint(&mut body, delta);
                put_key(&mut body, prev_key, &kv.key);
                prev_key = &kv.key;
                put_svarint(&mut body, at.wrapping_sub(kv.create_revision));
                put_svarint(&mut body, kv.version);
                put_svarint(&mut body, kv.lease);
                put_uvarint(&mut body, kv.value.len() as u64);
                body.extend_from_slice(&kv.value);
            }
            Record::Delete { key, .. } => {
                body.push(TAG_DELETE);
                put_uvarint(&mut body, delta);
                put_key(&mut body, prev_key, key);
                prev_key = key;
            }
            Record::LeaseGrant { id, ttl, .. } => {
                body.push(TAG_LEASE_GRANT);
                put_uvarint(&mut body, delta);
                put_svarint(&mut body, *id);
                put_svarint(&mut body, *ttl);
            }
            Record::LeaseRevoke { id, .. } => {
                body.push(TAG_LEASE_REVOKE);
                put_uvarint(&mut body, delta);
                put_svarint(&mut body, *id);
            }
            Record::Compact {
                compact_revision, ..
            } => {
                body.push(TAG_COMPACT);
                put_uvarint(&mut body, delta);
                put_svarint(&mut body, *compact_revision);
            }
            Record::Clock { unix_ms, .. } => {
                body.push(TAG_CLOCK);
                put_uvarint(&mut body, delta);
                put_svarint(&mut body, *unix_ms);
            }
            Record::LiveHash {
                hash,
                compact_revision,
                ..
            } => {
                body.push(TAG_LIVE_HASH);
                put_uvarint(&mut body, delta);
                body.extend_from_slice(&hash.to_le_bytes());
                put_svarint(&mut body, *compact_revision);
            }
        }
    }
    let count = u32::try_from(records.len())
        .map_err(|_| SegmentError::invalid(0, "more than 2^32 records in one segment"))?;
    let mut out = Vec::with_capacity(HEADER_LEN + body.len() + TRAILER_LEN);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&version.to_le_bytes());
    out.extend_from_slice(&(if header.gap { FLAG_GAP } else { 0 }).to_le_bytes());
    out.extend_from_slice(&header.cluster_id.to_le_bytes());
    out.extend_from_slice(&header.first.to_le_bytes());
    out.extend_from_slice(&header.last.to_le_bytes());
    out.extend_from_slice(&header.prev);
    out.extend_from_slice(&count.to_le_bytes());
    out.extend_from_slice(&(body.len() as u64).to_le_bytes());
    out.extend_from_slice(&body);
    let digest = digest(version, &out).ok_or(SegmentError::Version(version))?;
    out.extend_from_slice(TRAILER_MAGIC);
    out.extend_from_slice(&digest);
    Ok(out)
}

/// The digest of an encoded segment: the one its trailer carries (the caller encoded it, so
/// it is whole).
pub fn digest_of(encoded: &[u8]) -> [u8; 32] {
    let mut d = [0u8; 32];
    if encoded.len() >= 32 {
        d.copy_from_slice(&encoded[encoded.len() - 32..]);
    }
    d
}

/// Read only the header (the first [`HEADER_LEN`] bytes), checking magic, version, flags
/// and the range: the header, the format version, the record count and the body length.
pub fn decode_header(b: &[u8]) -> Result<(Header, u16, u32, u64), SegmentError> {
    if b.len() < HEADER_LEN {
        return Err(SegmentError::Truncated {
            offset: b.len(),
            what: "header is 80 bytes",
        });
    }
    let mut magic = [0u8; 8];
    magic.copy_from_slice(&b[0..8]);
    if &magic != MAGIC {
        return Err(SegmentError::Magic(magic));
    }
    let version = u16::from_le_bytes([b[8], b[9]]);
    if !VERSIONS.contains(&version) {
        return Err(SegmentError::Version(version));
    }
    let flags = u16::from_le_bytes([b[10], b[11]]);
    if flags & !FLAG_GAP != 0 {
        return Err(SegmentError::invalid(
            10,
            format!("unknown flags {flags:#06x}"),
        ));
    }
    let u64_at = |o: usize| {
        let mut a = [0u8; 8];
        a.copy_from_slice(&b[o..o + 8]);
        u64::from_le_bytes(a)
    };
    let first = u64_at(20) as i64;
    let last = u64_at(28) as i64;
    if first < 1 {
        return Err(SegmentError::invalid(
            20,
            format!("first revision {first} is below 1"),
        ));
    }
    if last < first {
        return Err(SegmentError::invalid(
            28,
            format!("last revision {last} is below the first, {first}"),
        ));
    }
    let mut prev = [0u8; 32];
    prev.copy_from_slice(&b[36..68]);
    let count = u32::from_le_bytes([b[68], b[69], b[70], b[71]]);
    let body_len = u64_at(72);
    Ok((
        Header {
            cluster_id: u64_at(12),
            first,
            last,
            prev,
            gap: flags & FLAG_GAP != 0,
        },
        version,
        count,
        body_len,
    ))
}

/// Decode a whole segment: header, every record, trailer and digest. Trailing bytes after
/// the trailer are an error.
pub fn decode(b: &[u8]) -> Result<Segment, SegmentError> {
    decode_with(b, true)
}

/// [`decode`] without computing the digest the trailer carries (`digest` is the trailer's,
/// unchecked): for a read whose use is proven another way. A point-in-time replay that is
/// compacted reads its window twice, and checks everything it learnt from this first read
/// against the second, checked, one. Every other check is made.
pub fn decode_unverified(b: &[u8]) -> Result<Segment, SegmentError> {
    decode_with(b, false)
}

fn decode_with(b: &[u8], verify: bool) -> Result<Segment, SegmentError> {
    let (header, version, count, body_len) = decode_header(b)?;
    let avail = (b.len() - HEADER_LEN) as u64;
    if avail < TRAILER_LEN as u64 || body_len > avail - TRAILER_LEN as u64 {
        return Err(SegmentError::Truncated {
            offset: b.len(),
            what: "body and trailer are shorter than the header's body length says",
        });
    }
    let body_end = HEADER_LEN + body_len as usize;
    let end = body_end + TRAILER_LEN;
    if b.len() != end {
        return Err(SegmentError::invalid(
            end,
            format!("{} bytes after the trailer", b.len() - end),
        ));
    }
    if &b[body_end..body_end + 8] != TRAILER_MAGIC {
        return Err(SegmentError::invalid(
            body_end,
            "no trailer where the header's body length ends",
        ));
    }
    let mut digest = [0u8; 32];
    digest.copy_from_slice(&b[body_end + 8..end]);
    let computed = match verify {
        true => self::digest(version, &b[..body_end]).ok_or(SegmentError::Version(version))?,
        false => digest,
    };
    if computed != digest {
        return Err(SegmentError::Digest {
            offset: body_end + 8,
            stored: hex::encode(digest),
            computed: hex::encode(computed),
        });
    }
    let mut c = Cursor {
        b: &b[..body_end],
        pos: HEADER_LEN,
    };
    // Each record takes at least 2 bytes: no allocation beyond what the body could hold.
    let mut records = Vec::with_capacity((count as usize).min(body_len as usize / 2));
    let mut rev = header.first;
    let mut prev_key: Vec<u8> = Vec::new();
    for i in 0..count {
        let start = c.pos;
        let tag = c.byte("record tag")?;
        let delta = c.uvarint("revision delta")?;
        rev = i64::try_from(delta)
            .ok()
            .and_then(|d| rev.checked_add(d))
            .filter(|r| *r <= header.last)
            .ok_or_else(|| {
                SegmentError::invalid(
                    start,
                    format!("record {i} goes past the last revision {}", header.last),
                )
            })?;
        let r = match tag {
            TAG_PUT => {
                let key = c.key(&prev_key)?;
                prev_key.clone_from(&key);
                let create_back = c.svarint("create revision")?;
                let version = c.svarint("version")?;
                let lease = c.svarint("lease")?;
                let value = c.bytes("value")?.to_vec();
                Record::Put(KeyValue {
                    key,
                    create_revision: rev.wrapping_sub(create_back),
                    mod_revision: rev,
                    version,
                    value,
                    lease,
                })
            }
            TAG_DELETE => {
                let key = c.key(&prev_key)?;
                prev_key.clone_from(&key);
                Record::Delete { key, revision: rev }
            }
            TAG_LEASE_GRANT => Record::LeaseGrant {
                id: c.svarint("lease id")?,
                ttl: c.svarint("lease ttl")?,
                revision: rev,
            },
            TAG_LEASE_REVOKE => Record::LeaseRevoke {
                id: c.svarint("lease id")?,
                revision: rev,
            },
            TAG_COMPACT => Record::Compact {
                compact_revision: c.svarint("compact revision")?,
                revision: rev,
            },
            TAG_CLOCK => Record::Clock {
                unix_ms: c.svarint("clock")?,
                revision: rev,
            },
            TAG_LIVE_HASH => {
                let h = c.take(4, "hash")?;
                Record::LiveHash {
                    hash: u32::from_le_bytes([h[0], h[1], h[2], h[3]]),
                    compact_revision: c.svarint("compact revision")?,
                    revision: rev,
                }
            }
            t => {
                return Err(SegmentError::invalid(
                    start,
                    format!("record {i} has unknown tag {t}"),
                ))
            }
        };
        records.push(r);
    }
    if c.pos != body_end {
        return Err(SegmentError::invalid(
            c.pos,
            format!(
                "{} body bytes after the {count} records the header counts",
                body_end - c.pos
            ),
        ));
    }
    Ok(Segment {
        version,
        header,
        records,
        digest,
    })
}

fn put_uvarint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_svarint(out: &mut Vec<u8>, v: i64) {
    put_uvarint(out, ((v << 1) ^ (v >> 63)) as u64);
}

fn put_key(out: &mut Vec<u8>, prev: &[u8], key: &[u8]) {
    let shared = prev.iter().zip(key).take_while(|(a, b)| a == b).count();
    put_uvarint(out, shared as u64);
    put_uvarint(out, (key.len() - shared) as u64);
    out.extend_from_slice(&key[shared..]);
}

struct Cursor<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], SegmentError> {
        if n > self.b.len() - self.pos {
            return Err(SegmentError::Truncated {
                offset: self.pos,
                what,
            });
        }
        let s = &self.b[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn byte(&mut self, what: &'static str) -> Result<u8, SegmentError> {
        Ok(self.take(1, what)?[0])
    }

    fn uvarint(&mut self, what: &'static str) -> Result<u64, SegmentError> {
        let start = self.pos;
        let mut v: u64 = 0;
        for i in 0..10 {
            let b = self.byte(what)?;
            if i == 9 && b > 1 {
                break;
            }
            v |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err(SegmentError::invalid(
            start,
            format!("{what}: varint longer than 64 bits"),
        ))
    }

    fn svarint(&mut self, what: &'static str) -> Result<i64, SegmentError> {
        let u = self.uvarint(what)?;
        Ok(((u >> 1) as i64) ^ -((u & 1) as i64))
    }

    fn bytes(&mut self, what: &'static str) -> Result<&'a [u8], SegmentError> {
        let start = self.pos;
        let n = self.uvarint(what)?;
        let n = usize::try_from(n)
            .ok()
            .filter(|n| *n <= self.b.len() - self.pos)
            .ok_or_else(|| {
                SegmentError::invalid(start, format!("{what}: length {n} runs past the body"))
            })?;
        self.take(n, what)
    }

    fn key(&mut self, prev: &[u8]) -> Result<Vec<u8>, SegmentError> {
        let start = self.pos;
        let shared = self.uvarint("key prefix")?;
        let shared = usize::try_from(shared)
            .ok()
            .filter(|s| *s <= prev.len())
            .ok_or_else(|| {
                SegmentError::invalid(
                    start,
                    format!(
                        "key shares {shared} bytes with a previous key of {}",
                        prev.len()
                    ),
                )
            })?;
        let suffix = self.bytes("key")?;
        let mut k = Vec::with_capacity(shared + suffix.len());
        k.extend_from_slice(&prev[..shared]);
        k.extend_from_slice(suffix);
        Ok(k)
    }
}

#[cfg(test)]
#[path = "segment_tests.rs"]
mod tests;
