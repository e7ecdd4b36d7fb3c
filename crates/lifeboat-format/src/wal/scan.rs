//! One streaming pass over a WAL that collects what etcd's `ValidSnapshotEntries` and
//! `ReadAll` would see (formats §5.7), without deciding yet which snapshot etcd starts from.
//!
//! Facts that depend on that choice (metadata conflicts, undecodable entries and unknown
//! record types only matter in files `ReadAll` reads; index gaps are relative to the
//! snapshot index) are kept with their file so [`super::open`] can judge them later.
//! After the first failure the pass goes on in salvage mode, re-seeding the CRC chain, only to
//! count what lies beyond it.

use serde::Serialize;

use super::decode::{Decoder, Failure, FileEnd, Segment};
use super::record::{self, ConfChange, ConfState, Entry, HardState, Metadata, Record, WalSnapshot};
use crate::wire::WireError;

/// Index discontinuities kept for the gap check (a real WAL has a handful: one per file and
/// per leader change that overwrote entries); bounds memory on hostile input.
pub const MAX_RUNS: usize = 100_000;

/// Where a record is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Loc {
    /// Index into the segment list.
    #[serde(skip)]
    pub seg: usize,
    pub file: String,
    /// File offset of the frame's length field.
    pub offset: u64,
    /// 1-based record number within the file.
    pub record: u64,
}

/// A snapshot record (`walpb.Snapshot`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SnapRecord {
    pub index: u64,
    pub term: u64,
    pub conf_state: Option<ConfState>,
    pub loc: Loc,
}

/// A maximal run of entries with consecutive indexes inside one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    pub seg: usize,
    pub first: u64,
    pub last: u64,
    pub loc: Loc,
}

/// A membership change seen in the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConfEvent {
    pub index: u64,
    pub change: &'static str,
    pub node_id: u64,
    /// The member JSON carried in the change's context, when it is valid UTF-8.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub member: Option<String>,
}

/// Problems that only count in files etcd's `ReadAll` reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Semantic {
    /// `wal: conflicting metadata found`.
    MetadataConflict,
    /// `mustUnmarshalEntry` would panic.
    BadEntry(WireError),
    /// `unexpected block type N`.
    UnknownType(i64),
}

/// Why the pass stopped reading the log as etcd would.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stop {
    /// The frame decoder failed.
    Decode(Failure),
    /// A crc record does not carry the chain's value (`wal: crc mismatch`).
    CrcRecord { expected: u32, stored: u32 },
    /// A state record does not decode (etcd panics).
    BadState(WireError),
    /// A snapshot record does not decode (etcd panics).
    BadSnapshot(WireError),
}

/// What salvage decoding found after the stop.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Beyond {
    pub records: u64,
    pub entries: u64,
    pub first_index: Option<u64>,
    pub last_index: Option<u64>,
    /// Salvage reached the end of the log (otherwise the count is a lower bound).
    pub complete: bool,
    /// Highest HardState commit found past the stop: entries up to it had been committed.
    pub commit: Option<u64>,
}

/// Everything one pass learned.
#[derive(Debug, Default)]
pub struct Scan {
    pub files: Vec<FileEnd>,
    pub records: u64,
    pub bytes: u64,
    pub metadata: Option<Metadata>,
    metadata_raw: Vec<u8>,
    pub hard_state: Option<HardState>,
    pub hard_state_loc: Option<Loc>,
    pub snapshots: Vec<SnapRecord>,
    pub runs: Vec<Run>,
    /// More than [`MAX_RUNS`] index discontinuities: the gap check stopped keeping them.
    pub runs_truncated: bool,
    /// Last entry record read (index, term) and where.
    pub last_entry: Option<(u64, u64, Loc)>,
    /// Entries whose index is not above the previous entry's (raft overwrote uncommitted
    /// entries after a leader change): (first overwritten index, where).
    pub overwrites: Vec<(u64, Loc)>,
    /// Entries replaced by overwrites, in total (`overwrites` keeps only the first 100 places).
    pub overwritten: u64,
    pub entries: u64,
    pub conf_changes: Vec<ConfEvent>,
    pub semantic: Vec<(Semantic, Loc)>,
    pub stop: Option<(Stop, Loc)>,
    pub beyond: Beyond,
    /// The previous entry's index and segment, for runs and overwrites.
    prev: (Option<u64>, usize),
}

impl Scan {
    /// Keep the first semantic problem of each file: only the first one in the files etcd
    /// reads matters, and this bounds memory on hostile input.
    fn note(&mut self, sem: Semantic, at: Loc) {
        if !self.semantic.iter().any(|(_, l)| l.seg == at.seg) {
            self.semantic.push((sem, at));
        }
    }
}

fn loc(segs: &[Segment], seg: usize, offset: u64, number: u64) -> Loc {
    Loc {
        seg,
        file: segs.get(seg).map(|s| s.name.clone()).unwrap_or_default(),
        offset,
        record: number,
    }
}

/// Scan all segments (in the given order) once.
pub fn scan(segs: &[Segment]) -> Scan {
    let mut s = Scan::default();
    let mut dec = Decoder::new(segs);
    // Salvage could not follow the frames everywhere (a length it cannot trust).
    let mut lossy = false;
    loop {
        let frame = match dec.next_frame() {
            Ok(Some(f)) => f,
            Ok(None) => {
                s.beyond.complete = s.stop.is_some() && !lossy;
                break;
            }
            Err(f) => {
                let at = loc(segs, f.seg, f.offset, f.number);
                if s.stop.is_none() {
                    s.stop = Some((Stop::Decode(f.clone()), at));
                }
                if !dec.skip_failed(&f) && !f.is_unexpected_eof() {
                    lossy = true;
                }
                continue;
            }
        };
        let at = loc(segs, frame.seg, frame.offset, frame.number);
        let rec = frame.record;
        if s.stop.is_some() {
            // Salvage: count only.
            s.beyond.count(&rec);
            continue;
        }
        s.records += 1;
        s.bytes += frame.frame_len;
        match rec.rtype {
            record::CRC => {
                let expected = frame.crc_before;
                if expected != 0 && rec.crc != expected {
                    s.stop = Some((
                        Stop::CrcRecord {
                            expected,
                            stored: rec.crc,
                        },
                        at,
                    ));
                }
            }
            record::METADATA => {
                let data = rec.data();
                if s.metadata.is_none() {
                    s.metadata = Metadata::decode(data).ok();
                    s.metadata_raw = data.to_vec();
                } else if s.metadata_raw != data {
                    s.note(Semantic::MetadataConflict, at);
                }
            }
            record::STATE => match HardState::decode(rec.data()) {
                Ok(h) => {
                    s.hard_state = Some(h);
                    s.hard_state_loc = Some(at);
                }
                Err(e) => s.stop = Some((Stop::BadState(e), at)),
            },
            record::SNAPSHOT => match WalSnapshot::decode(rec.data()) {
                Ok(w) => s.snapshots.push(SnapRecord {
                    index: w.index,
                    term: w.term,
                    conf_state: w.conf_state,
                    loc: at,
                }),
                Err(e) => s.stop = Some((Stop::BadSnapshot(e), at)),
            },
            record::ENTRY => match Entry::decode(rec.data()) {
                Ok(e) => {
                    s.entry(&e, frame.seg, at);
                }
                Err(e) => s.note(Semantic::BadEntry(e), at),
            },
            t => s.note(Semantic::UnknownType(t), at),
        }
    }
    s.files = dec.file_ends().to_vec();
    beyond_zero_length(&mut s, segs);
    s
}

/// Nonzero bytes after a zero length field in the last file: etcd drops them. Find the
/// frames there to say what is dropped.
fn beyond_zero_length(s: &mut Scan, segs: &[Segment]) {
    if s.stop.is_none() {
        if let Some(end) = s
            .files
            .last()
            .filter(|e| e.zero_length && e.nonzero_after.is_some())
        {
            let (seg, from) = (end.seg, end.end + 8);
            if let Some(o) = super::decode::resync(segs, seg, from, 16 << 20) {
                let mut d = Decoder::starting_at(segs, seg, o).without_tail_scan();
                let mut complete = true;
                loop {
                    match d.next_frame() {
                        Ok(Some(f)) => {
                            s.beyond.count(&f.record);
                        }
                        Ok(None) => break,
                        Err(f) => {
                            if !d.skip_failed(&f) && !f.is_unexpected_eof() {
                                complete = false;
                            }
                        }
                    }
                }
                // Frames between the zero length and the first one found are unknown.
                s.beyond.complete = complete && o == from;
            }
        }
    }
}

impl Beyond {
    /// Count one record past the stop: entries and the highest commit a HardState shows.
    fn count(&mut self, rec: &Record<'_>) {
        self.records += 1;
        match rec.rtype {
            record::ENTRY => {
                if let Ok(e) = Entry::decode(rec.data()) {
                    self.entries += 1;
                    self.first_index.get_or_insert(e.index);
                    self.last_index = Some(e.index);
                }
            }
            record::STATE => {
                if let Ok(h) = HardState::decode(rec.data()) {
                    self.commit = Some(self.commit.unwrap_or(0).max(h.commit));
                }
            }
            _ => {}
        }
    }
}

impl Scan {
    /// One entry read before the stop: counts, index runs, overwrites, conf changes.
    fn entry(&mut self, e: &Entry<'_>, seg: usize, at: Loc) {
        self.entries += 1;
        let contiguous =
            self.prev.0.is_some_and(|p| e.index == p.wrapping_add(1)) && self.prev.1 == seg;
        if let Some(p) = self.prev.0 {
            if e.index <= p {
                self.overwritten += p - e.index + 1;
                if self.overwrites.len() < 100 {
                    self.overwrites.push((e.index, at.clone()));
                }
            }
        }
        let full = self.runs.len() >= MAX_RUNS;
        match self.runs.last_mut() {
            Some(r) if contiguous => r.last = e.index,
            _ if full => self.runs_truncated = true,
            _ => self.runs.push(Run {
                seg,
                first: e.index,
                last: e.index,
                loc: at.clone(),
            }),
        }
        self.prev.0 = Some(e.index);
        self.prev.1 = seg;
        self.conf_change(e);
        self.last_entry = Some((e.index, e.term, at));
    }

    /// Membership changes an entry carries (v1 with the member JSON, or v2).
    fn conf_change(&mut self, e: &Entry<'_>) {
        if e.etype == record::ENTRY_CONF_CHANGE {
            if let Ok(c) = ConfChange::decode(e.data) {
                self.conf_changes.push(ConfEvent {
                    index: e.index,
                    change: record::conf_change_type_name(c.change_type),
                    node_id: c.node_id,
                    member: std::str::from_utf8(c.context)
                        .ok()
                        .filter(|m| !m.is_empty())
                        .map(str::to_owned),
                });
            }
        } else if e.etype == record::ENTRY_CONF_CHANGE_V2 {
            if let Ok(c) = record::ConfChangeV2::decode(e.data) {
                for (t, id) in c.changes {
                    self.conf_changes.push(ConfEvent {
                        index: e.index,
                        change: record::conf_change_type_name(t),
                        node_id: id,
                        member: None,
                    });
                }
            }
        }
    }
}
