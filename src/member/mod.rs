//! Verdicts on a member's data dir: WAL, snap files and db checked offline, and a prediction
//! of what etcd 3.5.1 does when started on the dir, with the next steps as commands to run
//! (docs/member-recovery.md). Several dirs are ranked to pick the best survivor.
//!
//! * [`access`]: missing, unreadable or held by a running etcd: not judged.
//! * [`holder`]: which process holds a data dir's files (check-member, restore).
//! * [`parts`]: etcd's start-up path over the WAL and snap files.
//! * [`invariants`]: the db, and the db against the WAL.
//! * [`report`]: the verdict and what the report holds; [`advice`]: the next steps.

mod access;
pub mod advice;
pub mod db;
pub mod holder;
mod invariants;
pub mod parts;
pub mod rank;
pub mod report;

use std::path::{Path, PathBuf};

pub use parts::check_parts;
pub use report::{
    Lost, MemberInfo, MemberReport, Problem, SegmentReport, Severity, SnapReport, Verdict,
};

use crate::format::snap::SnapDir;
use crate::format::wal::decode::Listing;
use report::{sort_problems, warning};

/// Where a member keeps its files.
#[derive(Debug, Clone)]
pub struct Dirs {
    pub data_dir: PathBuf,
    pub wal_dir: PathBuf,
    pub snap_dir: PathBuf,
}

impl Dirs {
    /// Where `wal dump` reads: `--wal-dir` when given; PATH itself when it holds `*.wal`
    /// segments (a WAL dir given directly; its snap files are then in the sibling `snap`);
    /// otherwise as [`Dirs::resolve`].
    pub fn locate(path: &Path, wal_dir: Option<&Path>) -> Dirs {
        if wal_dir.is_some() {
            return Dirs::resolve(path, wal_dir);
        }
        let holds_segments = std::fs::read_dir(path)
            .into_iter()
            .flatten()
            .flatten()
            .any(|e| {
                crate::format::wal::decode::parse_segment_name(&e.file_name().to_string_lossy())
                    .is_some()
            });
        if holds_segments {
            let member = path.parent().unwrap_or(path);
            return Dirs {
                data_dir: path.to_path_buf(),
                wal_dir: path.to_path_buf(),
                snap_dir: member.join("snap"),
            };
        }
        Dirs::resolve(path, None)
    }

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
    let (listing, snapdir) = match access::open_dir(dirs, true) {
        Ok(x) => x,
        Err(r) => return *r,
    };
    let mut r = check_parts(dirs, &listing.segments, &snapdir);
    set_aside_files(&mut r, dirs, &listing, &snapdir);
    if let Err(not_judged) = invariants::check_db(&mut r, dirs, &snapdir, opts.db_walk) {
        return *not_judged;
    }
    finish(&mut r);
    r
}

/// The WAL side of the verdict only (WAL and snap files, no db): what `wal dump` shares with
/// `check-member`, so both say the same about the same log. A dir a running etcd holds is
/// still read. `Err` when the dir is not judged (missing, unreadable).
pub fn check_wal(dirs: &Dirs) -> Result<(MemberReport, Listing), Box<MemberReport>> {
    let (listing, snapdir) = access::open_dir(dirs, false)?;
    let mut r = check_parts(dirs, &listing.segments, &snapdir);
    set_aside_files(&mut r, dirs, &listing, &snapdir);
    Ok((r, listing))
}

/// Files etcd (or an earlier repair) left beside the log: worth a warning, never fatal.
fn set_aside_files(r: &mut MemberReport, dirs: &Dirs, listing: &Listing, snapdir: &SnapDir) {
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
    sort_problems(&mut r.problems);
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

    /// `wal dump` accepts a data dir, a `member` dir or a WAL dir itself.
    #[test]
    fn locate_finds_the_wal_dir() {
        let tmp = std::env::temp_dir().join(format!("lifeboat-locate-{}", std::process::id()));
        let wal = tmp.join("d/member/wal");
        std::fs::create_dir_all(&wal).unwrap();
        std::fs::write(wal.join("0000000000000000-0000000000000000.wal"), b"").unwrap();
        for p in [tmp.join("d"), tmp.join("d/member"), wal.clone()] {
            let d = Dirs::locate(&p, None);
            assert_eq!(d.wal_dir, wal, "{}", p.display());
            assert_eq!(d.snap_dir, tmp.join("d/member/snap"), "{}", p.display());
        }
        let other = tmp.join("elsewhere");
        assert_eq!(Dirs::locate(&tmp.join("d"), Some(&other)).wal_dir, other);
        std::fs::remove_dir_all(&tmp).unwrap();
    }

    #[test]
    fn only_enoent_is_missing() {
        let tmp = std::env::temp_dir().join(format!("lifeboat-member-{}", std::process::id()));
        let dirs = Dirs::resolve(&tmp.join("nope"), None);
        let r = check_dir(&dirs, Options::default());
        assert_eq!(r.verdict, Verdict::Missing);
        let e = std::io::Error::from(std::io::ErrorKind::PermissionDenied);
        let r = access::io_report(&dirs, &dirs.data_dir, &e, "does not exist");
        assert_eq!(r.verdict, Verdict::Unreadable);
        assert!(r.problems[0]
            .message
            .ends_with("nope: run as the etcd user or root"));
        assert!(r.next_steps.iter().all(|s| !s.contains("member remove")));
    }
}
