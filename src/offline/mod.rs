//! Offline work on database images: opening whatever the operator points at (an etcdctl
//! snapshot, a raw `member/snap/db`, a lifeboat backup file, or `DEST:ID`), and the work of
//! `inspect`, `diff` and `get`, callable without a process.
//!
//! Opening never writes and never locks: a db held by a running etcd is found through
//! `/proc/locks` and refused unless `force` (then a point-in-time copy is read).

mod compare_live;
pub mod diff;
#[doc(hidden)]
#[cfg(any(test, feature = "testkit"))]
pub mod fuzzing;
pub mod get;
mod input;
pub mod verify;

pub use compare_live::{compare_live, LiveHash};
pub use input::{open_input, Input, InputKind, Layout, OpenOptions};
pub use verify::{read_verified, DigestStatus, Verification};

use serde::Serialize;

use crate::format::bolt::{Db, Problem};
use crate::format::etcd::report::{report, Report, ReportOptions};
use crate::io::ReadAt;

/// How a digest over the whole database image came out.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct DigestCheck {
    /// Where the expected digest came from: "trailer" (etcdctl snapshot) or "manifest".
    pub source: String,
    pub expected: String,
    pub computed: String,
    pub ok: bool,
}

pub use crate::io::sha256_at as sha256_of;

/// `inspect`'s result: what was read, the digest check, and the etcd report.
#[derive(Debug, Clone, Serialize)]
pub struct Inspection {
    pub input: String,
    pub input_kind: InputKind,
    /// Bytes of the file (or object) as given.
    pub file_size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<DigestCheck>,
    #[serde(flatten)]
    pub report: Report,
}

/// Inspect an opened input: the one-pass report, with the SHA-256 over the image computed
/// on a second thread at the same time when there is a digest to compare with.
pub fn inspect(input: &Input, opts: &ReportOptions) -> Inspection {
    let src: &dyn ReadAt = input.db.as_ref();
    let (mut rep, digest) = std::thread::scope(|s| {
        let digest = input.expected_sha256.as_ref().map(|(source, want)| {
            let source = source.clone();
            let want = *want;
            s.spawn(move || (source, want, sha256_of(src)))
        });
        let rep = match Db::open(src) {
            Ok(db) => report(&db, opts),
            Err(e) => Report {
                ok: false,
                problems: vec![e.to_problem()],
                ..Report::default()
            },
        };
        (rep, digest.map(|h| h.join()))
    });
    let mut digest_check = None;
    if let Some(joined) = digest {
        match joined {
            Ok((source, want, Ok(got))) => {
                let ok = got == want;
                if !ok {
                    rep.problems.push(Problem::new(
                        None,
                        None,
                        format!(
                            "SHA-256 of the database does not match the {source}: {source} says {}, data hashes to {}",
                            hex::encode(want),
                            hex::encode(got)
                        ),
                    ));
                }
                digest_check = Some(DigestCheck {
                    source,
                    expected: hex::encode(want),
                    computed: hex::encode(got),
                    ok,
                });
            }
            Ok((source, _, Err(e))) => rep.problems.push(Problem::new(
                None,
                None,
                format!("cannot compute the SHA-256 to compare with the {source}: {e}"),
            )),
            Err(_) => rep
                .problems
                .push(Problem::new(None, None, "digest thread failed")),
        }
    }
    if let Some(p) = input
        .layout
        .filter(|l| l.has_extra_bytes())
        .and_then(|l| l.problem())
    {
        rep.problems.push(p);
    }
    // A snapshot is exactly `pgid * page_size` bytes before its trailer.
    if input.kind == InputKind::Snapshot
        && rep.summary.db_size != 0
        && rep.summary.db_size != src.size()
    {
        rep.problems.push(Problem::new(
            None,
            Some(src.size()),
            format!(
                "snapshot holds {} bytes before its trailer, the meta page says {} ({} pages of {})",
                src.size(),
                rep.summary.db_size,
                rep.pages.total,
                rep.summary.page_size
            ),
        ));
    }
    rep.ok = rep.problems.is_empty() && rep.problems_not_shown == 0;
    Inspection {
        input: input.name.clone(),
        input_kind: input.kind,
        file_size: input.file_size,
        digest: digest_check,
        report: rep,
    }
}
