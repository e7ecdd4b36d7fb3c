//! etcd 3.6.16 and 3.7.3, built from the released Go modules by scripts/etcd-go.sh into
//! `<cache>/etcd-<version>/` (cache = `LIFEBOAT_ETCD_CACHE` or `~/.cache/lifeboat`), or taken
//! from `LIFEBOAT_ETCD36_DIR` / `LIFEBOAT_ETCD37_DIR`.
//!
//! Same rule as the other releases: a missing binary fails the test with the command that
//! builds it (never a silent skip, so CI runs them). The first use in a test binary logs the
//! version the binary reports, so a test log names the etcd it ran.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;

use super::Bins;

/// etcd 3.6.16 (server, etcdctl, etcdutl).
pub fn etcd36() -> Bins {
    go_built("3.6.16", "LIFEBOAT_ETCD36_DIR")
}

/// etcd 3.7.3 (server, etcdctl, etcdutl): no v2 store at all.
pub fn etcd37() -> Bins {
    go_built("3.7.3", "LIFEBOAT_ETCD37_DIR")
}

/// The etcd cache root shared with scripts/etcd-trixie.sh and scripts/etcd-go.sh.
pub fn cache_root() -> PathBuf {
    if let Some(d) = std::env::var_os("LIFEBOAT_ETCD_CACHE") {
        return PathBuf::from(d);
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into())).join(".cache")
        });
    base.join("lifeboat")
}

fn go_built(version: &'static str, env: &str) -> Bins {
    let dir = std::env::var_os(env)
        .map(PathBuf::from)
        .unwrap_or_else(|| cache_root().join(format!("etcd-{version}")));
    let bin = |n: &str| {
        let p = dir.join(n);
        assert!(
            p.is_file(),
            "{} not found: run scripts/setup.sh (scripts/etcd-go.sh {version}, needs Go >= 1.26)",
            p.display()
        );
        p
    };
    let bins = Bins {
        version,
        etcd: bin("etcd"),
        etcdctl: bin("etcdctl"),
        etcdutl: Some(bin("etcdutl")),
    };
    log_version_once(&bins);
    bins
}

fn log_version_once(bins: &Bins) {
    static LOGGED: Mutex<Vec<&'static str>> = Mutex::new(Vec::new());
    let mut logged = LOGGED.lock().unwrap_or_else(|e| e.into_inner());
    if logged.contains(&bins.version) {
        return;
    }
    logged.push(bins.version);
    let out = Command::new(&bins.etcd)
        .arg("--version")
        .output()
        .unwrap_or_else(|e| panic!("run {} --version: {e}", bins.etcd.display()));
    let text = String::from_utf8_lossy(&out.stdout);
    let first = text.lines().next().unwrap_or("");
    assert!(
        first.ends_with(bins.version),
        "{} reports {first:?}, expected {}: rebuild with scripts/etcd-go.sh",
        bins.etcd.display(),
        bins.version
    );
    eprintln!("etcd under test: {} ({first})", bins.etcd.display());
}
