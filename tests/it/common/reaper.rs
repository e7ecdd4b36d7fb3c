//! What a test binary leaves behind when it exits.
//!
//! Clusters and servers shared by the tests of one binary live in statics, and Rust never
//! drops a static: without this, their etcd processes outlive the binary and their temp dirs
//! (64 MB of preallocated WAL per member) stay on disk until the whole suite ends. An
//! `atexit` handler kills this process's remaining children and removes the dirs registered
//! here. The test harness leaves through `exit` on success and on failure, so it always runs.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, Once};

static DIRS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// Remove `dir` when the test binary exits, if it is still there then.
pub fn remove_at_exit(dir: &Path) {
    install();
    if let Ok(mut dirs) = DIRS.lock() {
        dirs.push(dir.to_path_buf());
    }
}

/// Kill this process's children when the test binary exits.
pub fn install() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: `reap` is an `extern "C" fn()` that never unwinds.
        unsafe {
            libc::atexit(reap);
        }
    });
}

extern "C" fn reap() {
    let _ = std::panic::catch_unwind(|| {
        kill_children();
        let dirs = match DIRS.lock() {
            Ok(d) => d.clone(),
            Err(p) => p.into_inner().clone(),
        };
        for d in dirs {
            let _ = std::fs::remove_dir_all(d);
        }
    });
}

/// SIGKILL every process whose parent is this one (etcd members, S3 servers), then reap them.
fn kill_children() {
    let me = std::process::id();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return;
    };
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // The command name is in parentheses and may hold spaces: fields start after ')'.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|s| s.parse::<u32>().ok());
        if ppid == Some(me) {
            // SAFETY: plain syscalls on a pid that is our own child.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, std::ptr::null_mut(), 0);
            }
        }
    }
}
