//! `verify`: re-read a stored backup and check everything that can be checked offline.
//!
//! 1. the data object exists and has the size the manifest records;
//! 2. its seek table is intact, every zstd frame decodes and passes its checksum;
//! 3. the SHA-256 of the stored bytes and of the decoded database match the manifest;
//! 4. the database opens: bbolt meta pages valid, and the revision, raft term and index
//!    read from it match the manifest.
//!
//! Damage never stops the walk early where it can go on, so one run lists every problem.
//! What is not damage is an error, not a verdict: no identity for an encrypted backup, or
//! one that opens none of its recipients (exit 2), a store that cannot be read (exit 1).

use serde::Serialize;

use crate::catalog::readback::{check_database, check_stream};
use crate::catalog::{Manifest, Repository};
use crate::format::bolt::EntryVisitor;
use crate::{ExitCode, Result};

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

pub use crate::catalog::readback::Progress;

impl Repository {
    /// Verify backup `m` of this repository (the module docs say what is checked).
    pub fn verify(&self, m: &Manifest, progress: Progress<'_>) -> Result<VerifyReport> {
        verify(self, m, progress, &mut (), None)
    }

    /// [`Repository::verify`], showing `visitor` every entry its page check walks (when
    /// the stream and database checks passed; nothing otherwise), so a caller that needs a
    /// fact of every key (`restore plan`: does the backup hold Kubernetes objects) needs no
    /// second decode of the backup.
    pub fn verify_visiting(
        &self,
        m: &Manifest,
        progress: Progress<'_>,
        visitor: &mut dyn EntryVisitor,
    ) -> Result<VerifyReport> {
        verify(self, m, progress, visitor, None)
    }

    /// [`Repository::verify_visiting`] that also writes the database it decodes to `copy`
    /// and walks the copy's pages instead of decoding the backup again: `restore plan
    /// --to-revision` replays onto that copy. The copy holds the database the manifest
    /// names only when the report is ok. A copy that cannot be written is an error, not a
    /// verdict.
    pub fn verify_copying(
        &self,
        m: &Manifest,
        visitor: &mut dyn EntryVisitor,
        copy: &mut dyn DbCopy,
    ) -> Result<VerifyReport> {
        verify(self, m, &|_| {}, visitor, Some(copy))
    }
}

/// Where [`Repository::verify_copying`] writes the database it decodes, in order.
pub trait DbCopy: crate::io::ReadAt {
    fn append(&mut self, bytes: &[u8]) -> Result<()>;
}

fn verify(
    repo: &Repository,
    m: &Manifest,
    progress: Progress<'_>,
    visitor: &mut dyn EntryVisitor,
    mut copy: Option<&mut dyn DbCopy>,
) -> Result<VerifyReport> {
    let store = repo.store();
    let mut problems = Vec::new();
    let object = repo.object_of(m);
    let report = |problems: Vec<String>| VerifyReport {
        id: m.id.to_string(),
        ok: problems.is_empty(),
        problems,
        object: object.clone(),
        db_size: m.db_size,
        stored_size: m.stored_size,
        revision: m.revision,
    };
    // Without the key the contents cannot be checked: say so (exit 2), rather than
    // report a backup as good from its ciphertext digest alone.
    let keys = repo.keys_for(m)?;
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
    let reader = match crate::catalog::open_backup_db_with(store, m, keys.as_deref()) {
        Ok(r) => r,
        // An identity that opens none of the recipients (exit 2), or a store that cannot
        // be read (exit 1), says nothing about the backup: no verdict, an error.
        Err(e) if e.exit_code() != ExitCode::Integrity => return Err(e),
        Err(e) => {
            problems.push(e.to_string());
            return Ok(report(problems));
        }
    };
    let mut failed = None;
    let mut tee = |bytes: &[u8]| {
        if let (Some(c), None) = (copy.as_deref_mut(), &failed) {
            failed = c.append(bytes).err();
        }
    };
    problems.extend(check_stream(
        store,
        &reader,
        m,
        keys.as_deref(),
        progress,
        true,
        &mut tee,
    ));
    if let Some(e) = failed {
        return Err(e);
    }
    if problems.is_empty() {
        problems.extend(check_database(&reader, m));
    }
    if problems.is_empty() {
        // The strict structural check of every page (meta checksums, bounds, types, key
        // order, references): on the copy (checked against db_sha256 just now), or through
        // the seek table, where a bigger frame cache keeps a tree walk over a compressed
        // object from decoding the same frame again and again.
        let opts = crate::format::bolt::check::CheckOptions::default();
        let r = match copy {
            Some(c) => crate::format::bolt::check::check(&*c, &opts, visitor),
            None => {
                crate::format::bolt::check::check(&reader.with_cache_frames(32), &opts, visitor)
            }
        };
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
