//! Reading segments back: one object fetched, decrypted, decompressed and decoded against
//! its name; a window of them streamed in order with every digest and link of the chain
//! checked, and named by its segments' digests.

use std::io::Read;

use super::{parse_cluster, segments_from, SegmentName, MAX_SEGMENT_BYTES};
use crate::catalog::Repository;
use crate::error::{Error, Result};
use crate::format::capture::segment::{self, Segment};
use crate::format::capture::Record;
use crate::pipeline::encrypt;

/// Read, decrypt, decompress and decode one segment, checking its digest and that its header
/// says what its name says. Damage is an integrity error (exit 3) naming the object.
pub fn read_segment(repo: &Repository, seg: &SegmentName) -> Result<Segment> {
    let mut bytes = Vec::new();
    fetch_plain(repo, seg, &mut bytes)?;
    decode_named(repo, seg, &bytes, true)
}

/// The first half of a segment's read: fetched, decrypted and decompressed into `bytes`
/// (cleared first: a reader of many segments passes the same buffer each time), nothing
/// checked but the size.
fn fetch_plain(repo: &Repository, seg: &SegmentName, bytes: &mut Vec<u8>) -> Result<()> {
    let store = repo.store();
    let object = format!("{}/{}", store.location(), seg.name);
    let raw = store.load(&seg.name, 0, None)?;
    let plain: Box<dyn Read + Send> = if seg.encrypted {
        let Some(keys) = repo.keys().get()? else {
            return Err(Error::Usage(format!(
                "capture segment {object} is encrypted; give --identity FILE (or LIFEBOAT_IDENTITY) holding one of the destination's keys"
            )));
        };
        let sealed = encrypt::read::Sealed {
            object: &object,
            what: "capture segment",
            recipients: &[],
        };
        encrypt::read::decrypt_stream(raw, &keys, &sealed)?
    } else {
        raw
    };
    bytes.clear();
    zstd::stream::read::Decoder::new(plain)
        .and_then(|d| d.take(MAX_SEGMENT_BYTES + 1).read_to_end(bytes).map(|_| ()))
        .map_err(|e| Error::integrity(&object, format!("zstd: {}", crate::error::io_words(&e))))?;
    if bytes.len() as u64 > MAX_SEGMENT_BYTES {
        return Err(Error::integrity(
            &object,
            format!("decompresses to more than {MAX_SEGMENT_BYTES} bytes"),
        ));
    }
    Ok(())
}

/// The second half of a segment's read: the decompressed `bytes` decoded, their digest
/// checked (`verify`; false: not computed, [`segment::decode_unverified`]), and the header
/// compared with the name.
fn decode_named(
    repo: &Repository,
    seg: &SegmentName,
    bytes: &[u8],
    verify: bool,
) -> Result<Segment> {
    let object = format!("{}/{}", repo.store().location(), seg.name);
    let decode = match verify {
        true => segment::decode,
        false => segment::decode_unverified,
    };
    let s = decode(bytes).map_err(|e| Error::Corrupt {
        file: object.clone(),
        page: None,
        offset: None,
        what: format!("segment (decompressed) {e}"),
    })?;
    let h = &s.header;
    if (h.cluster_id, h.first, h.last) != (seg.cluster_id, seg.first, seg.last) {
        return Err(Error::integrity(
            &object,
            format!(
                "header says cluster {:016x} revisions {}..{}, the name says otherwise: renamed or swapped objects",
                h.cluster_id, h.first, h.last
            ),
        ));
    }
    Ok(s)
}

/// The captured records of `cluster_id` (hex, as in manifests) with revision in
/// `(after, upto]`, in stream order, after checking every segment's digest and the chain
/// between them. A gap in that range, a broken link or a bad digest is an error that names
/// the segment; `upto` beyond the last durable revision is an error naming it.
pub fn load_records(
    repo: &Repository,
    cluster_id: &str,
    after: i64,
    upto: i64,
) -> Result<Vec<Record>> {
    let mut out = Vec::new();
    stream_records(repo, cluster_id, after, upto, &mut |r| {
        out.push(r);
        Ok(())
    })?;
    Ok(out)
}

/// [`load_records`] one segment at a time: each record goes to `f` as its segment is read
/// and checked (a segment's records after its digest and link are), so memory holds a
/// segment or two (the next one is read and checked on a thread of its own while `f` takes
/// the records of this one). An error from `f` stops the reading and is returned.
pub fn stream_records(
    repo: &Repository,
    cluster_id: &str,
    after: i64,
    upto: i64,
    f: &mut dyn FnMut(Record) -> Result<()>,
) -> Result<()> {
    stream_records_with(repo, cluster_id, after, upto, true, f).map(|_| ())
}

/// [`stream_records`] without computing each segment's digest (`verify` false): every
/// other check is made, links included, but a changed segment is not seen. Only for a read
/// whose every use is checked against a verified read of the same window (a compacted
/// replay's survey: `restore::replay::Survey`).
pub fn stream_records_with(
    repo: &Repository,
    cluster_id: &str,
    after: i64,
    upto: i64,
    verify: bool,
    f: &mut dyn FnMut(Record) -> Result<()>,
) -> Result<[u8; 32]> {
    let id = parse_cluster(cluster_id)?;
    let mut named = SegmentsDigest::new(after, upto);
    if upto <= after {
        return Ok(named.finish());
    }
    // Only the segments from the one holding `after + 1` on are listed (not the history).
    let all = segments_from(repo.store(), id, after + 1)?;
    let loc = repo.location();
    let Some(newest) = all.last() else {
        return Err(Error::Refused(format!(
            "{loc} holds no capture segments of cluster {id:016x}: revision {upto} cannot be restored, only backup revisions (run `lifeboat capture` to record changes between backups)"
        )));
    };
    // The segments that hold (after, upto], and the one before them (for the link).
    let needed: Vec<&SegmentName> = all
        .iter()
        .filter(|s| s.last > after && s.first <= upto)
        .collect();
    let durable = newest.last;
    if upto > durable {
        return Err(Error::Refused(format!(
            "revision {upto} is beyond the last durable captured revision {durable} of cluster {id:016x} in {loc} (segment {}); the newest restorable revision is {durable}",
            newest.name
        )));
    }
    // Coverage of after+1 ..= upto with no hole.
    let mut next = after + 1;
    for s in &needed {
        if s.first > next {
            return Err(gap_error(&loc, id, next, s, after));
        }
        next = next.max(s.last + 1);
    }
    if next <= upto {
        return Err(Error::Refused(format!(
            "revisions {next}..{upto} of cluster {id:016x} are not captured in {loc}; the newest restorable revision from revision {after} is {}",
            next - 1
        )));
    }
    // Three stages on threads of their own, a segment or two apart: fetch and decompress,
    // then digest and decode, then the caller takes the records. The middle stage (the
    // digest of the plaintext and the decode) has two workers taking every other
    // segment, so that on two cores the stages keep both busy instead of waiting on the
    // slowest; the caller takes their segments back in turn, in order. Decompression
    // buffers go back to the first stage once decoded.
    std::thread::scope(|sc| {
        use std::sync::mpsc::sync_channel;
        const WORKERS: usize = 2;
        let (spare_tx, spare_rx) = sync_channel::<Vec<u8>>(2 * WORKERS + 1);
        let mut plain_txs = Vec::with_capacity(WORKERS);
        let mut outs = Vec::with_capacity(WORKERS);
        for _ in 0..WORKERS {
            let (plain_tx, plain_rx) = sync_channel::<(&SegmentName, Result<Vec<u8>>)>(1);
            let (tx, rx) = sync_channel(1);
            let spare_tx = spare_tx.clone();
            sc.spawn(move || {
                for (s, plain) in plain_rx {
                    let read = plain.and_then(|bytes| {
                        let seg = decode_named(repo, s, &bytes, verify);
                        let _ = spare_tx.try_send(bytes);
                        seg
                    });
                    let failed = read.is_err();
                    if tx.send((s, read)).is_err() || failed {
                        break;
                    }
                }
            });
            plain_txs.push(plain_tx);
            outs.push(rx);
        }
        drop(spare_tx);
        sc.spawn(move || {
            for (i, s) in needed.into_iter().enumerate() {
                let mut bytes = spare_rx.try_recv().unwrap_or_default();
                let read = fetch_plain(repo, s, &mut bytes).map(|()| bytes);
                let failed = read.is_err();
                // The receiver is gone when the caller stopped early: nothing more to read.
                if plain_txs[i % WORKERS].send((s, read)).is_err() || failed {
                    break;
                }
            }
        });
        // Segment i comes from worker i % WORKERS; a worker that stopped (an error it
        // sent, or the end) ends the stream.
        let mut turn = 0;
        let rx = std::iter::from_fn(|| {
            let next = outs[turn % WORKERS].recv().ok();
            turn += 1;
            next
        });
        let mut prev: Option<(&SegmentName, [u8; 32])> = None;
        for (s, read) in rx {
            let segment = read?;
            if let Some((p, digest)) = prev {
                check_link(&loc, p, digest, s, &segment)?;
            }
            prev = Some((s, segment.digest));
            named.segment(&segment.digest);
            for r in segment.records {
                if r.revision() > after && r.revision() <= upto {
                    f(r)?;
                }
            }
        }
        Ok(named.finish())
    })
}

/// What names the records of a window read from segments, without hashing the records:
/// SHA-256 over the window's bounds and the digest of every segment read, in order. Each
/// segment's digest covers every byte its records are decoded from, so the same digest
/// means the same records; it is only meaningful for a verified read (`verify`: the
/// digests were computed from the bytes).
struct SegmentsDigest(sha2::Sha256);

impl SegmentsDigest {
    fn new(after: i64, upto: i64) -> SegmentsDigest {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        h.update(b"lifeboat capture segments v1\n");
        h.update(after.to_be_bytes());
        h.update(upto.to_be_bytes());
        SegmentsDigest(h)
    }

    fn segment(&mut self, digest: &[u8; 32]) {
        use sha2::Digest;
        self.0.update(digest);
    }

    fn finish(self) -> [u8; 32] {
        use sha2::Digest;
        self.0.finalize().into()
    }
}

fn gap_error(loc: &str, id: u64, from: i64, s: &SegmentName, after: i64) -> Error {
    Error::Refused(format!(
        "revisions {from}..{} of cluster {id:016x} are not captured in {loc} (gap before segment {}); restorable: up to {} from revision {after}, or from {} on with a backup taken at or after revision {}",
        s.first - 1,
        s.name,
        from - 1,
        s.first,
        s.first - 1
    ))
}

/// Segment `s` must follow `p` (digest `pd`): same chain, no overlap, a hole only when `s`
/// says so (gap flag).
fn check_link(
    loc: &str,
    p: &SegmentName,
    pd: [u8; 32],
    s: &SegmentName,
    seg: &Segment,
) -> Result<()> {
    let object = format!("{loc}/{}", s.name);
    if s.first <= p.last {
        return Err(Error::integrity(
            object,
            format!(
                "overlaps segment {} (revisions {}..{}): two captures wrote to this destination at once; remove the one that is not in the chain",
                p.name, p.first, p.last
            ),
        ));
    }
    if seg.header.prev != pd && seg.header.prev != [0; 32] {
        return Err(Error::integrity(
            object,
            format!(
                "chain broken: it follows a segment with digest {}, but the segment before it, {}, has digest {}",
                hex::encode(seg.header.prev),
                p.name,
                hex::encode(pd)
            ),
        ));
    }
    Ok(())
}
