//! `fetch`: write a stored backup out as the file `etcdctl snapshot save` would have made:
//! the database followed by its 32-byte SHA-256, which `etcdutl snapshot restore` checks
//! without `--skip-hash-check`.
//!
//! The file appears atomically (`FILE.partial`, fsync, rename, fsync of the directory) and
//! only after the database digest matched the manifest, so a damaged backup never yields a
//! file that looks restorable.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::catalog::{Manifest, Repository};
use crate::error::IoContext;
use crate::store::local::AtomicFile;
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
    repo: &Repository,
    m: &Manifest,
    out: &Path,
    overwrite: bool,
    progress: super::verify::Progress<'_>,
) -> Result<FetchReport> {
    if out.exists() && !overwrite {
        return Err(Error::Refused(format!(
            "{} exists; not overwriting it (remove it, or pass --force)",
            out.display()
        )));
    }
    // A partial file from an earlier fetch that was killed is ours to replace.
    let mut stale = out.as_os_str().to_owned();
    stale.push(crate::store::local::PARTIAL_SUFFIX);
    let _ = fs::remove_file(PathBuf::from(stale));
    let mut w = AtomicFile::create(out.to_path_buf(), overwrite)?;
    let (db_len, digest) = decode_into(repo, m, &mut w, out, progress)?;
    let db_hex = hex::encode(digest);
    w.write_all(&digest).at(out)?;
    w.commit()?;
    Ok(FetchReport {
        id: m.id.to_string(),
        out: out.to_path_buf(),
        db_size: db_len,
        file_size: db_len + 32,
        db_sha256: db_hex,
    })
}

/// Decode backup `m` into `w`: the database bytes only (no trailer), each written once as
/// it is decoded and hashed once. Returns its size and SHA-256, which match the manifest's
/// (exit 3 otherwise: then `w` holds bytes that must not be used). `out` names `w` in errors.
pub fn decode_into(
    repo: &Repository,
    m: &Manifest,
    w: &mut dyn Write,
    out: &Path,
    progress: super::verify::Progress<'_>,
) -> Result<(u64, [u8; 32])> {
    let object = repo.object_of(m);
    let reader = repo.open_db(m)?;
    // The decoded database's size and SHA-256 are checked below: no digest of the
    // stored bytes is needed on top.
    let mut stream = repo.load_stream(m)?;
    let mut sha = Sha256::new();
    let mut db_len = 0u64;
    let mut stored_len = 0u64;
    let mut first_err: Option<Error> = None;
    let threads = crate::pipeline::frames::cpu_count();
    reader
        .walk_stream(threads, &mut stream, |_, stored, raw| {
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
                        first_err = Some(Error::io(out, e));
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
    Ok((db_len, digest))
}
