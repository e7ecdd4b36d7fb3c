//! Before judging a data dir: is it there, can this user read it, and is a running etcd
//! writing to it? Each answer is its own verdict, because each calls for a different act:
//! only a dir that is really gone (ENOENT) is `missing`; a dir this user may not read is
//! `unreadable` (advising to replace that member would destroy a healthy one); a dir a live
//! etcd holds is `running` (its files change while they are read, so any verdict on them
//! would be a guess).

use std::io::ErrorKind;
use std::path::Path;

use super::report::{empty_report, sort_problems};
use super::{advice, Dirs, MemberReport, Problem, Severity, Verdict};
use crate::format::snap::{self, SnapDir};
use crate::format::wal::{self, decode::Listing};

/// A dir that will not be judged, as the report that says why.
pub(crate) type NotJudged = Box<MemberReport>;

/// The WAL segments and snap files of a dir that can be judged, or the report that says why
/// it cannot. `refuse_running`: a dir a running etcd holds is not judged (`wal dump` reads a
/// live log anyway: showing records is not judging them).
pub(crate) fn open_dir(dirs: &Dirs, refuse_running: bool) -> Result<(Listing, SnapDir), NotJudged> {
    if let Err(e) = std::fs::metadata(&dirs.data_dir) {
        return Err(io_report(dirs, &dirs.data_dir, &e, "does not exist"));
    }
    if let Err(e) = std::fs::read_dir(&dirs.data_dir) {
        return Err(io_report(dirs, &dirs.data_dir, &e, "does not exist"));
    }
    if refuse_running {
        if let Some(h) = super::holder::holder(dirs, false) {
            return Err(running(dirs, &h.path, &h.to_string()));
        }
    }
    match std::fs::metadata(&dirs.wal_dir) {
        Ok(md) if md.is_dir() => {}
        Ok(_) => {
            return Err(missing(
                dirs,
                format!(
                    "{} is not a directory: etcd would not find a WAL here",
                    dirs.wal_dir.display()
                ),
            ))
        }
        Err(e) => {
            return Err(io_report(
                dirs,
                &dirs.wal_dir,
                &e,
                "does not exist: no WAL, so etcd would treat this as a brand-new member",
            ))
        }
    }
    let listing = wal::list_dir(&dirs.wal_dir).map_err(|e| lib_report(dirs, &e.into()))?;
    if listing.segments.is_empty() {
        return Err(missing(
            dirs,
            "the WAL directory holds no *.wal file: etcd would treat this as a brand-new member"
                .into(),
        ));
    }
    let snapdir = match snap::read_dir(&dirs.snap_dir) {
        Ok(s) => s,
        Err(e) if e.source.kind() == ErrorKind::NotFound => SnapDir::default(),
        Err(e) => return Err(lib_report(dirs, &e.into())),
    };
    Ok((listing, snapdir))
}

/// The report for a file or dir that could not be read: `missing` only for ENOENT.
pub(crate) fn io_report(dirs: &Dirs, path: &Path, e: &std::io::Error, absent: &str) -> NotJudged {
    if e.kind() == ErrorKind::NotFound {
        missing(dirs, format!("{} {absent}", path.display()))
    } else {
        unreadable(dirs, path, e)
    }
}

/// A library error met while opening the dir's files.
fn lib_report(dirs: &Dirs, e: &crate::Error) -> NotJudged {
    match e {
        crate::Error::Io { path, source } => io_report(dirs, path, source, "does not exist"),
        other => unreadable_with(dirs, &dirs.wal_dir, other.to_string()),
    }
}

/// What to say about a path this user cannot read.
pub(crate) fn unreadable_message(path: &Path, e: &std::io::Error) -> String {
    if e.kind() == ErrorKind::PermissionDenied {
        format!(
            "permission denied reading {}: run as the etcd user or root",
            path.display()
        )
    } else {
        format!(
            "cannot read {}: {}",
            path.display(),
            crate::error::io_words(e)
        )
    }
}

pub(crate) fn unreadable(dirs: &Dirs, path: &Path, e: &std::io::Error) -> NotJudged {
    unreadable_with(dirs, path, unreadable_message(path, e))
}

fn unreadable_with(dirs: &Dirs, path: &Path, message: String) -> NotJudged {
    not_judged(dirs, Verdict::Unreadable, path, message)
}

fn missing(dirs: &Dirs, message: String) -> NotJudged {
    not_judged(dirs, Verdict::Missing, &dirs.wal_dir, message)
}

fn running(dirs: &Dirs, file: &Path, holder: &str) -> NotJudged {
    not_judged(
        dirs,
        Verdict::Running,
        file,
        format!(
            "etcd is running on this data dir ({holder} on {}); a live member's files change under us: stop it first, or use `lifeboat status`",
            file.display()
        ),
    )
}

fn not_judged(dirs: &Dirs, verdict: Verdict, path: &Path, message: String) -> NotJudged {
    let mut r = empty_report(dirs, verdict);
    r.etcd_starts = false;
    r.problems.push(Problem {
        severity: Severity::Fatal,
        file: path.display().to_string(),
        offset: None,
        record: None,
        index: None,
        message,
        etcd_error: None,
    });
    sort_problems(&mut r.problems);
    r.next_steps = advice::next_steps(&r);
    Box::new(r)
}
