//! `lifeboat cleanup`: remove what killed runs left in a destination.

use serde::Serialize;

use super::output::print_json;
use super::{Global, OutputFormat};
use crate::config::Dur;
use crate::error::StoreErrorKind;
use crate::{Error, ExitCode};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub from: super::flags::FromArgs,
    /// Abort S3 multipart uploads started longer ago than this (younger ones may belong to
    /// a backup that is still running).
    #[arg(long, value_name = "DURATION", default_value = "1d")]
    pub older_than: Dur,
    /// Say what would be removed and aborted, removing nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Serialize)]
struct Report {
    destination: String,
    /// Nothing was removed: the lists say what would be.
    dry_run: bool,
    /// Partial objects removed (local directories).
    removed_partials: Vec<String>,
    /// Multipart uploads aborted (S3).
    aborted_uploads: Vec<String>,
    /// What could not be cleaned and why (a server without ListMultipartUploads).
    warnings: Vec<String>,
}

pub fn run(a: Args, g: &Global) -> anyhow::Result<ExitCode> {
    let store = g.access.open(&a.from.from, false)?;
    let (b, _) = g.layers.backup()?;
    // With the writer lock held, partial objects belong to dead runs only.
    let lock = store.lock(b.lock_timeout)?;
    let removed_partials = if a.dry_run {
        store.partials()?
    } else {
        store.clean_partials()?
    };
    // A server that cannot list multipart uploads (s3s-fs) has none this can find: say
    // so in one line; the rest of the clean-up stands.
    let mut warnings = Vec::new();
    let uploads = if a.dry_run {
        store.stale_uploads(a.older_than.0)
    } else {
        store.abort_stale_uploads(a.older_than.0)
    };
    let aborted_uploads = match uploads {
        Ok(v) => v,
        Err(
            e @ Error::Store {
                kind: StoreErrorKind::Unsupported,
                ..
            },
        ) => {
            let w = format!(
                "{e}; the server cannot list multipart uploads, so stale ones cannot be found or aborted there"
            );
            eprintln!("lifeboat: warning: {w}");
            warnings.push(w);
            Vec::new()
        }
        Err(e) => return Err(e.into()),
    };
    drop(lock);
    let r = Report {
        dry_run: a.dry_run,
        destination: store.location(),
        removed_partials,
        aborted_uploads,
        warnings,
    };
    match g.output {
        OutputFormat::Json => print_json(&r)?,
        OutputFormat::Text => {
            let (removed, aborted) = if r.dry_run {
                ("would remove", "would abort")
            } else {
                ("removed", "aborted")
            };
            for p in &r.removed_partials {
                println!("{removed} partial object {p}");
            }
            for u in &r.aborted_uploads {
                println!("{aborted} upload {u}");
            }
            if r.removed_partials.is_empty() && r.aborted_uploads.is_empty() {
                println!("{}: nothing to clean up", r.destination);
            }
        }
    }
    Ok(ExitCode::Ok)
}
