//! `verify`: re-read a stored backup and check everything that can be checked offline.
//!
//! 1. the data object exists and has the size the manifest records;
//! 2. its seek table is intact, every zstd frame decodes and passes its checksum;
//! 3. the SHA-256 of the stored bytes and of the decoded database match the manifest;
//! 4. the database opens: bbolt meta pages valid, and the revision, raft term and index
//!    read from it match the manifest.
//!
//! Damage never stops the walk early where it can go on, so one run lists every problem.

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::catalog::Manifest;
use crate::pipeline::FramedReader;
use crate::store::Store;
use crate::Result;

#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    pub id: String,
    pub ok: bool,
    pub problems: Vec<String>,
    pub object: String,
    pub db_size: u64,
    pub stored_size: u64,
    pub revision: i64,
}

/// Called with the number of stored bytes read so far.
pub type Progress<'a> = &'a (dyn Fn(u64) + Sync);

pub fn verify(store: &dyn Store, m: &Manifest, progress: Progress<'_>) -> Result<VerifyReport> {
    let mut problems = Vec::new();
    let object = format!("{}/{}", store.location(), m.object);
    let report = |problems: Vec<String>| VerifyReport {
        id: m.id.clone(),
        ok: problems.is_empty(),
        problems,
        object: object.clone(),
        db_size: m.db_size,
        stored_size: m.stored_size,
        revision: m.revision,
    };
    match store.stat(&m.object)? {
        None => {
            problems.push(format!("data object {object} is missing"));
            return Ok(report(problems));
        }
        Some(size) if size != m.stored_size => problems.push(format!(
            "data object {object} is {size} bytes, the manifest says {} (truncated or replaced)",
            m.stored_size
        )),
        Some(_) => {}
    }
    let reader = match super::open_backup_db(store, m) {
        Ok(r) => r,
        Err(e) => {
            problems.push(e.to_string());
            return Ok(report(problems));
        }
    };
    problems.extend(check_stream(&reader, m, progress, true));
    if problems.is_empty() {
        problems.extend(super::backup::check_database(&reader, m));
    }
    if problems.is_empty() {
        // The strict structural check of every page (meta checksums, bounds, types, key
        // order, references), through the seek table. A bigger frame cache keeps a
        // tree walk over a compressed object from decoding the same frame again and again.
        let reader = reader.with_cache_frames(32);
        let opts = crate::format::bolt::check::CheckOptions::default();
        let r = crate::format::bolt::check::check(&reader, &opts, &mut ());
        for p in &r.problems {
            problems.push(format!("database: {p}"));
        }
        if r.problems_not_shown > 0 {
            problems.push(format!(
                "database: {} more problems not shown",
                r.problems_not_shown
            ));
        }
    }
    Ok(report(problems))
}

/// The sequential pass: frames decode, digests and sizes match the manifest.
///
/// With `db_digest` false the database SHA-256 is not recomputed: right after a backup it
/// was computed in flight over the very bytes that were compressed, and each frame's zstd
/// checksum ties what decodes now to those bytes, so the read-back only needs the stored
/// digest and a clean decode. `verify` always recomputes it.
pub fn check_stream<R: crate::io::ReadAt>(
    reader: &FramedReader<R>,
    m: &Manifest,
    progress: Progress<'_>,
    db_digest: bool,
) -> Vec<String> {
    let mut problems = Vec::new();
    let mut stored_sha = Sha256::new();
    let mut db_sha = Sha256::new();
    let mut db_len = 0u64;
    let mut stored_len = 0u64;
    let threads = crate::pipeline::frames::cpu_count();
    let walked = reader.walk_parallel(threads, |_, stored, raw| {
        stored_sha.update(stored);
        stored_len += stored.len() as u64;
        progress(stored_len);
        match raw {
            Ok(raw) => {
                db_sha.update(&raw);
                db_len += raw.len() as u64;
            }
            Err(e) => problems.push(e.to_string()),
        }
        Ok(())
    });
    match walked {
        Ok(table) => stored_sha.update(&table),
        Err(e) => {
            problems.push(e.to_string());
            return problems;
        }
    }
    let stored_hex = hex::encode(stored_sha.finalize());
    if stored_hex != m.stored_sha256 {
        problems.push(format!(
            "stored object SHA-256 is {stored_hex}, the manifest says {}",
            m.stored_sha256
        ));
    }
    if problems.is_empty() {
        let db_hex = hex::encode(db_sha.finalize());
        if db_digest && db_hex != m.db_sha256 {
            problems.push(format!(
                "database SHA-256 is {db_hex}, the manifest says {}",
                m.db_sha256
            ));
        }
        if db_len != m.db_size {
            problems.push(format!(
                "database is {db_len} bytes, the manifest says {}",
                m.db_size
            ));
        }
    }
    problems
}
