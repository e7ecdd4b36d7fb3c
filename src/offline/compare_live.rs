//! `inspect --compare-live`: ask each member for its hashkv at the snapshot's revision and
//! compare with the one computed offline, recomputed with the member's own compaction
//! revision when it differs from the snapshot's (hashkv covers only what survives it).

use serde::Serialize;

use super::Input;
use crate::error::InFile;
use crate::format::bolt::{Db, FormatError};
use crate::format::etcd::hashkv::hashkv;
use crate::format::etcd::report::Report;
use crate::source::etcd::ConnectConfig;
use crate::Result;

/// One endpoint's answer to `--compare-live`.
#[derive(Debug, Serialize)]
pub struct LiveHash {
    pub endpoint: String,
    pub hashkv: Option<u32>,
    pub compact_revision: Option<i64>,
    /// The offline hashkv computed with that member's compaction revision.
    pub expected: Option<u32>,
    pub matches: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Every endpoint's answer, one at a time (a few members; no need for concurrency). An
/// endpoint that cannot answer is recorded with its error, not a failure of the whole.
/// Runs on the caller's runtime; the offline part reads the input in place.
pub async fn compare_live(
    cfg: &ConnectConfig,
    input: &Input,
    rep: &Report,
) -> Result<Vec<LiveHash>> {
    let rev = rep.hashkv_revision;
    type Answer = (String, Result<(u32, i64), String>);
    let answers: Vec<Answer> = async {
        let mut out = Vec::new();
        for ep in &cfg.endpoints {
            let r = async {
                let mut c = cfg
                    .connect_one(ep, false)
                    .await
                    .map_err(|e| e.to_string())?;
                let r = tokio::time::timeout(cfg.command_timeout, c.hash_kv(rev))
                    .await
                    .map_err(|_| format!("no answer within {:?}", cfg.command_timeout))?
                    .map_err(|e| format!("hashkv at revision {rev}: {e}"))?;
                Ok::<_, String>((r.hash(), r.compact_version()))
            }
            .await;
            out.push((ep.clone(), r));
        }
        out
    }
    .await;
    let fe = |e: FormatError| e.in_file(&input.name);
    let db = Db::open(input.db.as_ref()).map_err(fe)?;
    let mut out = Vec::new();
    for (endpoint, r) in answers {
        match r {
            Ok((hash, compact)) => {
                let answers = if Some(compact) == rep.summary.compact_revision
                    || (compact < 0 && rep.summary.compact_revision.is_none())
                {
                    rep.hashkv_answers
                } else {
                    match hashkv(&db, rev, Some(compact)).map_err(fe)? {
                        Ok((_, hk)) => Some(hk.answers()),
                        Err(_) => None,
                    }
                };
                // A member still compacting gives the other answer (no key live at rev).
                out.push(LiveHash {
                    endpoint,
                    hashkv: Some(hash),
                    compact_revision: Some(compact),
                    matches: answers.is_some_and(|a| a.accepts(hash)),
                    expected: answers.map(|a| a.best()),
                    error: None,
                });
            }
            Err(e) => out.push(LiveHash {
                endpoint,
                hashkv: None,
                compact_revision: None,
                expected: None,
                matches: false,
                error: Some(e),
            }),
        }
    }
    Ok(out)
}
