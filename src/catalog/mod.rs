//! What is recorded about stored backups: ids, manifests, and (later) retention.
//!
//! A backup is two objects in a store: the data object `<id>.db.zst` and the manifest
//! `<id>.manifest.json`. The manifest is written last, so **a backup exists exactly when
//! its manifest exists**; a data object without a manifest is debris of a run that died
//! and is removed by the next backup's clean-up (with the store lock held).

pub mod id;
pub mod manifest;

pub use id::new_backup_id;
pub use manifest::{Manifest, ManifestMember, SourceMember, FORMAT_NAME, FORMAT_VERSION};

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
#[derive(Debug, Clone)]
pub struct BadManifest {
    pub name: String,
    pub error: String,
}

/// Complete backups in a store, newest first, plus manifests that could not be parsed.
pub fn list(store: &dyn Store) -> Result<(Vec<Manifest>, Vec<BadManifest>)> {
    let mut good = Vec::new();
    let mut bad = Vec::new();
    for obj in store.list()? {
        let Some(id) = obj.name.strip_suffix(MANIFEST_SUFFIX) else {
            continue;
        };
        match store
            .get_bytes(&obj.name)
            .and_then(|b| Manifest::from_json(&b, &obj.name))
        {
            Ok(m) if m.id == id => good.push(m),
            Ok(m) => bad.push(BadManifest {
                name: obj.name.clone(),
                error: format!("manifest names backup {:?}, not {id:?}", m.id),
            }),
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
pub fn resolve(store: &dyn Store, id: &str) -> Result<Manifest> {
    if id == "latest" {
        let (all, _) = list(store)?;
        return all
            .into_iter()
            .next()
            .ok_or_else(|| Error::NotFound(format!("no complete backup in {}", store.location())));
    }
    if id.is_empty() || id.contains('/') {
        return Err(Error::Usage(format!("invalid backup id {id:?}")));
    }
    let name = manifest_name(id);
    let bytes = match store.get_bytes(&name) {
        Err(Error::NotFound(_)) => {
            return Err(Error::NotFound(format!(
                "no backup {id} in {} (try `lifeboat list --from {}`)",
                store.location(),
                store.location()
            )))
        }
        other => other?,
    };
    Manifest::from_json(&bytes, &name)
}

/// Data objects whose manifest is missing: debris of killed runs. Only meaningful with
/// the store lock held (a running backup has a data object and no manifest yet).
pub fn orphans(store: &dyn Store) -> Result<Vec<String>> {
    let objects = store.list()?;
    let names: std::collections::HashSet<&str> = objects.iter().map(|o| o.name.as_str()).collect();
    Ok(objects
        .iter()
        .filter_map(|o| {
            let id = o.name.strip_suffix(DATA_SUFFIX)?;
            (!names.contains(manifest_name(id).as_str())).then(|| o.name.clone())
        })
        .collect())
}
