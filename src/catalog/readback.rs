//! Reading a stored backup back: what `backup` checks before it writes a manifest and
//! what `verify` checks later, in one place beside the rest of what opens a stored backup
//! (so that neither job imports the other).

use sha2::{Digest, Sha256};

use crate::catalog::{self, Manifest};
use crate::io::ReadAt;
use crate::pipeline::encrypt::Keyring;
use crate::pipeline::FramedReader;
use crate::store::Store;
use crate::{Error, Result};

/// Called with the number of stored bytes read so far.
pub type Progress<'a> = &'a (dyn Fn(u64) + Sync);

/// Facts read from the database inside the snapshot, not from a separate request that
/// would race with writes.
#[derive(Debug, Clone)]
pub struct DbFacts {
    pub revision: i64,
    pub compact_revision: Option<i64>,
    pub consistent_index: u64,
    pub term: u64,
    pub page_size: u32,
    pub db_size: u64,
}

/// Read revision, raft index/term and sizes from a database image (cheap: a few pages).
pub fn read_facts(db: &dyn ReadAt) -> std::result::Result<DbFacts, String> {
    let s = crate::format::etcd::summary(db).map_err(|e| e.to_string())?;
    Ok(DbFacts {
        revision: s.revision,
        compact_revision: s.compact_revision,
        consistent_index: s.consistent_index,
        term: s.term,
        page_size: s.page_size,
        db_size: s.db_size,
    })
}

/// Database-level checks of a stored backup against its manifest.
pub fn check_database<R: ReadAt>(reader: &FramedReader<R>, m: &Manifest) -> Vec<String> {
    let mut problems = Vec::new();
    match read_facts(reader) {
        Err(e) => problems.push(format!("database does not open: {e}")),
        Ok(f) => {
            if f.revision != m.revision {
                problems.push(format!(
                    "database revision is {}, the manifest says {}",
                    f.revision, m.revision
                ));
            }
            if f.consistent_index != m.raft_index || f.term != m.raft_term {
                problems.push(format!(
                    "database raft index/term are {}/{}, the manifest says {}/{}",
                    f.consistent_index, f.term, m.raft_index, m.raft_term
                ));
            }
            if f.db_size != m.db_size {
                problems.push(format!(
                    "database high-water mark gives {} bytes, the manifest says {}",
                    f.db_size, m.db_size
                ));
            }
        }
    }
    problems
}

/// SHA-256 and size of a stored object, streamed through the store's `load` (one
/// sequential request, not a positional read per chunk).
pub fn digest_object(store: &dyn Store, name: &str) -> Result<([u8; 32], u64)> {
    let mut r = store.load(name, 0, None)?;
    crate::io::sha256_read(&mut r).map_err(|e| {
        Error::store(
            store.location(),
            crate::store::kind_of_io(&e),
            format!("read back {name}: {}", crate::error::io_words(&e)),
        )
    })
}

/// The sequential pass: frames decode, digests and sizes match the manifest. The object
/// is streamed through the store's `load` (and decrypted with `keys` when the backup is
/// encrypted: `stored_sha256` is then the digest of the ciphertext, as stored).
///
/// With `db_digest` false the database SHA-256 is not recomputed: right after a backup it
/// was computed in flight over the very bytes that were compressed, and each frame's zstd
/// checksum ties what decodes now to those bytes, so the read-back only needs the stored
/// digest and a clean decode. `verify` always recomputes it.
///
/// `tee` is shown every decoded frame in order: the database, when no problem is found.
pub fn check_stream<R: ReadAt>(
    store: &dyn Store,
    reader: &FramedReader<R>,
    m: &Manifest,
    keys: Option<&Keyring>,
    progress: Progress<'_>,
    db_digest: bool,
    tee: &mut dyn FnMut(&[u8]),
) -> Vec<String> {
    let mut problems = Vec::new();
    let (mut object, stored_digest) = match catalog::load_backup_object(store, m, keys) {
        Ok(o) => o,
        Err(e) => return vec![e.to_string()],
    };
    let mut db_sha = Sha256::new();
    let mut db_len = 0u64;
    let mut plain_len = 0u64;
    let threads = crate::pipeline::frames::cpu_count();
    let walked = reader.walk_stream(threads, &mut object, |_, stored, raw| {
        plain_len += stored.len() as u64;
        progress(plain_len);
        match raw {
            Ok(raw) => {
                if db_digest {
                    db_sha.update(&raw);
                }
                tee(&raw);
                db_len += raw.len() as u64;
            }
            Err(e) => problems.push(e.to_string()),
        }
        Ok(())
    });
    if let Err(e) = walked {
        problems.push(e.to_string());
        return problems;
    }
    // Whatever follows the seek table is damage too, and the stored digest covers it.
    match std::io::copy(&mut object, &mut std::io::sink()) {
        Ok(0) => {}
        Ok(n) => problems.push(format!("{n} unexpected bytes after the seek table")),
        Err(e) => {
            problems.push(format!(
                "after the seek table: {}",
                crate::error::io_words(&e)
            ));
            return problems;
        }
    }
    let (stored_sha, _) = stored_digest.finish();
    let stored_hex = hex::encode(stored_sha);
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
