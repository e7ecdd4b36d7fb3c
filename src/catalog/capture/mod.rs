//! Capture segments in a destination: the records point-in-time recovery replays.
//!
//! One object per segment, named `capture-<cluster id, 16 hex>-<first:020>-<last:020>-<sealed
//! unix ms:013>.seg` (`.seg.age` when encrypted), so a listing alone tells the revisions and
//! time a destination covers without reading (or decrypting) anything. The object is the
//! segment's bytes ([`crate::format::capture::segment`]) compressed with zstd, then
//! age-encrypted when the destination has recipients. Objects are written through the store's
//! atomic create/commit: a segment that lists is whole (a torn one never lists).

use std::io::Write;

use serde::Serialize;

use crate::catalog::{Manifest, Repository};
use crate::error::{Error, Result, StoreErrorKind};
use crate::format::capture::segment::{Header, Segment};
use crate::pipeline::encrypt::{Encryption, ReadBackKey};
use crate::store::Store;

/// Segment objects start with this.
pub const PREFIX: &str = "capture-";
const SUFFIX: &str = ".seg";
const AGE_SUFFIX: &str = ".seg.age";
/// A stored segment decompresses to at most this many bytes (a hostile frame cannot make a
/// reader allocate more).
pub const MAX_SEGMENT_BYTES: u64 = 256 << 20;

/// A segment object's name, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentName {
    pub name: String,
    pub cluster_id: u64,
    pub first: i64,
    pub last: i64,
    /// When capture sealed it (UTC ms): every change up to `last` was captured by then.
    pub sealed_ms: i64,
    pub encrypted: bool,
}

/// The object name of a segment.
pub fn segment_name(h: &Header, sealed_ms: i64, encrypted: bool) -> String {
    format!(
        "{PREFIX}{:016x}-{:020}-{:020}-{:013}{}",
        h.cluster_id,
        h.first,
        h.last,
        sealed_ms.max(0),
        if encrypted { AGE_SUFFIX } else { SUFFIX }
    )
}

/// Parse a segment object's name; `None` for anything else.
pub fn parse_name(name: &str) -> Option<SegmentName> {
    let rest = name.strip_prefix(PREFIX)?;
    let (rest, encrypted) = match rest.strip_suffix(AGE_SUFFIX) {
        Some(r) => (r, true),
        None => (rest.strip_suffix(SUFFIX)?, false),
    };
    let mut parts = rest.split('-');
    let (c, f, l, t) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || c.len() != 16 || f.len() != 20 || l.len() != 20 || t.len() != 13 {
        return None;
    }
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if !digits(f) || !digits(l) || !digits(t) {
        return None;
    }
    let (first, last) = (f.parse::<i64>().ok()?, l.parse::<i64>().ok()?);
    if first < 1 || last < first {
        return None;
    }
    Some(SegmentName {
        name: name.to_string(),
        cluster_id: u64::from_str_radix(c, 16).ok()?,
        first,
        last,
        sealed_ms: t.parse().ok()?,
        encrypted,
    })
}

/// The segments of `cluster_id` in a store, by first revision (then last).
pub fn list_segments(store: &dyn Store, cluster_id: u64) -> Result<Vec<SegmentName>> {
    let mut out: Vec<SegmentName> = store
        .list(&format!("{PREFIX}{cluster_id:016x}-"))?
        .iter()
        .filter_map(|o| parse_name(&o.name))
        .filter(|s| s.cluster_id == cluster_id)
        .collect();
    out.sort_by_key(|s| (s.first, s.last, s.sealed_ms));
    Ok(out)
}

/// The segments of `cluster_id` a reader of revisions `rev` and later needs, in
/// [`list_segments`] order: every segment that begins at `rev` or later, preceded (unless one
/// begins exactly at `rev`) by the last segment that begins before `rev`, whether or not it
/// reaches `rev`. The last element is the newest segment whatever `rev` is.
///
/// Names sort by revision (fixed-width, zero-padded fields), so this lists only the names
/// from `rev` on (`Store::list_after`: S3 `start-after`) and finds the segment before them by
/// listing the names whose first revision shares all but the last 3, 4, 5 … digits with
/// `rev - 1` until one begins at or before it: a restore from a backup taken mid-segment
/// finds it in the first block of 1,000 revisions.
pub fn segments_from(store: &dyn Store, cluster_id: u64, rev: i64) -> Result<Vec<SegmentName>> {
    if rev <= 1 {
        return list_segments(store, cluster_id);
    }
    let prefix = format!("{PREFIX}{cluster_id:016x}-");
    let parse = |objects: Vec<crate::store::ObjectInfo>| -> Vec<SegmentName> {
        objects
            .iter()
            .filter_map(|o| parse_name(&o.name))
            .filter(|s| s.cluster_id == cluster_id)
            .collect()
    };
    let key = |s: &SegmentName| (s.first, s.last, s.sealed_ms);
    let mut tail = parse(store.list_after(&prefix, &format!("{prefix}{rev:020}"))?);
    tail.sort_by_key(key);
    if tail.first().is_some_and(|s| s.first == rev) {
        return Ok(tail);
    }
    let before = rev - 1;
    let digits = format!("{before:020}");
    let mut found = None;
    for k in 3..=20 {
        let block = &digits[..20 - k];
        found = parse(store.list(&format!("{prefix}{block}"))?)
            .into_iter()
            .filter(|s| s.first <= before)
            .max_by_key(key);
        if found.is_some() || block.bytes().all(|b| b == b'0') {
            break;
        }
    }
    let mut out: Vec<SegmentName> = found.into_iter().collect();
    out.extend(tail);
    Ok(out)
}

/// Where segments are encrypted to: the destination's recipients and the capture run's
/// read-back key (the pipeline's age encryption, as for backups).
pub struct Sealing<'a> {
    pub encryption: &'a Encryption,
    pub read_back: &'a ReadBackKey,
}

/// Store one encoded segment: zstd, then age when `sealing` is given, committed atomically.
/// Storing the same segment again (a retried upload) finds it there and succeeds.
pub fn store_segment(
    store: &dyn Store,
    encoded: &[u8],
    header: &Header,
    sealed_ms: i64,
    sealing: Option<&Sealing<'_>>,
) -> Result<Stored> {
    let name = segment_name(header, sealed_ms, sealing.is_some());
    let compressed = zstd::encode_all(encoded, 3)
        .map_err(|e| Error::Internal(format!("compressing capture segment {name}: {e}")))?;
    let w = match store.create(&name) {
        Ok(w) => w,
        Err(Error::Store {
            kind: StoreErrorKind::AlreadyExists,
            ..
        }) => {
            return Ok(Stored {
                name,
                bytes: compressed.len() as u64,
            })
        }
        Err(e) => return Err(e),
    };
    let mut w = match sealing {
        Some(s) => s.encryption.wrap(w, s.read_back, &name)?.0,
        None => w,
    };
    if let Err(e) = w.write_all(&compressed) {
        w.abort();
        return Err(Error::store(
            store.location(),
            crate::store::kind_of_io(&e),
            format!("write {name}: {}", crate::error::io_words(&e)),
        ));
    }
    let stored = Stored {
        name,
        bytes: compressed.len() as u64,
    };
    match w.commit() {
        Err(Error::Store {
            kind: StoreErrorKind::AlreadyExists,
            ..
        }) => Ok(stored),
        other => other.map(|()| stored),
    }
}

/// A segment object as stored: its name and its size compressed (before any encryption,
/// which adds a few dozen bytes per object).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub name: String,
    pub bytes: u64,
}

mod read;
pub use read::{load_records, read_segment, stream_records, stream_records_with};

fn parse_cluster(cluster_id: &str) -> Result<u64> {
    u64::from_str_radix(cluster_id.trim_start_matches("0x"), 16)
        .map_err(|_| Error::Usage(format!("cluster id {cluster_id:?} is not hex")))
}

/// Every segment of `cluster_id` (hex) that holds revisions after `after`, as (last
/// revision, sealed at: UTC ms) from the names alone (nothing is read): what
/// `restore plan --to-time` finds its revision with.
pub fn sealed_times(repo: &Repository, cluster_id: &str, after: i64) -> Result<Vec<(i64, i64)>> {
    let id = parse_cluster(cluster_id)?;
    Ok(segments_from(repo.store(), id, after.saturating_add(1))?
        .into_iter()
        .filter(|s| s.last > after)
        .map(|s| (s.last, s.sealed_ms))
        .collect())
}

/// The last captured revision a destination holds for `cluster_id` (hex), from the segment
/// names alone (nothing is read): what `restore plan --to-time` bounds its search with.
pub fn last_revision(repo: &Repository, cluster_id: &str) -> Result<Option<i64>> {
    last_revision_from(repo, cluster_id, 1)
}

/// Whether a segment holding any revision in `(after, upto]` of `cluster_id` (hex) is
/// encrypted, from the names alone.
pub fn any_encrypted(repo: &Repository, cluster_id: &str, after: i64, upto: i64) -> Result<bool> {
    let id = parse_cluster(cluster_id)?;
    Ok(segments_from(repo.store(), id, after + 1)?
        .iter()
        .any(|s| s.last > after && s.first <= upto && s.encrypted))
}

/// [`last_revision`], listing only the segment names from revision `hint` on (any revision
/// gives the same answer; one near the newest lists fewer names).
pub fn last_revision_from(repo: &Repository, cluster_id: &str, hint: i64) -> Result<Option<i64>> {
    let id = parse_cluster(cluster_id)?;
    Ok(segments_from(repo.store(), id, hint)?
        .last()
        .map(|s| s.last))
}

/// The last segment a destination holds for `cluster_id`, read and checked: where capture
/// resumes (its last revision + 1) and what the next segment links to (its digest).
pub fn last_durable(repo: &Repository, cluster_id: u64) -> Result<Option<(SegmentName, Segment)>> {
    let Some(last) = list_segments(repo.store(), cluster_id)?.pop() else {
        return Ok(None);
    };
    let seg = read_segment(repo, &last)?;
    Ok(Some((last, seg)))
}

/// A stretch of revisions a destination can restore to exactly: a backup, then captured
/// segments with no hole up to `to_revision`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CaptureWindow {
    pub cluster_id: String,
    /// The oldest backup the window starts from (None: segments without a backup under them).
    pub from_backup: Option<String>,
    /// The revision restores start from: that backup's revision (or the revision before the
    /// first segment when there is no backup).
    pub from_revision: i64,
    /// The last captured revision of the window.
    pub to_revision: i64,
    /// When that revision was captured (RFC 3339, UTC).
    pub to_time: String,
    pub segments: usize,
    /// Revisions missing right after the window (`[first, last]`), when another window follows.
    pub gap_after: Option<[i64; 2]>,
}

/// The recoverable windows of every cluster with segments in the store, from names alone (no
/// object is read). `backups` are the destination's backups (any order).
pub fn capture_windows(store: &dyn Store, backups: &[Manifest]) -> Result<Vec<CaptureWindow>> {
    let mut segs: Vec<SegmentName> = store
        .list(PREFIX)?
        .iter()
        .filter_map(|o| parse_name(&o.name))
        .collect();
    segs.sort_by_key(|s| (s.cluster_id, s.first, s.last));
    let mut out: Vec<CaptureWindow> = Vec::new();
    let mut run: Vec<&SegmentName> = Vec::new();
    let flush = |run: &mut Vec<&SegmentName>, out: &mut Vec<CaptureWindow>, next: Option<i64>| {
        let (Some(f), Some(l)) = (run.first(), run.last()) else {
            return;
        };
        let start = f.first - 1;
        let mut base: Vec<&Manifest> = backups
            .iter()
            .filter(|m| {
                m.cluster_id.0 == f.cluster_id && m.revision >= start && m.revision <= l.last
            })
            .collect();
        base.sort_by_key(|m| m.revision);
        let from = base.first();
        out.push(CaptureWindow {
            cluster_id: format!("{:x}", f.cluster_id),
            from_backup: from.map(|m| m.id.to_string()),
            from_revision: from.map_or(start, |m| m.revision),
            to_revision: l.last,
            to_time: rfc3339_ms(l.sealed_ms),
            segments: run.len(),
            gap_after: next.map(|n| [l.last + 1, n - 1]),
        });
        run.clear();
    };
    for s in &segs {
        if let Some(p) = run.last() {
            if p.cluster_id != s.cluster_id {
                flush(&mut run, &mut out, None);
            } else if s.first > p.last + 1 {
                flush(&mut run, &mut out, Some(s.first));
            }
        }
        run.push(s);
    }
    flush(&mut run, &mut out, None);
    Ok(out)
}

fn rfc3339_ms(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| format!("{ms} ms"))
}

#[cfg(test)]
mod tests;
