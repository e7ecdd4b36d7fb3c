//! The db (`member/snap/db`) read as bbolt and etcd would, then held against the WAL and the
//! snapshot etcd starts from (formats §7.4): a db from another moment than the log makes etcd
//! refuse to start, or start and silently skip entries.

use std::path::Path;

use super::access::{self, NotJudged};
use super::report::{fatal_db, warning};
use super::{db, Dirs, MemberInfo, MemberReport, Problem, Severity, Verdict};
use crate::format::etcd::MemberId;
use crate::format::snap::SnapDir;

/// Check the db and its agreement with the WAL; `walk`: every page, not only the metas and
/// etcd's small buckets. A db this user cannot read stops the check (`unreadable`).
pub(crate) fn check_db(
    r: &mut MemberReport,
    dirs: &Dirs,
    snapdir: &SnapDir,
    walk: bool,
) -> Result<(), NotJudged> {
    match &snapdir.db {
        Some(p) => match crate::io::FileReader::open(p) {
            Ok(f) => {
                let c = db::check(&f, walk);
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
                db_invariants(r, &c, snapdir, p);
                // Names and peer URLs for the next steps when the WAL no longer holds the
                // conf changes (older segments purged).
                for (id, name, urls) in &c.member_infos {
                    if !r.members.iter().any(|m| m.id == MemberId(*id)) {
                        r.members.push(MemberInfo {
                            id: MemberId(*id),
                            name: (!name.is_empty()).then(|| name.clone()),
                            peer_urls: urls.clone(),
                        });
                    }
                }
                r.db = Some(c);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => r
                .problems
                .push(fatal_db(p, format!("cannot open the db: {e}"))),
            Err(e) => return Err(access::unreadable(dirs, p, &e)),
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
    Ok(())
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
    if let Some(me) = r.member_id.map(|m| m.0) {
        if !c.member_ids.is_empty() && !c.member_ids.contains(&me) {
            r.problems.push(warning(
                &file,
                format!("this member ({me:x}) is not in the db's members bucket"),
            ));
        }
    }
}
