//! Reading an input only as far as it can be trusted: its layout (bytes after the last
//! page), its full-file SHA-256 against the trailer or the manifest, and, through the
//! validating cursor, every page the work touches.
//!
//! The digest needs the whole file, so it runs on its own thread while the work walks
//! the tree, and the answer is handed back only after both have finished: nothing is
//! printed from a file whose digest has not been compared yet.

use serde::Serialize;

use super::{sha256_of, Input};
use crate::error::InFile;
use crate::{Error, Result};

/// Whether the full-file digest was compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DigestStatus {
    /// The SHA-256 matched the one recorded in the trailer or the manifest.
    Verified,
    /// `--no-verify`: only the pages read were validated.
    Skipped,
    /// No digest is recorded for this input (a raw db, a backup file without its
    /// manifest): only the pages read were validated.
    Absent,
}

/// How one input was checked, for the JSON answer (`verification`).
#[derive(Debug, Clone, Serialize)]
pub struct Verification {
    pub input: String,
    pub digest: DigestStatus,
    /// Where the expected digest is recorded: "trailer" or "manifest".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

/// Run `work` over `inputs` with their digests compared at the same time (unless
/// `verify` is false), and return its answer only if every input passed. A layout
/// problem fails before any work. When both the work and a digest fail, the work's
/// integrity error wins (it names the page); otherwise a digest mismatch wins over
/// whatever the work made of the damaged data.
pub fn read_verified<T>(
    inputs: &[&Input],
    verify: bool,
    work: impl FnOnce() -> Result<T>,
) -> Result<(T, Vec<Verification>)> {
    for i in inputs {
        i.check_layout()?;
    }
    let (answer, digests) = std::thread::scope(|s| {
        let handles: Vec<_> = inputs
            .iter()
            .map(|i| {
                let want = i.expected_sha256.as_ref().filter(|_| verify);
                want.map(|(source, want)| s.spawn(move || check_digest(i, source, want)))
            })
            .collect();
        let answer = work();
        let digests: Vec<Option<Result<()>>> = handles
            .into_iter()
            .map(|h| {
                h.map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(Error::Internal("digest thread failed".into())))
                })
            })
            .collect();
        (answer, digests)
    });
    let digest_err = digests.into_iter().flatten().find_map(Result::err);
    let answer = match (answer, digest_err) {
        (Err(e @ Error::Corrupt { page: Some(_), .. }), _) => return Err(e),
        (_, Some(e)) => return Err(e),
        (answer, None) => answer?,
    };
    let report = inputs
        .iter()
        .map(|i| Verification {
            input: i.name.clone(),
            digest: match (&i.expected_sha256, verify) {
                (None, _) => DigestStatus::Absent,
                (Some(_), false) => DigestStatus::Skipped,
                (Some(_), true) => DigestStatus::Verified,
            },
            source: i.expected_sha256.as_ref().map(|(s, _)| s.clone()),
        })
        .collect();
    Ok((answer, report))
}

fn check_digest(input: &Input, source: &str, want: &[u8; 32]) -> Result<()> {
    let got = sha256_of(input.db.as_ref()).map_err(|e| {
        crate::format::bolt::FormatError::Io {
            offset: 0,
            len: 0,
            source: e,
        }
        .in_file(&input.name)
    })?;
    if &got != want {
        return Err(Error::Corrupt {
            file: input.name.clone(),
            page: None,
            offset: None,
            what: format!(
                "SHA-256 of the database does not match the {source}: {source} says {}, data hashes to {}",
                hex::encode(want),
                hex::encode(got)
            ),
        });
    }
    Ok(())
}
