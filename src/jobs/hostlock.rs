//! The host lock of one-shot backups: `lifeboat backup --config FILE` started by cron or a
//! timer must not overlap with the previous run of the same file on this host, whatever the
//! destinations (S3 has no writer lock). An `flock` on a file keyed by the config's path,
//! under `/run/lifeboat`, else `$XDG_RUNTIME_DIR/lifeboat`, else the temp directory; the
//! kernel releases it when the process dies, so a killed run never blocks the next.

use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::io::{wait_for_flock, FlockError};
use crate::{Error, Result};

const POLL: Duration = Duration::from_millis(200);

/// Held until dropped.
#[derive(Debug)]
pub struct HostLock {
    _file: File,
    pub path: PathBuf,
}

/// The first of the candidate directories that exists or can be made.
fn lock_dir() -> Option<PathBuf> {
    let mut candidates = vec![PathBuf::from("/run/lifeboat")];
    if let Some(x) = std::env::var_os("XDG_RUNTIME_DIR").filter(|x| !x.is_empty()) {
        candidates.push(PathBuf::from(x).join("lifeboat"));
    }
    // Per user: another user's directory in a shared /tmp would not be writable.
    candidates.push(std::env::temp_dir().join(format!("lifeboat-{}", own_uid())));
    candidates.into_iter().find(|d| {
        let made = fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(d)
            .is_ok();
        made && tempfile::tempfile_in(d).is_ok()
    })
}

fn own_uid() -> u32 {
    use std::os::unix::fs::MetadataExt;
    // The owner of our own /proc entry is our uid; no libc call needed.
    fs::metadata("/proc/self").map(|m| m.uid()).unwrap_or(0)
}

/// The lock file for a config path (canonical when it can be resolved).
pub fn lock_path(config: &Path) -> Option<PathBuf> {
    let canonical = fs::canonicalize(config).unwrap_or_else(|_| config.to_path_buf());
    let digest = Sha256::digest(canonical.as_os_str().as_encoded_bytes());
    Some(lock_dir()?.join(format!("backup-{}.lock", &hex::encode(digest)[..16])))
}

/// Take the host lock for `config`, waiting up to `wait` for a running backup of the same
/// file. Exit 1 (`Failed`) naming the holder when it does not free in time.
pub fn acquire(config: &Path, wait: Duration) -> Result<HostLock> {
    let Some(path) = lock_path(config) else {
        return Err(Error::Failed(
            "no directory for the host lock: /run/lifeboat, $XDG_RUNTIME_DIR and the temp directory are not writable".into(),
        ));
    };
    let io = |e: std::io::Error| Error::Io {
        path: path.clone(),
        source: e,
    };
    let since = crate::timestamp::Timestamp::now();
    let me = format!("pid {} since {since}", std::process::id());
    let on_wait = &mut |holder: &str| {
        tracing::warn!(
            "another backup of {} runs on this host ({holder}); waiting up to {}s",
            config.display(),
            wait.as_secs()
        );
    };
    let file = match wait_for_flock(&path, wait, POLL, &|f| holder(f, &path), on_wait, &me) {
        Ok(file) => file,
        Err(FlockError::Open(e) | FlockError::Lock(e)) => return Err(io(e)),
        Err(FlockError::Busy(holder)) => {
            return Err(Error::Busy(format!(
                "another `lifeboat backup --config {}` is running on this host ({holder}); gave up after {}s (--lock-timeout); lock {}",
                config.display(),
                wait.as_secs(),
                path.display()
            )))
        }
    };
    Ok(HostLock { _file: file, path })
}

/// Who holds it: what the holder wrote, else the kernel's view (`/proc/locks`).
fn holder(file: &mut File, path: &Path) -> String {
    let mut text = String::new();
    let _ = file
        .seek(SeekFrom::Start(0))
        .and_then(|_| file.take(256).read_to_string(&mut text));
    let text = text.trim();
    if text.starts_with("pid ") {
        return text.to_string();
    }
    crate::io::lock_holder(path).unwrap_or_else(|| "holder unknown".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_waits_then_fails_naming_the_first() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("c.toml");
        fs::write(&cfg, "").unwrap();
        let first = acquire(&cfg, Duration::ZERO).unwrap();
        // flock is per open file: a second open in this process contends like another run.
        let e = acquire(&cfg, Duration::from_millis(300)).unwrap_err();
        let msg = e.to_string();
        assert_eq!(e.exit_code(), crate::ExitCode::Failed);
        assert!(
            msg.contains(&format!("pid {}", std::process::id())) && msg.contains("--lock-timeout"),
            "{msg}"
        );
        drop(first);
        acquire(&cfg, Duration::ZERO).unwrap();
        // Another config file: another lock.
        let other = dir.path().join("d.toml");
        fs::write(&other, "").unwrap();
        let _a = acquire(&cfg, Duration::ZERO).unwrap();
        let _b = acquire(&other, Duration::ZERO).unwrap();
    }
}
