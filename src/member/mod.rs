//! Verdicts on a member's data dir: WAL, snap files and db checked offline, and a prediction
//! of what etcd 3.5.1 does when started on the dir (formats §5.7, §6, §7.4), with the next
//! step in words (field notes §1, §2). Several dirs are ranked to pick the best survivor.

pub mod advice;
pub mod db;
pub mod rank;

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::format::snap::{self, SnapDir};
use crate::format::wal::{self, open::Start, Outcome};

/// The verdict on one data dir (interface.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    Healthy,
    TornTail,
    CorruptDb,
    CorruptSnap,
    CorruptWal,
    Missing,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Healthy => "healthy",
            Verdict::TornTail => "torn-tail",
            Verdict::CorruptWal => "corrupt-wal",
            Verdict::CorruptSnap => "corrupt-snap",
            Verdict::CorruptDb => "corrupt-db",
            Verdict::Missing => "missing",
        }
    }
    pub fn is_corrupt(self) -> bool {
        matches!(
            self,
            Verdict::CorruptWal | Verdict::CorruptSnap | Verdict::CorruptDb
        )
    }
}

/// How serious a problem is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Severity {
    /// etcd refuses to start because of it.
    Fatal,
    /// etcd repairs it by itself (torn tail, broken snap file set aside).
    Repaired,
    /// Worth knowing; etcd does not care.
    Warning,
}

/// One problem found (interface.md: `file`, `offset`, `record`, `message`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub severity: Severity,
    pub file: String,
    /// Byte offset of the bad record's length field (WAL), when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    /// 1-based record number within the file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record: Option<u64>,
    /// Raft index of (or expected at) the bad record.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<u64>,
    pub message: String,
    /// The error etcd logs for it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub etcd_error: Option<String>,
}

/// Entries that etcd will not have after starting (torn tail) or that lie past the damage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Lost {
    pub entries: u64,
    pub first_index: Option<u64>,
    pub last_index: Option<u64>,
    /// The count is exact (false: salvage could not follow every frame; at least this many).
    /// A damaged record that was cut short or does not decode is counted only when a later
    /// entry shows its index.
    pub complete: bool,
    /// Records (of any type) from the damaged one to the end, the damaged one included.
    pub records: u64,
    /// A HardState past the damage says entries up to here were committed (this member had
    /// acknowledged them; other members hold them).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub committed_up_to: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SegmentReport {
    pub name: String,
    pub seq: u64,
    pub first_index: u64,
    pub size: u64,
    /// Offset just past the last good record.
    pub end: u64,
    pub records: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct SnapReport {
    pub name: String,
    pub size: u64,
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub term: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The one etcd loads.
    pub chosen: bool,
}

/// A member as named in the log (conf change context).
#[derive(Debug, Clone, Serialize)]
pub struct MemberInfo {
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub peer_urls: Vec<String>,
}

/// Everything known about one data dir.
#[derive(Debug, Clone, Serialize)]
pub struct MemberReport {
    pub data_dir: String,
    pub wal_dir: String,
    pub verdict: Verdict,
    /// Prediction: etcd starts on this dir as it is (possibly after repairing it itself).
    pub etcd_starts: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub etcd_error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub member_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster_id: Option<String>,
    /// Last raft index etcd will have (after any repair).
    pub last_index: u64,
    pub last_term: u64,
    /// HardState commit (after any repair).
    pub commit: u64,
    pub hard_state: wal::record::HardState,
    /// The snapshot etcd starts from (index 0: none, the WAL from the beginning).
    pub snapshot: Start,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot_file: Option<String>,
    pub wal_segments: Vec<SegmentReport>,
    pub wal_records: u64,
    pub wal_entries: u64,
    pub wal_bytes: u64,
    /// Entries overwritten by a later leader (uncommitted entries replaced; normal).
    pub overwritten_entries: u64,
    pub snap_files: Vec<SnapReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub db: Option<db::DbCheck>,
    /// Voters (and learners) after the chosen snapshot and committed conf changes.
    pub voters: Vec<String>,
    pub learners: Vec<String>,
    pub members: Vec<MemberInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lost: Option<Lost>,
    /// The db's consistent index is this far beyond the WAL's last index (see problems).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub db_ahead_by: Option<u64>,
    pub problems: Vec<Problem>,
    pub next_steps: Vec<String>,
}

/// Where a member keeps its files.
#[derive(Debug, Clone)]
pub struct Dirs {
    pub data_dir: PathBuf,
    pub wal_dir: PathBuf,
    pub snap_dir: PathBuf,
}

impl Dirs {
    /// `DATA_DIR/member/{wal,snap}`; a `member` dir itself is accepted too.
    pub fn resolve(data_dir: &Path, wal_dir: Option<&Path>) -> Dirs {
        let member = if data_dir.join("member").is_dir() || !data_dir.join("wal").is_dir() {
            data_dir.join("member")
        } else {
            data_dir.to_path_buf()
        };
        Dirs {
            data_dir: data_dir.to_path_buf(),
            wal_dir: wal_dir.map_or_else(|| member.join("wal"), Path::to_path_buf),
            snap_dir: member.join("snap"),
        }
    }
}

fn hex(id: u64) -> String {
    format!("{id:x}")
}

fn missing(dirs: &Dirs, message: String) -> MemberReport {
    let mut r = empty_report(dirs, Verdict::Missing);
    r.etcd_starts = false;
    r.problems.push(Problem {
        severity: Severity::Fatal,
        file: dirs.wal_dir.display().to_string(),
        offset: None,
        record: None,
        index: None,
        message,
        etcd_error: None,
    });
    r.next_steps = advice::next_steps(&r);
    r
}

fn empty_report(dirs: &Dirs, verdict: Verdict) -> MemberReport {
    MemberReport {
        data_dir: dirs.data_dir.display().to_string(),
        wal_dir: dirs.wal_dir.display().to_string(),
        verdict,
        etcd_starts: true,
        etcd_error: None,
        member_id: None,
        cluster_id: None,
        last_index: 0,
        last_term: 0,
        commit: 0,
        hard_state: Default::default(),
        snapshot: Start::default(),
        snapshot_file: None,
        wal_segments: Vec::new(),
        wal_records: 0,
        wal_entries: 0,
        wal_bytes: 0,
        overwritten_entries: 0,
        snap_files: Vec::new(),
        db: None,
        voters: Vec::new(),
        learners: Vec::new(),
        members: Vec::new(),
        lost: None,
        db_ahead_by: None,
        problems: Vec::new(),
        next_steps: Vec::new(),
    }
}

/// What to check.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Walk every page of the db with the strict bbolt checker (otherwise: metas and etcd's
    /// small buckets only).
    pub db_walk: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options { db_walk: true }
    }
}

/// Check one member data dir.
pub fn check_dir(dirs: &Dirs, opts: Options) -> MemberReport {
    if !dirs.data_dir.exists() {
        return missing(dirs, format!("{} does not exist", dirs.data_dir.display()));
    }
    if std::fs::read_dir(&dirs.data_dir).is_err() {
        return missing(dirs, format!("{} cannot be read", dirs.data_dir.display()));
    }
    if !dirs.wal_dir.is_dir() {
        return missing(
            dirs,
            format!(
                "no WAL directory at {}: etcd would treat this as a brand-new member",
                dirs.wal_dir.display()
            ),
        );
    }
    let listing = match wal::list_dir(&dirs.wal_dir) {
        Ok(l) => l,
        Err(e) => return missing(dirs, format!("cannot read the WAL directory: {e}")),
    };
    if listing.segments.is_empty() {
        return missing(
            dirs,
            "the WAL directory holds no *.wal file: etcd would treat this as a brand-new member"
                .into(),
        );
    }
    let snapdir = if dirs.snap_dir.is_dir() {
        snap::read_dir(&dirs.snap_dir).unwrap_or_default()
    } else {
        SnapDir::default()
    };
    let mut r = check_parts(dirs, &listing.segments, &snapdir);
    for name in &listing.ignored {
        let path = dirs.wal_dir.join(name).display().to_string();
        if name.ends_with(".wal.broken") {
            r.problems.push(warning(
                &path,
                "left by an earlier repair: etcd already cut a torn tail from this file once (the copy holds what was cut)".into(),
            ));
        } else if !name.ends_with(".tmp") {
            r.problems.push(warning(
                &path,
                "not a WAL segment name; etcd ignores it".into(),
            ));
        }
    }
    for name in snapdir.other.iter().filter(|n| n.ends_with(".broken")) {
        r.problems.push(warning(
            &dirs.snap_dir.join(name).display().to_string(),
            "a snap file etcd found damaged earlier and set aside".into(),
        ));
    }
    // The db.
    match &snapdir.db {
        Some(p) => match crate::io::FileReader::open(p) {
            Ok(f) => {
                let c = db::check(&f, opts.db_walk);
                for w in &c.warnings {
                    r.problems
                        .push(warning(&p.display().to_string(), w.clone()));
                }
                for e in &c.fatal {
                    r.problems.push(Problem {
                        severity: Severity::Fatal,
                        file: p.display().to_string(),
                        offset: None,
                        record: None,
                        index: None,
                        message: e.clone(),
                        etcd_error: Some(
                            "bbolt cannot open this db or panics walking it (freepages)".into(),
                        ),
                    });
                }
                db_invariants(&mut r, &c, &snapdir, p);
                // Names and peer URLs for the next steps when the WAL no longer holds the
                // conf changes (older segments purged).
                for (id, name, urls) in &c.member_infos {
                    if !r.members.iter().any(|m| m.id == hex(*id)) {
                        r.members.push(MemberInfo {
                            id: hex(*id),
                            name: (!name.is_empty()).then(|| name.clone()),
                            peer_urls: urls.clone(),
                        });
                    }
                }
                r.db = Some(c);
            }
            Err(e) => r
                .problems
                .push(fatal_db(p, format!("cannot open the db: {e}"))),
        },
        None => {
            let p = dirs.snap_dir.join("db");
            if r.snapshot.index > 0 && !snapdir.snap_dbs.iter().any(|(i, _)| *i >= r.snapshot.index)
            {
                r.problems.push(fatal_db(
                    &p,
                    "member/snap/db is missing: etcd would create an empty one and lose all keys up to the snapshot".into(),
                ));
            } else {
                r.problems
                    .push(warning(&p.display().to_string(), "no db file".into()));
            }
        }
    }
    finish(&mut r);
    r
}

/// formats §7.4: the db against the WAL and the snapshot etcd starts from.
fn db_invariants(r: &mut MemberReport, c: &db::DbCheck, snapdir: &SnapDir, p: &Path) {
    let file = p.display().to_string();
    let Some(ci) = c.consistent_index else {
        return;
    };
    let s = r.snapshot.index;
    if ci < s && r.verdict != Verdict::CorruptWal {
        let want = format!("{s:016x}.snap.db");
        if !snapdir.snap_dbs.iter().any(|(_, n)| *n == want) {
            r.problems.push(Problem {
                severity: Severity::Fatal,
                file,
                offset: None,
                record: None,
                index: Some(s),
                message: format!(
                    "the db's consistent index {ci} is older than the snapshot etcd starts from (index {s}) and {want} is missing: the db and the WAL are not from the same moment (a copy taken while etcd ran?)"
                ),
                etcd_error: Some(
                    "recovering backend from snapshot error: failed to find database snapshot file (snap: snapshot file doesn't exist)".into(),
                ),
            });
            return;
        }
    }
    if ci > r.last_index && r.verdict != Verdict::CorruptWal {
        r.db_ahead_by = Some(ci - r.last_index);
        r.problems.push(warning(
            &file,
            format!(
                "the db has applied raft index {ci}, but the WAL etcd reads ends at {}: the backend will skip the next {} entries written here as already applied, so requests time out and this member's keys diverge until the log passes {ci} (the db and WAL are from different moments, or the lost WAL tail had been applied)",
                r.last_index,
                ci - r.last_index
            ),
        ));
    }
    if let Some(t) = c.term {
        if t > r.hard_state.term && r.hard_state.term > 0 {
            r.problems.push(warning(
                &file,
                format!(
                    "the db's term {t} is above the WAL's HardState term {}",
                    r.hard_state.term
                ),
            ));
        }
    }
    if let Some(me) = r
        .member_id
        .as_ref()
        .and_then(|m| u64::from_str_radix(m, 16).ok())
    {
        if !c.member_ids.is_empty() && !c.member_ids.contains(&me) {
            r.problems.push(warning(
                &file,
                format!("this member ({me:x}) is not in the db's members bucket"),
            ));
        }
    }
}

fn fatal_db(p: &Path, message: String) -> Problem {
    Problem {
        severity: Severity::Fatal,
        file: p.display().to_string(),
        offset: None,
        record: None,
        index: None,
        message,
        etcd_error: None,
    }
}

fn warning(file: &str, message: String) -> Problem {
    Problem {
        severity: Severity::Warning,
        file: file.to_string(),
        offset: None,
        record: None,
        index: None,
        message,
        etcd_error: None,
    }
}

/// Judge WAL segments and snap files (no file system access beyond the segments' readers).
pub fn check_parts(dirs: &Dirs, segs: &[wal::Segment], snapdir: &SnapDir) -> MemberReport {
    let mut r = empty_report(dirs, Verdict::Healthy);
    let scan = wal::scan(segs);
    let wal_dir = dirs.wal_dir.display().to_string();
    let file_of = |name: &str| format!("{wal_dir}/{name}");

    // Segment names: seq continuity (etcd checks it only from the file it starts at, but a
    // gap anywhere breaks the CRC chain that ValidSnapshotEntries follows).
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

    r.member_id = scan.metadata.map(|m| hex(m.node_id));
    r.cluster_id = scan.metadata.map(|m| hex(m.cluster_id));
    r.wal_records = scan.records;
    r.wal_entries = scan.entries;
    r.wal_bytes = scan.bytes;
    r.overwritten_entries = scan.overwritten;
    if scan.runs_truncated {
        r.problems.push(warning(
            &wal_dir,
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

    // Which snap file etcd loads: newest first, the first that reads and matches a WAL
    // snapshot record with index <= commit (ValidSnapshotEntries + LoadNewestAvailable).
    let valid = wal::valid_snapshots(&scan);
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

    let opened = wal::open(segs, &scan, start);
    // Problems in files etcd does not read at start (before the one holding the snapshot):
    // they do not stop etcd, but say the disk or a copy went wrong.
    let first_read = opened.start_file.unwrap_or(0);
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
    r.last_index = opened.last_index;
    r.last_term = opened.last_term;
    r.hard_state = opened.hard_state;
    r.commit = opened.hard_state.commit;

    // Membership after the snapshot, from committed conf changes.
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
    r.voters = voters.iter().map(|&v| hex(v)).collect();
    r.learners = learners.iter().map(|&v| hex(v)).collect();
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
                &wal_dir,
                format!(
                    "this member ({}) is not in the membership the log ends with: it was removed from the cluster; etcd starts but the cluster rejects it (\"the member has been permanently removed from the cluster\")",
                    hex(me)
                ),
            ));
        }
    }

    // Lost entries beyond a stop.
    // Entries from the one after the last good entry up to the last salvaged one: this
    // includes the damaged record itself when it was an entry.
    let beyond = &scan.beyond;
    let good = last_good_index(&scan).max(start.index);
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
                .unwrap_or_else(|| wal_dir.clone());
            r.problems.push(Problem {
                severity: Severity::Fatal,
                file,
                offset: at.as_ref().map(|a| a.offset),
                record: at.as_ref().map(|a| a.record),
                index: at
                    .as_ref()
                    .map(|_| last_good_index(&scan).saturating_add(1)),
                message: message.clone(),
                etcd_error: Some(etcd_error.clone()),
            });
            if scan.stop.is_some() {
                r.lost = Some(lost(0));
            }
            // A fallback forced by broken snap files is the snap files' fault.
            if !broken_tried.is_empty()
                && matches!(
                    etcd_error.as_str(),
                    "wal: file not found" | "wal: snapshot not found"
                )
            {
                r.verdict = Verdict::CorruptSnap;
            }
        }
    }
    if r.verdict == Verdict::Healthy && !broken_tried.is_empty() {
        r.verdict = Verdict::CorruptSnap;
    }
    if r.verdict == Verdict::TornTail && !broken_tried.is_empty() {
        r.verdict = Verdict::CorruptSnap;
    }
    // Sort problems: fatal first, then by file/offset.
    r.problems.sort_by_key(|p| match p.severity {
        Severity::Fatal => 0,
        Severity::Repaired => 1,
        Severity::Warning => 2,
    });
    r
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
        id: hex(id),
        name: v.get("name").and_then(|n| n.as_str()).map(str::to_owned),
        peer_urls,
    })
}

/// Final verdict adjustments after the db check, and the next steps.
fn finish(r: &mut MemberReport) {
    let db_fatal = r
        .problems
        .iter()
        .any(|p| p.severity == Severity::Fatal && p.file.ends_with("/db"));
    if db_fatal && matches!(r.verdict, Verdict::Healthy | Verdict::TornTail) {
        r.verdict = Verdict::CorruptDb;
        r.etcd_starts = false;
        r.etcd_error = r
            .problems
            .iter()
            .find(|p| p.severity == Severity::Fatal && p.file.ends_with("/db"))
            .and_then(|p| p.etcd_error.clone());
    }
    r.problems.sort_by_key(|p| match p.severity {
        Severity::Fatal => 0,
        Severity::Repaired => 1,
        Severity::Warning => 2,
    });
    r.next_steps = advice::next_steps(r);
}

/// Check several dirs (the same `--wal-dir` applies only when one dir is given).
pub fn check_dirs(
    data_dirs: &[PathBuf],
    wal_dir: Option<&Path>,
    opts: Options,
) -> Vec<MemberReport> {
    data_dirs
        .iter()
        .map(|d| {
            let w = if data_dirs.len() == 1 { wal_dir } else { None };
            check_dir(&Dirs::resolve(d, w), opts)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::wal::record::{encode as e, METADATA, SNAPSHOT, STATE};
    use crate::format::wal::Segment;

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
