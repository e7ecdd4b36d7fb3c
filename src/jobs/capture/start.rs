//! Where each destination's chain resumes: after its last segment, or after its newest
//! backup of the cluster when it has no segment yet.

use super::upload::ChainState;
use crate::catalog::capture;
use crate::jobs::backup::Destination;
use crate::{Error, Result};

/// One [`ChainState`] per destination, in order. A destination with neither a segment nor
/// a backup of the cluster is an error naming it (capture starts from a backup).
pub async fn chains(dests: &[Destination], cluster_id: u64) -> Result<Vec<ChainState>> {
    let repos: Vec<_> = dests.iter().map(Destination::repository).collect();
    crate::store::blocking::offload(move || repos.iter().map(|r| chain_of(r, cluster_id)).collect())
        .await?
}

fn chain_of(repo: &crate::catalog::Repository, cluster_id: u64) -> Result<ChainState> {
    let (backups, _) = repo.list()?;
    let newest = backups
        .iter()
        .filter(|m| m.cluster_id.0 == cluster_id)
        .max_by_key(|m| m.revision);
    // The newest segment, listing only the names from the newest backup on.
    let segs = capture::segments_from(
        repo.store(),
        cluster_id,
        newest.map_or(1, |m| m.revision + 1),
    )?;
    if let Some(last) = segs.last() {
        if last.encrypted && repo.keys().get().ok().flatten().is_none() {
            eprintln!(
                "lifeboat: warning: capture to {}: its segments are encrypted and no identity is configured ([encryption] identity): the next segment starts a new chain link after revision {} instead of linking to {}",
                repo.name(),
                last.last,
                last.name
            );
            return Ok(ChainState {
                next_first: last.last + 1,
                prev: [0; 32],
            });
        }
        let seg = capture::read_segment(repo, last)?;
        return Ok(ChainState {
            next_first: last.last + 1,
            prev: seg.digest,
        });
    }
    match newest {
        Some(m) => Ok(ChainState {
            next_first: m.revision + 1,
            prev: [0; 32],
        }),
        None => Err(Error::NotFound(format!(
            "{} holds no backup of cluster {cluster_id:x} and no capture segment: capture starts from a full backup; take one first (lifeboat backup --config FILE)",
            repo.name()
        ))),
    }
}
