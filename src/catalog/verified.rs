//! The last scrub's verdict on a backup: a small object `<id>.verified.json` beside the
//! manifest, in the destination itself, so that every host scrubbing or pruning that
//! destination (a daemon per control-plane node, a cron job elsewhere) sees one truth, and
//! it goes wherever the backups go (local directory, S3).
//!
//! It is advisory state, not part of the backup: a missing or unreadable record means
//! "never scrubbed" (every listed backup was read back when it was written). Prune removes
//! it after the backup's manifest and data.

use serde::{Deserialize, Serialize};

use super::retention::VerifyState;
use crate::store::Store;
use crate::{Error, Result};

pub const VERIFIED_SUFFIX: &str = ".verified.json";

pub fn verified_name(id: &str) -> String {
    format!("{id}{VERIFIED_SUFFIX}")
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct VerifyRecord {
    pub id: String,
    /// When the scrub finished (RFC 3339, UTC).
    pub verified_at: String,
    pub ok: bool,
    #[serde(default)]
    pub problems: Vec<String>,
}

/// The recorded state of a backup. A record that cannot be parsed counts as unchecked: it
/// must not make prune remove or keep anything it otherwise would not; a store error is
/// an error (the caller removes nothing).
pub fn read_state(store: &dyn Store, id: &str) -> Result<(VerifyState, Option<VerifyRecord>)> {
    match store.get_bytes(&verified_name(id)) {
        Err(Error::NotFound(_)) => Ok((VerifyState::Unchecked, None)),
        Err(Error::Store {
            kind: crate::error::StoreErrorKind::NotFound,
            ..
        }) => Ok((VerifyState::Unchecked, None)),
        Err(e) => Err(e),
        Ok(bytes) => match serde_json::from_slice::<VerifyRecord>(&bytes) {
            Ok(r) if r.id == id => {
                let s = if r.ok {
                    VerifyState::Passed
                } else {
                    VerifyState::Failed
                };
                Ok((s, Some(r)))
            }
            _ => Ok((VerifyState::Unchecked, None)),
        },
    }
}

/// Record a scrub's verdict, replacing the previous one.
pub fn write_record(store: &dyn Store, r: &VerifyRecord) -> Result<()> {
    let name = verified_name(&r.id);
    let body =
        serde_json::to_vec_pretty(r).map_err(|e| Error::Internal(format!("encode {name}: {e}")))?;
    store.remove(&name)?;
    store.put_bytes(&name, &body)
}
