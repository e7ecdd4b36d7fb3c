//! Is a process using a member's files? The one check behind `check-member`'s `running`
//! verdict and every restore step that would move or write a data dir: etcd holds bbolt's
//! `flock` on `member/snap/db` and a write lock on its WAL segments (an open-file-description
//! lock on Linux, which `/proc/locks` shows without a pid); the pid is then found among the
//! processes that have the file open. A process that merely has a file under the dirs open
//! counts too where `any_open` asks for it (a restore must not write under anyone).

use std::path::{Path, PathBuf};

use super::Dirs;

/// A process that holds a member's file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    /// None when this user may not see which process it is (another user's, not root).
    pub pid: Option<u32>,
    /// The holder's command name (`/proc/PID/comm`), e.g. `etcd`.
    pub command: Option<String>,
    /// The file held.
    pub path: PathBuf,
    /// `FLOCK WRITE lock`, `OFDLCK WRITE lock`, or `an open file`.
    pub how: String,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.pid, &self.command) {
            (Some(pid), Some(c)) => write!(f, "{} held by pid {pid} ({c})", self.how),
            (Some(pid), None) => write!(f, "{} held by pid {pid}", self.how),
            (None, _) => write!(f, "{} held by a process this user cannot see", self.how),
        }
    }
}

impl Holder {
    /// What to do about it, for messages: stop that process.
    pub fn stop_hint(&self) -> String {
        match self.pid {
            Some(pid) => format!(
                "stop it first (its service, static pod or `kill -TERM {pid}`) and wait until pid {pid} has exited"
            ),
            None => "stop etcd on this node first (its service, static pod or process)".into(),
        }
    }
}

/// Who holds `dirs` (data dir and WAL dir), or None. With `any_open`, a process that has
/// any file under them open counts, not only a write lock.
pub fn holder(dirs: &Dirs, any_open: bool) -> Option<Holder> {
    let mut files = vec![dirs.snap_dir.join("db")];
    if let Ok(rd) = std::fs::read_dir(&dirs.wal_dir) {
        let mut wals: Vec<PathBuf> = rd
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "wal"))
            .collect();
        wals.sort();
        files.extend(wals);
    }
    for f in &files {
        if let Some(h) = held_file(f) {
            return Some(h);
        }
    }
    if !any_open {
        return None;
    }
    let roots: Vec<PathBuf> = [&dirs.data_dir, &dirs.wal_dir]
        .into_iter()
        .filter_map(|d| std::fs::canonicalize(d).ok())
        .collect();
    let (pid, path) = open_by(|t| roots.iter().any(|r| t.starts_with(r)))?;
    Some(Holder {
        pid: Some(pid),
        command: command_of(pid),
        path,
        how: "an open file".into(),
    })
}

/// Who holds a write lock on the file `path` (a member's db, a WAL segment), or None.
pub fn held_file(path: &Path) -> Option<Holder> {
    let lock = crate::io::write_lock(path)?;
    let pid = lock.pid.or_else(|| {
        let want = std::fs::canonicalize(path).ok()?;
        open_by(|t| t == want).map(|(pid, _)| pid)
    });
    Some(Holder {
        pid,
        command: pid.and_then(command_of),
        path: path.to_path_buf(),
        how: format!("{} WRITE lock", lock.kind),
    })
}

/// The first process (not this one) with an open file whose path `wanted` accepts, and that
/// path. Processes this user may not look into are skipped.
fn open_by(wanted: impl Fn(&Path) -> bool) -> Option<(u32, PathBuf)> {
    let me = std::process::id();
    let mut pids: Vec<u32> = std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .filter(|p| *p != me)
        .collect();
    pids.sort_unstable();
    pids.into_iter().find_map(|pid| {
        let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
        fds.flatten().find_map(|fd| {
            let t = std::fs::read_link(fd.path()).ok()?;
            wanted(&t).then_some((pid, t))
        })
    })
}

fn command_of(pid: u32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}
