//! Which etcd server `restore test` boots: `--etcd PATH` when given; otherwise the release
//! the backup was taken from, found among `etcd` on PATH and the per-release dirs of the
//! etcd cache (`<cache>/etcd-<version>/etcd`, where scripts/etcd-go.sh builds them; cache =
//! `LIFEBOAT_ETCD_CACHE`, or `$XDG_CACHE_HOME/lifeboat`, or `~/.cache/lifeboat`).
//!
//! Preference: the backup's exact release; else the newest patch of its minor version;
//! else `etcd` on PATH (which the caller then checks against the backup's storage version:
//! newer is an upgrade and fine, older is refused).

use std::path::{Path, PathBuf};

use super::selftest::{booted_version, major_minor};
use crate::{Error, Result};

/// The etcd to boot and its version (`etcd --version`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chosen {
    pub path: PathBuf,
    pub version: String,
}

/// The etcd cache root shared with scripts/etcd-go.sh and scripts/etcd-trixie.sh.
fn cache_root() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("LIFEBOAT_ETCD_CACHE") {
        return Some(PathBuf::from(d));
    }
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME") {
        return Some(PathBuf::from(d).join("lifeboat"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/lifeboat"))
}

/// `etcd` in the first PATH directory that has it.
fn on_path() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("etcd"))
        .find(|p| p.is_file())
}

/// Every etcd server binary lifeboat may boot: PATH's first, then the cache's, sorted.
fn candidates() -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = on_path().into_iter().collect();
    let Some(root) = cache_root() else {
        return out;
    };
    let Ok(dir) = std::fs::read_dir(&root) else {
        return out;
    };
    let mut cached: Vec<PathBuf> = dir
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("etcd-"))
        .flat_map(|e| [e.path().join("etcd"), e.path().join("usr/bin/etcd")])
        .filter(|p| p.is_file())
        .collect();
    cached.sort();
    out.extend(cached);
    out
}

/// `(major, minor, patch)`, patch 0 when it does not parse.
fn triple(v: &str) -> Option<(u32, u32, u32)> {
    let (major, minor) = major_minor(v)?;
    let patch = v
        .trim()
        .trim_start_matches('v')
        .split('.')
        .nth(2)
        .map(|p| {
            p.chars()
                .take_while(char::is_ascii_digit)
                .collect::<String>()
        })
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    Some((major, minor, patch))
}

/// Pick among `found` (path, version) for a backup of `recorded`: the exact release, else
/// the newest patch of its minor version, else the first (PATH's etcd).
fn pick(found: &[Chosen], recorded: &str) -> Option<Chosen> {
    if let Some(c) = found.iter().find(|c| c.version == recorded) {
        return Some(c.clone());
    }
    if let Some((maj, min, _)) = triple(recorded) {
        let same = found
            .iter()
            .filter_map(|c| triple(&c.version).map(|t| (t, c)))
            .filter(|(t, _)| (t.0, t.1) == (maj, min))
            .max_by_key(|(t, _)| *t);
        if let Some((_, c)) = same {
            return Some(c.clone());
        }
    }
    found.first().cloned()
}

/// The etcd `restore test` boots for a backup taken from etcd `recorded` (the manifest's
/// `etcd_version`; empty for an unknown one): `given` when set.
pub fn choose(given: Option<&Path>, recorded: &str) -> Result<Chosen> {
    if let Some(p) = given {
        return Ok(Chosen {
            path: p.to_path_buf(),
            version: booted_version(p)?,
        });
    }
    let found: Vec<Chosen> = candidates()
        .into_iter()
        .filter_map(|p| {
            let version = booted_version(&p).ok()?;
            Some(Chosen { path: p, version })
        })
        .collect();
    pick(&found, recorded).ok_or_else(|| {
        let want = if recorded.is_empty() {
            "etcd".to_string()
        } else {
            format!("etcd {recorded}")
        };
        Error::flag(
            "--etcd",
            format!(
                "no etcd server found on PATH or in {}: install {want} or give the etcd server binary with --etcd PATH",
                cache_root()
                    .map(|r| r.join("etcd-<version>/etcd").display().to_string())
                    .unwrap_or_else(|| "the etcd cache".into())
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(p: &str, v: &str) -> Chosen {
        Chosen {
            path: PathBuf::from(p),
            version: v.into(),
        }
    }

    #[test]
    fn picks_the_backups_release_then_its_minor_then_path() {
        let found = [
            c("/usr/bin/etcd", "3.4.23"),
            c("/c/etcd-3.5.16/etcd", "3.5.16"),
            c("/c/etcd-3.6.16/etcd", "3.6.16"),
            c("/c/etcd-3.6.2/etcd", "3.6.2"),
            c("/c/etcd-3.7.3/etcd", "3.7.3"),
        ];
        assert_eq!(pick(&found, "3.6.16").unwrap().path, found[2].path);
        assert_eq!(pick(&found, "3.6.5").unwrap().path, found[2].path);
        assert_eq!(pick(&found, "3.7.0").unwrap().path, found[4].path);
        assert_eq!(pick(&found, "3.3.1").unwrap().path, found[0].path);
        assert_eq!(pick(&found, "").unwrap().path, found[0].path);
        assert_eq!(pick(&[], "3.6.16"), None);
    }
}
