//! Capture segments in a destination: the records point-in-time recovery replays.
//!
//! Stub: `lifeboat capture` (branch `pcap`) fills this in; restore (branch `prep`) codes
//! against this signature.

use crate::catalog::Repository;
use crate::error::{Error, Result};
use crate::format::capture::Record;

/// The captured records of `cluster_id` (hex, as in manifests) with revision in
/// `(after, upto]`, in stream order, after checking every segment's digest and the chain
/// between them. A gap in that range, a broken link or a bad digest is an error that names
/// the segment; `upto` beyond the last durable revision is an error naming it.
pub fn load_records(
    repo: &Repository,
    cluster_id: &str,
    after: i64,
    upto: i64,
) -> Result<Vec<Record>> {
    let _ = (repo, cluster_id, after, upto);
    Err(Error::Usage(
        "point-in-time recovery: this build has no capture reader yet".into(),
    ))
}
