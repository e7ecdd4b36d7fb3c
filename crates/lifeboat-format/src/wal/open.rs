//! What etcd 3.5.1 does with a WAL at start-up, given the snapshot it loaded: the order of
//! `ValidSnapshotEntries`, `wal.Open` (file selection), `ReadAll`, `Repair` and raft's
//! `loadState` (formats §5.1, §5.7). The answer is one [`Outcome`].

use serde::Serialize;

use super::decode::Segment;
use super::record::HardState;
use super::scan::{Loc, Scan, Semantic, SnapRecord, Stop};

/// The snapshot etcd opens the WAL at (`walpb.Snapshot{index, term}`; zero when no `.snap`
/// file was loaded).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Start {
    pub index: u64,
    pub term: u64,
}

/// What etcd does with this WAL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Reads it as it is.
    Clean,
    /// Repairs it: cuts the last file at `at.offset` (after copying it to `<name>.broken`),
    /// or zero-fills garbage after a zero length field. Everything from there is lost.
    Torn { at: Loc, message: String },
    /// Refuses to start.
    Fatal {
        at: Option<Loc>,
        /// The error etcd logs.
        etcd_error: String,
        message: String,
    },
}

/// The WAL as etcd would load it.
#[derive(Debug, Clone)]
pub struct Opened {
    pub outcome: Outcome,
    /// Index into the segment list of the first file `ReadAll` reads.
    pub start_file: Option<usize>,
    pub last_index: u64,
    pub last_term: u64,
    pub hard_state: HardState,
}

/// `ValidSnapshotEntries`: the snapshot records a `.snap` file may match (those with
/// index ≤ the last HardState's commit), or the fatal error it returns.
pub fn valid_snapshots(scan: &Scan) -> Result<Vec<&SnapRecord>, Outcome> {
    if let Some((stop, at)) = &scan.stop {
        let fatal = |etcd_error: &str, message: String| Outcome::Fatal {
            at: Some(at.clone()),
            etcd_error: etcd_error.into(),
            message,
        };
        match stop {
            Stop::Decode(f) if !f.is_unexpected_eof() => {
                let why = if f.zero_sector.is_none() && f.in_last_file {
                    " (no all-zero 512-byte sector in it, so not a torn write)"
                } else if !f.in_last_file {
                    " (not in the last file, where only torn writes are tolerated)"
                } else {
                    ""
                };
                return Err(fatal(&f.etcd_error(), format!("{}{why}", f.kind)));
            }
            Stop::CrcRecord { expected, stored } => {
                return Err(fatal(
                    "wal: crc mismatch",
                    format!(
                        "the crc record carries {stored:08x} but the records before it chain to {expected:08x}: records are missing or changed before this point (a missing or truncated earlier segment?)"
                    ),
                ))
            }
            Stop::BadState(e) => {
                return Err(fatal(
                    "panic: unmarshal HardState",
                    format!("state record does not decode: {e}"),
                ))
            }
            Stop::BadSnapshot(e) => {
                return Err(fatal(
                    "panic: unmarshal walpb.Snapshot",
                    format!("snapshot record does not decode: {e}"),
                ))
            }
            Stop::Decode(_) => {}
        }
    }
    let commit = scan.hard_state.map(|h| h.commit).unwrap_or(0);
    Ok(scan
        .snapshots
        .iter()
        .filter(|s| s.index <= commit)
        .collect())
}

/// etcd `searchIndex`: the last file whose name index is ≤ the snapshot index.
pub fn search_index(segs: &[Segment], index: u64) -> Option<usize> {
    segs.iter().rposition(|s| s.index <= index)
}

/// Model `wal.Open(start)` + `ReadAll` (+ `Repair`) + raft `loadState`.
pub fn open(segs: &[Segment], scan: &Scan, start: Start) -> Opened {
    let hard_state = scan.hard_state.unwrap_or_default();
    // What the log holds up to the first failure; refined below once the start is known.
    let (li, lt) = match &scan.last_entry {
        Some((i, t, _)) if *i > start.index => (*i, *t),
        _ => (start.index, start.term),
    };
    let mut opened = Opened {
        outcome: Outcome::Clean,
        start_file: None,
        last_index: li,
        last_term: lt,
        hard_state,
    };
    if let Err(o) = valid_snapshots(scan) {
        opened.outcome = o;
        return opened;
    }
    let first = match files_from(segs, start) {
        Ok(f) => f,
        Err(o) => {
            opened.outcome = o;
            return opened;
        }
    };
    opened.start_file = Some(first);
    let mut events = semantic_events(scan, first);
    let (last, last_term) = entries_from(scan, first, start, &mut events);
    opened.last_index = last;
    opened.last_term = last_term;
    let matched = snapshot_record(scan, first, start, &mut events);
    events.sort_by_key(|(l, _, _)| (l.seg, l.offset));
    if let Some((at, e, m)) = events.into_iter().next() {
        opened.outcome = fatal(Some(at), e, m);
        return opened;
    }
    match tail_outcome(segs, scan) {
        Some(o @ Outcome::Fatal { .. }) => {
            opened.outcome = o;
            return opened;
        }
        Some(o) => opened.outcome = o,
        None => {}
    }
    if !matched {
        opened.outcome = fatal(
            None,
            "wal: snapshot not found",
            format!(
                "no snapshot record for index {} term {} in the WAL files etcd reads",
                start.index, start.term
            ),
        );
        return opened;
    }
    // raft loadState: commit must lie in [snapshot index, last index].
    if hard_state != HardState::default()
        && (hard_state.commit < start.index || hard_state.commit > last)
    {
        opened.outcome = fatal(
            scan.hard_state_loc.clone(),
            "raft: state.commit is out of range",
            format!(
                "HardState commit {} is out of range [{}, {}]: the log is missing committed entries",
                hard_state.commit, start.index, last
            ),
        );
    }
    opened
}

fn fatal(at: Option<Loc>, e: &str, m: String) -> Outcome {
    Outcome::Fatal {
        at,
        etcd_error: e.into(),
        message: m,
    }
}

/// wal.Open: the last file whose name index is at or before the snapshot, and contiguous
/// sequence numbers from there.
fn files_from(segs: &[Segment], start: Start) -> Result<usize, Outcome> {
    let Some(first) = search_index(segs, start.index) else {
        return Err(fatal(
            None,
            "wal: file not found",
            format!(
                "no WAL file starts at or before the snapshot index {} (older files were purged or lost)",
                start.index
            ),
        ));
    };
    for w in segs.get(first..).unwrap_or_default().windows(2) {
        if let [a, b] = w {
            if a.seq.checked_add(1) != Some(b.seq) {
                return Err(fatal(
                    None,
                    "wal: file not found",
                    format!(
                        "WAL segment sequence is broken: {} is followed by {} (missing seq {})",
                        a.name,
                        b.name,
                        a.seq.wrapping_add(1)
                    ),
                ));
            }
        }
    }

    Ok(first)
}

/// A fatal finding of ReadAll: where, etcd's error, our words.
type Event = (Loc, &'static str, String);

/// ReadAll, in stream order, over files >= first: records that stop it.
fn semantic_events(scan: &Scan, first: usize) -> Vec<Event> {
    let mut events: Vec<Event> = Vec::new();
    for (sem, at) in &scan.semantic {
        if at.seg < first {
            continue;
        }
        let (e, m) = match sem {
            Semantic::MetadataConflict => (
                "wal: conflicting metadata found",
                "metadata record differs from the first one (a WAL from another member or cluster mixed in?)".to_string(),
            ),
            Semantic::BadEntry(e) => ("panic: unmarshal raftpb.Entry", format!("entry does not decode: {e}")),
            Semantic::UnknownType(t) => ("unexpected block type", format!("unexpected block type {t}")),
        };
        events.push((at.clone(), e, m));
    }
    events
}

/// The last entry etcd reads from `start` (index, term); an index gap is an event.
fn entries_from(scan: &Scan, first: usize, start: Start, events: &mut Vec<Event>) -> (u64, u64) {
    let mut last = start.index;
    let mut last_term = start.term;
    for run in scan.runs.iter().filter(|r| r.seg >= first) {
        if run.last <= start.index {
            continue;
        }
        if run.first > start.index && run.first > last.saturating_add(1) {
            events.push((
                run.loc.clone(),
                "wal: slice bounds out of range",
                format!(
                    "entry index jumps from {last} to {}: entries {}..{} are missing",
                    run.first,
                    last.saturating_add(1),
                    run.first - 1
                ),
            ));
            break;
        }
        last = run.last;
    }
    if let Some((idx, term, at)) = &scan.last_entry {
        if at.seg >= first && *idx > start.index {
            last = *idx;
            last_term = *term;
        }
    }
    (last, last_term)
}

/// Whether a snapshot record matches the start (term mismatch: an event).
fn snapshot_record(scan: &Scan, first: usize, start: Start, events: &mut Vec<Event>) -> bool {
    let mut matched = false;
    for s in scan.snapshots.iter().filter(|s| s.loc.seg >= first) {
        if s.index == start.index {
            if s.term != start.term {
                events.push((
                    s.loc.clone(),
                    "wal: snapshot mismatch",
                    format!(
                        "snapshot record at index {} has term {}, the loaded snapshot has term {}",
                        s.index, s.term, start.term
                    ),
                ));
            }
            matched = true;
        }
    }
    matched
}

/// The decoder's own stop: unexpected EOF (ValidSnapshotEntries let it through), which
/// Repair mends in the last file only; or a zero length field with data after it, which
/// etcd takes as the end.
fn tail_outcome(segs: &[Segment], scan: &Scan) -> Option<Outcome> {
    if let Some((Stop::Decode(f), at)) = &scan.stop {
        if f.in_last_file {
            let why = match f.zero_sector {
                Some(z) => format!(
                    "{}; the 512-byte sector at offset {z} is all zero, so etcd calls it a torn write",
                    f.kind
                ),
                None => format!("{}", f.kind),
            };
            Some(Outcome::Torn {
                at: at.clone(),
                message: format!(
                    "{why}; etcd copies the file to {}.broken and truncates it at offset {}",
                    at.file, at.offset
                ),
            })
        } else {
            Some(fatal(
                Some(at.clone()),
                "unexpected EOF",
                format!(
                    "{} in a file that is not the last one: etcd's repair only mends the last file, so the WAL cannot be repaired",
                    f.kind
                ),
            ))
        }
    } else if let Some(end) = scan.files.last() {
        if let (Some(nz), true) = (end.nonzero_after, end.zero_length) {
            let file = segs
                .get(end.seg)
                .map(|s| s.name.clone())
                .unwrap_or_default();
            return Some(Outcome::Torn {
                at: Loc {
                    seg: end.seg,
                    file,
                    offset: end.end,
                    record: end.records + 1,
                },
                message: format!(
                    "a zero length field at offset {} ends the log, but nonzero bytes follow from offset {nz}: etcd treats it as the end and zero-fills the rest of the file",
                    end.end
                ),
            });
        }
        None
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wal::record::{encode as e, ENTRY, METADATA};
    use crate::wal::{scan, Segment};

    use crate::wal::record::TestLog as W;

    fn run(segs: Vec<Segment>, start: Start) -> Opened {
        let s = scan(&segs);
        open(&segs, &s, start)
    }

    fn one(w: &W) -> Vec<Segment> {
        vec![Segment::from_bytes(0, 0, w.bytes())]
    }

    fn fatal(o: &Opened) -> &str {
        match &o.outcome {
            Outcome::Fatal { etcd_error, .. } => etcd_error,
            other => panic!("expected fatal, got {other:?}"),
        }
    }

    fn base() -> W {
        let mut w = W::new(0);
        w.head().snap(0, 0);
        w
    }

    #[test]
    fn clean_log() {
        let mut w = base();
        for i in 1..=5 {
            w.entry(1, i);
        }
        w.state(1, 5);
        let o = run(one(&w), Start::default());
        assert_eq!(o.outcome, Outcome::Clean);
        assert_eq!((o.last_index, o.last_term, o.hard_state.commit), (5, 1, 5));
    }

    #[test]
    fn overwritten_entries_are_normal() {
        let mut w = base();
        w.entry(1, 1)
            .entry(1, 2)
            .entry(1, 3)
            .entry(2, 2)
            .entry(2, 3)
            .state(2, 3);
        let segs = one(&w);
        let s = scan(&segs);
        assert_eq!((s.overwrites.len(), s.overwritten), (1, 2));
        let o = open(&segs, &s, Start::default());
        assert_eq!(o.outcome, Outcome::Clean);
        assert_eq!((o.last_index, o.last_term), (3, 2));
    }

    #[test]
    fn index_gap_is_fatal() {
        let mut w = base();
        w.entry(1, 1).entry(1, 2).entry(1, 4).state(1, 2);
        assert_eq!(
            fatal(&run(one(&w), Start::default())),
            "wal: slice bounds out of range"
        );
    }

    #[test]
    fn metadata_conflict_and_unknown_type_are_fatal() {
        let mut w = base();
        w.entry(1, 1).rec(METADATA, &e::metadata(8, 9));
        assert_eq!(
            fatal(&run(one(&w), Start::default())),
            "wal: conflicting metadata found"
        );
        let mut w = base();
        w.entry(1, 1).rec(9, b"x");
        assert_eq!(
            fatal(&run(one(&w), Start::default())),
            "unexpected block type"
        );
    }

    #[test]
    fn commit_beyond_the_log_is_fatal() {
        let mut w = base();
        w.entry(1, 1).state(1, 9);
        assert_eq!(
            fatal(&run(one(&w), Start::default())),
            "raft: state.commit is out of range"
        );
    }

    #[test]
    fn snapshot_records_must_match() {
        let mut w = base();
        w.entry(1, 1).entry(1, 2).state(1, 2).snap(2, 1);
        assert_eq!(
            run(one(&w), Start { index: 2, term: 1 }).outcome,
            Outcome::Clean
        );
        assert_eq!(
            fatal(&run(one(&w), Start { index: 2, term: 5 })),
            "wal: snapshot mismatch"
        );
        assert_eq!(
            fatal(&run(one(&w), Start { index: 1, term: 1 })),
            "wal: snapshot not found"
        );
    }

    fn two_segments() -> (W, W) {
        let mut a = base();
        a.entry(1, 1).entry(1, 2).state(1, 2);
        let mut b = W::new(a.crc);
        b.head().state(1, 2).entry(1, 3).entry(1, 4).state(1, 4);
        (a, b)
    }

    #[test]
    fn crc_chain_across_segments() {
        let (a, b) = two_segments();
        let segs = vec![
            Segment::from_bytes(0, 0, a.b.clone()),
            Segment::from_bytes(1, 3, b.bytes()),
        ];
        let o = run(segs, Start::default());
        assert_eq!(o.outcome, Outcome::Clean);
        assert_eq!(o.last_index, 4);
        // The second segment's crc record does not carry the first one's chain.
        let mut bad = W::new(a.crc ^ 1);
        bad.head().state(1, 2).entry(1, 3);
        let segs = vec![
            Segment::from_bytes(0, 0, a.b.clone()),
            Segment::from_bytes(1, 3, bad.bytes()),
        ];
        assert_eq!(fatal(&run(segs, Start::default())), "wal: crc mismatch");
    }

    #[test]
    fn zero_sector_is_torn_only_in_the_last_file() {
        let (mut a, b) = two_segments();
        // A big entry, then zero one whole sector inside it.
        a.rec(ENTRY, &e::entry(0, 1, 3, Some(&[7u8; 3000])));
        let at = a.b.len() - 1500;
        let sector = at / 512 * 512;
        let mut damaged = a.b.clone();
        damaged[sector..sector + 512].fill(0);
        // Last file: torn.
        let o = run(
            vec![Segment::from_bytes(0, 0, damaged.clone())],
            Start::default(),
        );
        assert!(matches!(o.outcome, Outcome::Torn { .. }), "{:?}", o.outcome);
        assert_eq!(o.last_index, 2);
        // Not the last file: fatal.
        let segs = vec![
            Segment::from_bytes(0, 0, damaged),
            Segment::from_bytes(1, 3, b.bytes()),
        ];
        assert_eq!(fatal(&run(segs, Start::default())), "walpb: crc mismatch");
    }

    #[test]
    fn garbage_after_a_zero_length_is_dropped_by_etcd() {
        let mut w = base();
        w.entry(1, 1).state(1, 1);
        let mut b = w.bytes();
        let n = b.len();
        b[n - 100] = 0x55;
        let o = run(vec![Segment::from_bytes(0, 0, b)], Start::default());
        assert!(matches!(o.outcome, Outcome::Torn { .. }), "{:?}", o.outcome);
    }

    #[test]
    fn missing_segment_in_range_is_file_not_found() {
        let (a, b) = two_segments();
        let segs = vec![
            Segment::from_bytes(0, 0, a.b.clone()),
            Segment::from_bytes(2, 3, b.bytes()),
        ];
        // ValidSnapshotEntries reads across the gap: the crc record still chains here
        // (nothing was really lost), so the seq gap is what etcd trips on.
        assert_eq!(fatal(&run(segs, Start::default())), "wal: file not found");
    }
}
