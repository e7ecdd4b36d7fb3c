//! What is recorded about stored backups: ids, manifests, and (later) retention.
//!
//! A backup is two objects in a store: the data object `<id>.db.zst` and the manifest
//! `<id>.manifest.json`. The manifest is written last, so **a backup exists exactly when
//! its manifest exists**; a data object without a manifest is debris of a run that died
//! and is removed by the next backup's clean-up (with the store lock held).

pub mod access;
pub mod capture;
pub mod id;
pub mod manifest;
pub mod readback;
pub mod repository;
pub mod retention;
pub mod verified;

pub use access::Access;
pub use id::{new_backup_id, BackupId};
pub use manifest::{Manifest, ManifestMember, SourceMember, FORMAT_NAME, FORMAT_VERSION};
pub use repository::{Keys, Repository};

use std::io::Read;
use std::sync::Arc;

use crate::io::ReadAt;
use crate::pipeline::encrypt::{self, read::HashingReader, read::ReadDigest, Keyring};
use crate::pipeline::FramedReader;
use crate::store::Store;
use crate::{Error, Result};

pub const MANIFEST_SUFFIX: &str = ".manifest.json";
pub const DATA_SUFFIX: &str = ".db.zst";

pub fn manifest_name(id: &str) -> String {
    format!("{id}{MANIFEST_SUFFIX}")
}

pub fn data_name(id: &str) -> String {
    format!("{id}{DATA_SUFFIX}")
}

/// A manifest that could not be read, reported by [`list`] beside the good ones.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BadManifest {
    pub name: String,
    pub error: String,
}

/// Read one manifest object: the same checks for `list`, `verify ID`, `fetch ID`,
/// `inspect DEST:ID` (see [`Manifest::from_json`]).
pub fn read_manifest(store: &dyn Store, name: &str) -> Result<Manifest> {
    let bytes = store.get_bytes(name)?;
    Manifest::from_json(&bytes, &format!("{}/{name}", store.location()))
}

/// Complete backups in a store, newest first, plus manifests that were rejected.
pub fn list(store: &dyn Store) -> Result<(Vec<Manifest>, Vec<BadManifest>)> {
    let mut good = Vec::new();
    let mut bad = Vec::new();
    // Not the capture segments (86,400 a day at flush 1s): never a backup's.
    for obj in store.list_skipping(capture::PREFIX)? {
        if !obj.name.ends_with(MANIFEST_SUFFIX) {
            continue;
        }
        match read_manifest(store, &obj.name) {
            Ok(m) => good.push(m),
            Err(e) => bad.push(BadManifest {
                name: obj.name.clone(),
                error: e.to_string(),
            }),
        }
    }
    good.sort_by(|a, b| b.id.cmp(&a.id));
    Ok((good, bad))
}

/// Find a backup by id, or the newest one for `latest`.
///
/// A manifest that [`list`] would reject is an error here too (exit 3, or 2 for a newer
/// format), so no command answers from a manifest that another command refuses.
pub fn resolve(store: &dyn Store, id: &str) -> Result<Manifest> {
    if id == "latest" {
        let (all, bad) = list(store)?;
        return all.into_iter().next().ok_or_else(|| {
            if bad.is_empty() {
                return Error::NotFound(format!("no complete backup in {}", store.location()));
            }
            let why: Vec<&str> = bad.iter().map(|b| b.error.as_str()).collect();
            Error::integrity(
                store.location(),
                format!(
                    "no complete backup; {} manifest(s) rejected: {}",
                    bad.len(),
                    why.join("; ")
                ),
            )
        });
    }
    if id.is_empty() || id.contains('/') || id.starts_with('.') {
        return Err(Error::Usage(format!("invalid backup id {id:?}")));
    }
    let name = manifest_name(id);
    match read_manifest(store, &name) {
        Err(Error::NotFound(_)) => Err(Error::NotFound(format!(
            "no backup {id} in {} (try `lifeboat list --from {}`)",
            store.location(),
            store.location()
        ))),
        other => other,
    }
}

/// Open the data object of a backup for random access to its database bytes, with the
/// keys given ([`Repository::open_db`] gives the repository's; a backup run gives its own
/// read-back key).
///
/// A manifest whose data object is missing or unreadable as a seekable object is an
/// integrity problem (exit 3), whichever command finds it.
pub fn open_backup_db_with(
    store: &dyn Store,
    manifest: &Manifest,
    keys: Option<&Keyring>,
) -> Result<FramedReader<Box<dyn ReadAt>>> {
    let object = format!("{}/{}", store.location(), manifest.object);
    let keys = match keys {
        Some(k) => Some(k),
        None => {
            check_encryption(&object, manifest)?;
            None
        }
    };
    let obj = match store.open(&manifest.object) {
        Err(Error::NotFound(_)) => {
            return Err(Error::integrity(
                &object,
                format!("data object of backup {} is missing", manifest.id),
            ))
        }
        other => other?,
    };
    let obj = match keys {
        Some(k) if manifest.encryption == encrypt::SCHEME => {
            let what = format!("backup {}", manifest.id);
            let sealed = encrypt::read::Sealed {
                object: &object,
                what: &what,
                recipients: &manifest.recipients,
            };
            encrypt::read::decrypt_at(obj, k, &sealed)?
        }
        _ => obj,
    };
    FramedReader::open(obj).map_err(|e| Error::integrity(&object, e.to_string()))
}

/// The stored object of a backup as one sequential read (a store's `load`), decrypted when
/// it is encrypted: the bytes of the unencrypted object. The [`ReadDigest`] gives the
/// SHA-256 and size of the bytes as stored once the reader has been read to its end.
pub fn load_backup_object(
    store: &dyn Store,
    manifest: &Manifest,
    keys: Option<&Keyring>,
) -> Result<(Box<dyn Read + Send>, ReadDigest)> {
    let object = format!("{}/{}", store.location(), manifest.object);
    if keys.is_none() {
        check_encryption(&object, manifest)?;
    }
    let raw = store.load(&manifest.object, 0, None)?;
    let (hashed, digest) = HashingReader::new(raw);
    Ok((
        plain_stream(Box::new(hashed), &object, manifest, keys)?,
        digest,
    ))
}

/// [`load_backup_object`] without the SHA-256 of the stored bytes, for a reader that checks
/// the decoded database's size and SHA-256 against the manifest instead (`fetch`, `restore
/// apply`, `restore test`): those prove the content, and a second digest over the stored
/// bytes would be computed only to be thrown away.
pub fn load_backup_stream(
    store: &dyn Store,
    manifest: &Manifest,
    keys: Option<&Keyring>,
) -> Result<Box<dyn Read + Send>> {
    let object = format!("{}/{}", store.location(), manifest.object);
    if keys.is_none() {
        check_encryption(&object, manifest)?;
    }
    let raw = store.load(&manifest.object, 0, None)?;
    plain_stream(raw, &object, manifest, keys)
}

/// `stored`, decrypted when the backup is encrypted.
fn plain_stream(
    stored: Box<dyn Read + Send>,
    object: &str,
    manifest: &Manifest,
    keys: Option<&Keyring>,
) -> Result<Box<dyn Read + Send>> {
    Ok(match keys {
        Some(k) if manifest.encryption == encrypt::SCHEME => encrypt::read::decrypt_stream(
            stored,
            k,
            &encrypt::read::Sealed {
                object,
                what: &format!("backup {}", manifest.id),
                recipients: &manifest.recipients,
            },
        )?,
        _ => stored,
    })
}

/// The keys to open an encrypted backup with: `given` (a [`Repository`]'s). For an
/// unencrypted backup, `None`. An encrypted backup and no identity is a usage error
/// (exit 2) naming the recipients, so the operator knows which key to fetch.
pub fn keys_for(
    store: &dyn Store,
    manifest: &Manifest,
    given: Option<Arc<Keyring>>,
) -> Result<Option<Arc<Keyring>>> {
    let object = format!("{}/{}", store.location(), manifest.object);
    if manifest.encryption != encrypt::SCHEME {
        check_encryption(&object, manifest)?;
        return Ok(None);
    }
    match given {
        Some(k) => Ok(Some(k)),
        None => Err(Error::Usage(format!(
            "backup {} in {} is encrypted to {}; give --identity FILE (or LIFEBOAT_IDENTITY) holding one of their keys",
            manifest.id,
            store.location(),
            if manifest.recipients.is_empty() {
                "keys its manifest does not name".to_string()
            } else {
                manifest.recipients.join(", ")
            }
        ))),
    }
}

/// `none` reads as is; `age` needs keys (the callers' business); anything else is a
/// manifest this build cannot honour.
fn check_encryption(object: &str, manifest: &Manifest) -> Result<()> {
    match manifest.encryption.as_str() {
        "none" => Ok(()),
        encrypt::SCHEME => Err(Error::Usage(format!(
            "backup {} is encrypted; give --identity FILE (or LIFEBOAT_IDENTITY)",
            manifest.id
        ))),
        other => Err(Error::integrity(
            object,
            format!("the manifest names an unknown encryption {other:?}"),
        )),
    }
}

/// Data objects whose manifest is missing: debris of killed runs. Only meaningful with
/// the store lock held (a running backup has a data object and no manifest yet).
pub fn orphans(store: &dyn Store) -> Result<Vec<String>> {
    let objects = store.list_skipping(capture::PREFIX)?;
    let names: std::collections::HashSet<&str> = objects.iter().map(|o| o.name.as_str()).collect();
    Ok(objects
        .iter()
        .filter_map(|o| {
            let id = o.name.strip_suffix(DATA_SUFFIX)?;
            (!names.contains(manifest_name(id).as_str())).then(|| o.name.clone())
        })
        .collect())
}
