//! `lifeboat verify --from DEST --capture`: the capture chain checked offline, window by
//! window. Every segment's digest and its link to the one before are checked while the
//! records are read ([`crate::catalog::capture::stream_records`]); where a full backup starts the
//! window, the records are replayed onto it and every live `HashKV` capture recorded is
//! compared with the hash recomputed from the rebuilt data at its revision.

use serde::Serialize;

use super::{choose, replay_chosen, CatalogRecords, Target};
use crate::catalog::capture::{capture_windows, stream_records, CaptureWindow};
use crate::catalog::{Manifest, Repository};
use crate::error::ExitCode;
use crate::{Error, Result};

/// The verdict on one window.
#[derive(Debug, Clone, Serialize)]
pub struct WindowVerdict {
    #[serde(flatten)]
    pub window: CaptureWindow,
    pub ok: bool,
    /// Records read (events, leases, compactions, hashes, clock marks).
    pub records: usize,
    /// Revisions of the live hashes that matched the replayed data.
    pub live_hashes_checked: Vec<i64>,
    pub problems: Vec<String>,
    /// What could not be checked, and why (a window no backup starts: no live hash).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// Check every window of `repo`. An integrity problem (bad digest, broken link, a live
/// hash the replay does not reproduce) is the window's verdict; anything else (the store
/// failing, a missing identity) is the command's error.
pub fn verify_windows(repo: &Repository) -> Result<Vec<WindowVerdict>> {
    let (backups, _) = repo.list()?;
    let mut out = Vec::new();
    for w in capture_windows(repo.store(), &backups)? {
        out.push(verify_window(repo, &backups, w)?);
    }
    Ok(out)
}

fn verify_window(
    repo: &Repository,
    backups: &[Manifest],
    window: CaptureWindow,
) -> Result<WindowVerdict> {
    let mut v = WindowVerdict {
        window,
        ok: true,
        records: 0,
        live_hashes_checked: Vec::new(),
        problems: Vec::new(),
        note: None,
    };
    let w = &v.window;
    let outcome = if w.from_backup.is_some() {
        let cluster: Vec<Manifest> = backups
            .iter()
            .filter(|m| m.cluster_id.to_string() == w.cluster_id)
            .cloned()
            .collect();
        let src = CatalogRecords {
            repo,
            cluster_id: w.cluster_id.clone(),
        };
        choose(&cluster, Target::Revision(w.to_revision), &src).and_then(|chosen| {
            let db = repo.open_db(&chosen.manifest)?;
            let snapshot = super::super::predict::database_of(&db);
            let work = tempfile::tempdir().map_err(|e| Error::io(std::env::temp_dir(), e))?;
            let object = repo.object_of(&chosen.manifest);
            let (_, r, scanned) = replay_chosen(&snapshot, &object, &chosen, &src, work.path())?;
            Ok((scanned.records as usize, r.checked))
        })
    } else {
        // No backup starts this window (it follows a gap): digests and links only.
        let mut n = 0usize;
        stream_records(
            repo,
            &w.cluster_id,
            w.from_revision,
            w.to_revision,
            &mut |_| {
                n += 1;
                Ok(())
            },
        )
        .map(|()| (n, Vec::new()))
    };
    match outcome {
        Ok((records, checked)) => {
            v.records = records;
            v.live_hashes_checked = checked;
            if v.window.from_backup.is_none() {
                v.note = Some(
                    "no backup of this destination starts the window (it follows a gap): digests and links checked, live hashes not".into(),
                );
            }
        }
        Err(e) if e.exit_code() == ExitCode::Integrity => {
            v.ok = false;
            v.problems.push(e.to_string());
        }
        Err(e) => return Err(e),
    }
    Ok(v)
}
