//! The commands' work, as library functions that tests can call without a process.

pub mod backup;
pub mod fetch;
pub mod verify;

use crate::catalog::Manifest;
use crate::io::ReadAt;
use crate::pipeline::FramedReader;
use crate::store::Store;
use crate::{Error, Result};

/// Open the data object of a backup for random access to its database bytes.
pub fn open_backup_db(
    store: &dyn Store,
    manifest: &Manifest,
) -> Result<FramedReader<Box<dyn ReadAt>>> {
    if manifest.encryption != "none" {
        return Err(Error::Usage(format!(
            "backup {} is encrypted ({}); this build cannot decrypt it",
            manifest.id, manifest.encryption
        )));
    }
    let obj = store.open(&manifest.object)?;
    FramedReader::open(obj).map_err(|e| {
        Error::integrity(
            format!("{}/{}", store.location(), manifest.object),
            e.to_string(),
        )
    })
}
