//! `fetch`: write a stored backup out as the file `etcdctl snapshot save` would have made:
//! the database followed by its 32-byte SHA-256, which `etcdutl snapshot restore` checks
//! without `--skip-hash-check`.
//!
//! The file appears atomically (`FILE.partial`, fsync, rename, fsync of the directory) and
//! only after the database digest matched the manifest, so a damaged backup never yields a
//! file that looks restorable.

use std::fs::{self, OpenOptions};
use std::io::{BufWriter, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::catalog::Manifest;
use crate::error::IoContext;
use crate::store::local::sync_dir;
use crate::store::Store;
use crate::{Error, Result};

#[derive(Debug, Clone, Serialize)]
pub struct FetchReport {
    pub id: String,
    pub out: PathBuf,
    pub db_size: u64,
    pub file_size: u64,
    pub db_sha256: String,
}

pub fn fetch(
    store: &dyn Store,
    m: &Manifest,
    out: &Path,
    overwrite: bool,
    progress: super::verify::Progress<'_>,
) -> Result<FetchReport> {
    if out.exists() && !overwrite {
        return Err(Error::Failed(format!(
            "{} exists; not overwriting it (remove it, or pass --force)",
            out.display()
        )));
    }
    let object = format!("{}/{}", store.location(), m.object);
    let reader = super::open_backup_db(store, m)?;
    let mut partial = out.as_os_str().to_owned();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    let _ = fs::remove_file(&partial);
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&partial)
        .at(&partial)?;
    // Remove the partial file on every failure path.
    struct Cleanup<'a>(&'a Path, bool);
    impl Drop for Cleanup<'_> {
        fn drop(&mut self) {
            if !self.1 {
                let _ = fs::remove_file(self.0);
            }
        }
    }
    let mut guard = Cleanup(&partial, false);
    let mut w = BufWriter::with_capacity(1 << 20, file);
    let mut sha = Sha256::new();
    let mut db_len = 0u64;
    let mut stored_len = 0u64;
    let mut first_err: Option<Error> = None;
    reader
        .walk(|_, stored, raw| {
            stored_len += stored.len() as u64;
            progress(stored_len);
            if first_err.is_some() {
                return Ok(());
            }
            match raw {
                Ok(raw) => {
                    sha.update(&raw);
                    db_len += raw.len() as u64;
                    if let Err(e) = w.write_all(&raw) {
                        first_err = Some(Error::io(&partial, e));
                    }
                }
                Err(e) => first_err = Some(Error::integrity(&object, e.to_string())),
            }
            Ok(())
        })
        .map_err(|e| Error::integrity(&object, e.to_string()))?;
    if let Some(e) = first_err {
        return Err(e);
    }
    let digest: [u8; 32] = sha.finalize().into();
    let db_hex = hex::encode(digest);
    if db_hex != m.db_sha256 || db_len != m.db_size {
        return Err(Error::integrity(
            &object,
            format!(
                "decoded database is {db_len} bytes with SHA-256 {db_hex}; the manifest says {} bytes, {}",
                m.db_size, m.db_sha256
            ),
        ));
    }
    w.write_all(&digest).at(&partial)?;
    let file = w
        .into_inner()
        .map_err(|e| Error::io(&partial, e.into_error()))?;
    file.sync_all().at(&partial)?;
    drop(file);
    fs::rename(&partial, out).at(out)?;
    guard.1 = true;
    let dir = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    sync_dir(dir)?;
    Ok(FetchReport {
        id: m.id.clone(),
        out: out.to_path_buf(),
        db_size: db_len,
        file_size: db_len + 32,
        db_sha256: db_hex,
    })
}
