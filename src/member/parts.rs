//! etcd's start-up path over a member's WAL and snap files, one function per step: segment
//! names, which snap file it loads, what it reads and what it skips, the membership the log
//! ends with, and the outcome (clean, repaired, refused). No file system access beyond the
//! segments' readers and the snap files already read.

use super::report::{empty_report, sort_problems, warning};
use super::{
    Dirs, Lost, MemberInfo, MemberReport, Problem, SegmentReport, Severity, SnapReport, Verdict,
};
use crate::format::etcd::{ClusterId, MemberId};
use crate::format::snap::SnapDir;
use crate::format::wal::{self, open::Start, Opened, Outcome, Scan};

/// Judge WAL segments and snap files.
pub fn check_parts(dirs: &Dirs, segs: &[wal::Segment], snapdir: &SnapDir) -> MemberReport {
    let mut r = empty_report(dirs, Verdict::Healthy);
    let scan = wal::scan(segs);
    let wal_dir = dirs.wal_dir.display().to_string();
    segment_names(&mut r, segs, &wal_dir);
    wal_facts(&mut r, segs, &scan, &wal_dir);
    let choice = choose_snapshot(&mut r, dirs, &scan, snapdir);
    let opened = wal::open(segs, &scan, r.snapshot);
    outside_start(&mut r, &scan, opened.start_file.unwrap_or(0), &wal_dir);
    r.last_index = opened.last_index;
    r.last_term = opened.last_term;
    r.hard_state = opened.hard_state;
    r.commit = opened.hard_state.commit;
    membership(&mut r, &scan, snapdir, choice.chosen, &wal_dir);
    outcome(&mut r, &scan, &opened, &wal_dir);
    // A fallback forced by broken snap files is the snap files' fault.
    if !choice.broken_tried.is_empty() {
        let forced = matches!(
            r.etcd_error.as_deref(),
            Some("wal: file not found" | "wal: snapshot not found")
        );
        if matches!(r.verdict, Verdict::Healthy | Verdict::TornTail)
            || (r.verdict == Verdict::CorruptWal && forced)
        {
            r.verdict = Verdict::CorruptSnap;
        }
    }
    sort_problems(&mut r.problems);
    r
}

/// Segment names: seq continuity (etcd checks it only from the file it starts at, but a
/// gap anywhere breaks the CRC chain that ValidSnapshotEntries follows).
fn segment_names(r: &mut MemberReport, segs: &[wal::Segment], wal_dir: &str) {
    let file_of = |name: &str| format!("{wal_dir}/{name}");
    for w in segs.windows(2) {
        if let [a, b] = w {
            if a.seq.checked_add(1) != Some(b.seq) {
                r.problems.push(Problem {
                    severity: Severity::Fatal,
                    file: file_of(&b.name),
                    offset: None,
                    record: None,
                    index: Some(b.index),
                    message: format!(
                        "segment sequence gap: {} is followed by {} (seq {} is missing)",
                        a.name,
                        b.name,
                        a.seq.wrapping_add(1)
                    ),
                    etcd_error: None,
                });
            }
        }
    }
    if let Some(first) = segs.first() {
        if first.seq != 0 && first.index == 0 {
            r.problems.push(warning(
                &file_of(&first.name),
                "first segment has index 0 but seq is not 0".into(),
            ));
        }
    }
}

/// Who wrote the log, its size, and each segment as read.
fn wal_facts(r: &mut MemberReport, segs: &[wal::Segment], scan: &Scan, wal_dir: &str) {
    r.member_id = scan.metadata.map(|m| MemberId(m.node_id));
    r.cluster_id = scan.metadata.map(|m| ClusterId(m.cluster_id));
    r.wal_records = scan.records;
    r.wal_entries = scan.entries;
    r.wal_bytes = scan.bytes;
    r.overwritten_entries = scan.overwritten;
    if scan.runs_truncated {
        r.problems.push(warning(
            wal_dir,
            format!(
                "more than {} breaks in the entry index sequence: the gap check covers only the first ones",
                wal::scan::MAX_RUNS
            ),
        ));
    }
    for (i, s) in segs.iter().enumerate() {
        let end = scan.files.iter().find(|f| f.seg == i);
        r.wal_segments.push(SegmentReport {
            name: s.name.clone(),
            seq: s.seq,
            first_index: s.index,
            size: s.size(),
            end: end.map_or(0, |e| e.end),
            records: end.map_or(0, |e| e.records),
        });
    }
}

/// Which snap files were tried before the one etcd loads (or none).
struct SnapChoice {
    chosen: Option<usize>,
    broken_tried: Vec<usize>,
}

/// Which snap file etcd loads: newest first, the first that reads and matches a WAL
/// snapshot record with index <= commit (ValidSnapshotEntries + LoadNewestAvailable).
/// Sets the report's snapshot and lists every snap file.
fn choose_snapshot(
    r: &mut MemberReport,
    dirs: &Dirs,
    scan: &Scan,
    snapdir: &SnapDir,
) -> SnapChoice {
    let valid = wal::valid_snapshots(scan);
    let wal_snaps: Vec<(u64, u64)> = match &valid {
        Ok(v) => v.iter().map(|s| (s.index, s.term)).collect(),
        Err(_) => Vec::new(),
    };
    let mut chosen: Option<usize> = None;
    let mut broken_tried: Vec<usize> = Vec::new();
    for (i, f) in snapdir.snaps.iter().enumerate() {
        match &f.result {
            Ok(m) if chosen.is_none() && wal_snaps.contains(&(m.index, m.term)) => chosen = Some(i),
            Ok(_) => {}
            Err(_) if chosen.is_none() => broken_tried.push(i),
            Err(_) => {}
        }
    }
    let snap_path = |name: &str| dirs.snap_dir.join(name).display().to_string();
    for (i, f) in snapdir.snaps.iter().enumerate() {
        let (ok, index, term, error) = match &f.result {
            Ok(m) => (true, Some(m.index), Some(m.term), None),
            Err(e) => (false, None, None, Some(e.to_string())),
        };
        r.snap_files.push(SnapReport {
            name: f.name.clone(),
            size: f.size,
            ok,
            index,
            term,
            error: error.clone(),
            chosen: chosen == Some(i),
        });
        if let Some(e) = error {
            let tried = broken_tried.contains(&i);
            r.problems.push(Problem {
                severity: if tried {
                    Severity::Repaired
                } else {
                    Severity::Warning
                },
                file: snap_path(&f.name),
                offset: None,
                record: None,
                index: f.name_index,
                message: if tried {
                    format!(
                        "{e}: etcd renames it to {}.broken and falls back to an older snapshot",
                        f.name
                    )
                } else {
                    format!("{e} (older than the snapshot etcd loads, so etcd never reads it)")
                },
                etcd_error: Some(e),
            });
        }
        if f.name_mismatch() {
            r.problems.push(warning(
                &snap_path(&f.name),
                "file name does not match the snapshot's own term/index".into(),
            ));
        }
    }
    let start = chosen
        .and_then(|i| snapdir.snaps.get(i))
        .and_then(|f| f.result.as_ref().ok())
        .map(|m| Start {
            index: m.index,
            term: m.term,
        })
        .unwrap_or_default();
    r.snapshot = start;
    r.snapshot_file = chosen
        .and_then(|i| snapdir.snaps.get(i))
        .map(|f| f.name.clone());
    if chosen.is_none() && !snapdir.snaps.is_empty() && valid.is_ok() {
        r.problems.push(warning(
            &dirs.snap_dir.display().to_string(),
            "no snap file matches a snapshot record in the WAL; etcd replays the WAL from the beginning".into(),
        ));
    }
    SnapChoice {
        chosen,
        broken_tried,
    }
}

/// Problems in files etcd does not read at start (before the one holding the snapshot):
/// they do not stop etcd, but say the disk or a copy went wrong.
fn outside_start(r: &mut MemberReport, scan: &Scan, first_read: usize, wal_dir: &str) {
    let file_of = |name: &str| format!("{wal_dir}/{name}");
    for (sem, at) in scan.semantic.iter().filter(|(_, at)| at.seg < first_read) {
        let what = match sem {
            wal::scan::Semantic::MetadataConflict => {
                "metadata differs from the first metadata record".to_string()
            }
            wal::scan::Semantic::BadEntry(e) => format!("entry does not decode: {e}"),
            wal::scan::Semantic::UnknownType(t) => format!("unknown record type {t}"),
        };
        r.problems.push(Problem {
            severity: Severity::Warning,
            file: file_of(&at.file),
            offset: Some(at.offset),
            record: Some(at.record),
            index: None,
            message: format!(
                "{what} (in a file etcd does not read at start-up, so it does not stop etcd)"
            ),
            etcd_error: None,
        });
    }
    for w in scan.runs.windows(2) {
        if let [a, b] = w {
            if b.seg < first_read && b.first > a.last.saturating_add(1) {
                r.problems.push(Problem {
                    severity: Severity::Warning,
                    file: file_of(&b.loc.file),
                    offset: Some(b.loc.offset),
                    record: Some(b.loc.record),
                    index: Some(b.first),
                    message: format!(
                        "entry index jumps from {} to {} (in a file etcd does not read at start-up)",
                        a.last, b.first
                    ),
                    etcd_error: None,
                });
            }
        }
    }
}

/// Membership after the snapshot, from committed conf changes; names and peer URLs from the
/// conf changes' member JSON.
fn membership(
    r: &mut MemberReport,
    scan: &Scan,
    snapdir: &SnapDir,
    chosen: Option<usize>,
    wal_dir: &str,
) {
    let start = r.snapshot;
    let snap_cs = scan
        .snapshots
        .iter()
        .rfind(|s| s.index == start.index)
        .and_then(|s| s.conf_state.clone())
        .or_else(|| {
            chosen
                .and_then(|i| snapdir.snaps.get(i))
                .and_then(|f| f.result.as_ref().ok())
                .map(|m| m.conf_state.clone())
        })
        .unwrap_or_default();
    let mut voters: Vec<u64> = snap_cs.voters.clone();
    let mut learners: Vec<u64> = snap_cs.learners.clone();
    for c in scan
        .conf_changes
        .iter()
        .filter(|c| c.index > start.index && c.index <= r.commit)
    {
        match c.change {
            "add-node" => {
                learners.retain(|&x| x != c.node_id);
                if !voters.contains(&c.node_id) {
                    voters.push(c.node_id);
                }
            }
            "add-learner-node"
                if !learners.contains(&c.node_id) && !voters.contains(&c.node_id) =>
            {
                learners.push(c.node_id);
            }
            "remove-node" => {
                voters.retain(|&x| x != c.node_id);
                learners.retain(|&x| x != c.node_id);
            }
            _ => {}
        }
    }
    voters.sort_unstable();
    learners.sort_unstable();
    r.voters = voters.iter().map(|&v| MemberId(v)).collect();
    r.learners = learners.iter().map(|&v| MemberId(v)).collect();
    for c in scan.conf_changes.iter().filter(|c| c.member.is_some()) {
        if let Some(m) = c.member.as_deref().and_then(parse_member_json) {
            r.members.retain(|x| x.id != m.id);
            r.members.push(m);
        }
    }
    if let Some(me) = scan.metadata.map(|m| m.node_id) {
        let known = !voters.is_empty() || !learners.is_empty();
        if known && !voters.contains(&me) && !learners.contains(&me) {
            r.problems.push(warning(
                wal_dir,
                format!(
                    "this member ({}) is not in the membership the log ends with: it was removed from the cluster; etcd starts but the cluster rejects it (\"the member has been permanently removed from the cluster\")",
                    MemberId(me)
                ),
            ));
        }
    }
}

/// etcd's verdict on reading the log from the snapshot: clean, a torn tail it cuts, or a
/// refusal; with what lies past the damage.
fn outcome(r: &mut MemberReport, scan: &Scan, opened: &Opened, wal_dir: &str) {
    let file_of = |name: &str| format!("{wal_dir}/{name}");
    let start = r.snapshot;
    // Lost entries beyond a stop.
    // Entries from the one after the last good entry up to the last salvaged one: this
    // includes the damaged record itself when it was an entry.
    let beyond = &scan.beyond;
    let good = last_good_index(scan).max(start.index);
    let lost = |_: u64| {
        let first = good.saturating_add(1);
        let (entries, first_index, last_index) = match beyond.last_index {
            Some(l) if l >= first => (l - first + 1, Some(first), Some(l)),
            _ => (0, None, None),
        };
        Lost {
            entries,
            first_index,
            last_index,
            complete: beyond.complete,
            records: beyond.records + 1,
            committed_up_to: beyond.commit.filter(|&c| c >= first),
        }
    };

    match &opened.outcome {
        Outcome::Clean => {}
        Outcome::Torn { at, message } => {
            r.verdict = Verdict::TornTail;
            // A decoding failure goes through Repair (logged as "repaired WAL ... unexpected
            // EOF"); garbage after a zero length field is zero-filled without a word.
            let etcd_says = if scan.stop.is_some() {
                "unexpected EOF (repaired)"
            } else {
                "none: etcd zero-fills the rest of the file silently"
            };
            r.etcd_error = Some(etcd_says.into());
            r.problems.push(Problem {
                severity: Severity::Repaired,
                file: file_of(&at.file),
                offset: Some(at.offset),
                record: Some(at.record),
                index: Some(opened.last_index.saturating_add(1)),
                message: message.clone(),
                etcd_error: Some(etcd_says.into()),
            });
            if scan.stop.is_some() || scan.beyond.records > 0 {
                r.lost = Some(lost(0));
            } else {
                r.lost = Some(Lost {
                    entries: 0,
                    first_index: None,
                    last_index: None,
                    complete: false,
                    records: 0,
                    committed_up_to: None,
                });
            }
        }
        Outcome::Fatal {
            at,
            etcd_error,
            message,
        } => {
            r.verdict = Verdict::CorruptWal;
            r.etcd_starts = false;
            r.etcd_error = Some(etcd_error.clone());
            let file = at
                .as_ref()
                .map(|a| file_of(&a.file))
                .unwrap_or_else(|| wal_dir.to_string());
            r.problems.push(Problem {
                severity: Severity::Fatal,
                file,
                offset: at.as_ref().map(|a| a.offset),
                record: at.as_ref().map(|a| a.record),
                index: at.as_ref().map(|_| last_good_index(scan).saturating_add(1)),
                message: message.clone(),
                etcd_error: Some(etcd_error.clone()),
            });
            if scan.stop.is_some() {
                r.lost = Some(lost(0));
            }
        }
    }
}

/// Index of the last entry read before the stop.
fn last_good_index(scan: &wal::Scan) -> u64 {
    scan.last_entry.as_ref().map_or(0, |(i, _, _)| *i)
}

/// `{"id":..,"peerURLs":[..],"name":..}` → MemberInfo.
fn parse_member_json(s: &str) -> Option<MemberInfo> {
    let v: serde_json::Value = serde_json::from_str(s).ok()?;
    let id = v.get("id")?.as_u64()?;
    let peer_urls = v
        .get("peerURLs")
        .and_then(|p| p.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    Some(MemberInfo {
        id: MemberId(id),
        name: v.get("name").and_then(|n| n.as_str()).map(str::to_owned),
        peer_urls,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::snap;
    use crate::format::wal::record::{encode as e, METADATA, SNAPSHOT, STATE};
    use crate::format::wal::Segment;
    use crate::member::Dirs;
    use std::path::{Path, PathBuf};

    use crate::format::wal::record::TestLog as W;

    fn snapdir(index: u64, term: u64) -> SnapDir {
        let bytes = snap::encode(index, term, &[7], b"{}");
        SnapDir {
            snaps: vec![snap::SnapFile {
                name: format!("{term:016x}-{index:016x}.snap"),
                path: PathBuf::new(),
                size: bytes.len() as u64,
                name_term: Some(term),
                name_index: Some(index),
                result: snap::decode(&bytes),
            }],
            ..SnapDir::default()
        }
    }

    fn dirs() -> Dirs {
        Dirs::resolve(Path::new("/x"), None)
    }

    #[test]
    fn problems_before_the_start_file_are_warnings() {
        let mut a = W::new(0);
        a.rec(METADATA, &e::metadata(7, 9))
            .rec(SNAPSHOT, &e::snapshot(0, 0, &[]));
        a.entry(1, 1)
            .entry(1, 2)
            .rec(METADATA, &e::metadata(8, 9))
            .entry(1, 3);
        a.rec(STATE, &e::hard_state(1, 7, 3));
        let mut b = W::new(a.crc);
        b.rec(METADATA, &e::metadata(7, 9))
            .rec(STATE, &e::hard_state(1, 7, 3));
        b.entry(1, 4)
            .entry(1, 5)
            .rec(STATE, &e::hard_state(1, 7, 5));
        b.rec(SNAPSHOT, &e::snapshot(5, 1, &[7]));
        let mut tail = b.b.clone();
        tail.resize(tail.len() + 1024, 0);
        let segs = vec![
            Segment::from_bytes(0, 0, a.b.clone()),
            Segment::from_bytes(1, 4, tail),
        ];
        let r = check_parts(&dirs(), &segs, &snapdir(5, 1));
        assert_eq!(r.verdict, Verdict::Healthy, "{:?}", r.problems);
        assert_eq!(r.snapshot.index, 5);
        assert!(r
            .problems
            .iter()
            .any(|p| p.severity == Severity::Warning && p.message.contains("metadata differs")));
        // Started from the beginning instead (no snap file), the conflict is fatal.
        let r = check_parts(&dirs(), &segs, &SnapDir::default());
        assert_eq!(r.verdict, Verdict::CorruptWal);
        assert_eq!(
            r.etcd_error.as_deref(),
            Some("wal: conflicting metadata found")
        );
    }
}
