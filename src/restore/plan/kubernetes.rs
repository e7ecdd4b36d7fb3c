//! Whether a snapshot holds Kubernetes objects (`/registry/` keys): then the restore bumps
//! the revision by default, because kube-apiserver watch caches hold revisions newer than any
//! backup and would otherwise never see the restored state.

use crate::format::bolt::check::VisitEntry;
use crate::format::bolt::{Db, EntryVisitor, FormatError};
use crate::format::etcd::{buckets, proto::KeyValueRef};
use crate::io::ReadAt;
use crate::{Error, Result};

/// Whether a value of bucket `key` is a Kubernetes object's.
fn is_kubernetes(value: &[u8]) -> bool {
    KeyValueRef::decode(value).is_ok_and(|kv| kv.key.starts_with(b"/registry/"))
}

/// As a visitor of a page walk that reads every entry anyway
/// ([`crate::catalog::Repository::verify_visiting`]): true once a `key` bucket entry holds a
/// `/registry/` key.
#[derive(Debug, Default)]
pub struct KubernetesKeys(pub bool);

impl EntryVisitor for KubernetesKeys {
    fn entry(&mut self, e: &VisitEntry<'_>) {
        if !self.0 && e.bucket == buckets::KEY {
            self.0 = is_kubernetes(e.value);
        }
    }
}

/// For any database image (`--from-data-dir`), walking bucket `key` until one is found.
pub fn db_holds_kubernetes<R: ReadAt>(reader: &R, object: &str) -> Result<bool> {
    let fe = |e: FormatError| Error::integrity(object, e.to_string());
    let db = Db::open(reader).map_err(fe)?;
    let Some(b) = db.bucket(buckets::KEY).map_err(fe)? else {
        return Ok(false);
    };
    let mut c = b.cursor();
    while let Some(e) = c.next().map_err(fe)? {
        if is_kubernetes(e.value) {
            return Ok(true);
        }
    }
    Ok(false)
}
