use super::output::print_json;
use super::{Global, OutputFormat};
use crate::catalog;
use crate::jobs::scrub::{record, rotation};
use crate::jobs::verify::{verify, VerifyReport};
use crate::{Error, ExitCode};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub from: super::flags::FromArgs,
    /// Backup id, or `latest`.
    #[arg(default_value = "latest", value_name = "ID|latest")]
    pub id: String,
    /// Verify every backup in the destination (JSON: an array of reports), and record each
    /// verdict in the destination (`<id>.verified.json`) for prune and the next rotation.
    /// Recording is best effort: on a read-only or full destination the verdicts still
    /// decide the exit code, with one warning line.
    #[arg(long, conflicts_with = "id")]
    pub all: bool,
    /// With --all: verify only the backups verified longest ago (never-verified first), up
    /// to this many stored bytes (64M-style suffixes); at least one backup is verified.
    #[arg(long, value_name = "BYTES", requires = "all")]
    pub budget: Option<crate::config::Size>,
}

fn print_text(r: &VerifyReport) {
    if r.ok {
        println!(
            "backup {}: OK (revision {}, {} database bytes, object {})",
            r.id, r.revision, r.db_size, r.object
        );
    } else {
        println!("backup {}: DAMAGED ({})", r.id, r.object);
        for p in &r.problems {
            println!("  problem: {p}");
        }
    }
}

pub fn run(a: Args, g: &Global) -> anyhow::Result<ExitCode> {
    let store = g.access.open(&a.from.from, false)?;
    // Rejected manifests are damaged backups: `--all` reports each and exits 3.
    let mut rejected = Vec::new();
    let manifests = if a.all {
        let (all, bad) = catalog::list(store.as_ref())?;
        for b in &bad {
            eprintln!("lifeboat: error: {}", b.error);
        }
        rejected = bad;
        if all.is_empty() {
            all
        } else {
            rotation(store.as_ref(), &all, a.budget.map(|b| b.0))?
        }
    } else {
        vec![catalog::resolve(store.as_ref(), &a.id)?]
    };
    if manifests.is_empty() && rejected.is_empty() {
        return Err(Error::NotFound(format!("no complete backup in {}", store.location())).into());
    }
    let bar = super::progress::Bar::new(g.quiet);
    let mut reports = Vec::new();
    // Backups that could not be verified for a configuration reason (no identity, or one
    // that opens none of the recipients): not damage, so no verdict and nothing recorded.
    let mut not_verified: Vec<crate::Error> = Vec::new();
    // Recording verdicts is best effort: a read-only or full destination does not hide
    // them. (first error, how many were not recorded)
    let mut unrecorded: Option<(crate::Error, usize)> = None;
    for m in &manifests {
        use crate::jobs::backup::Progress;
        bar.begin(&format!("verify {}", m.id), Some(m.stored_size));
        let r = verify(store.as_ref(), m, &bar.setter(), g.access.identity());
        bar.end();
        let r = match r {
            Ok(r) => r,
            Err(e) if a.all && e.exit_code() == ExitCode::Usage => {
                not_verified.push(e);
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        if a.all {
            if let Err(e) = record(store.as_ref(), &r, time::OffsetDateTime::now_utc()) {
                match &mut unrecorded {
                    None => unrecorded = Some((e, 1)),
                    Some((_, n)) => *n += 1,
                }
            }
        }
        if g.output == OutputFormat::Text {
            print_text(&r);
        }
        reports.push(r);
    }
    if let Some((e, n)) = unrecorded {
        eprintln!(
            "lifeboat: warning: {n} verdict(s) not recorded in {} ({e}); prune and the next rotation do not see them, the verdicts shown stand",
            store.location()
        );
    }
    // One line per backup left unverified; when nothing was verified, the first of them
    // is the command's error (exit 2; the JSON error document).
    let first = if reports.is_empty() && rejected.is_empty() && !not_verified.is_empty() {
        Some(not_verified.remove(0))
    } else {
        None
    };
    for e in &not_verified {
        eprintln!("lifeboat: error: {e}");
    }
    if let Some(e) = first {
        return Err(e.into());
    }
    for b in &rejected {
        let r = VerifyReport {
            id: b
                .name
                .strip_suffix(catalog::MANIFEST_SUFFIX)
                .unwrap_or(&b.name)
                .to_string(),
            ok: false,
            problems: vec![format!("manifest rejected: {}", b.error)],
            object: format!("{}/{}", store.location(), b.name),
            db_size: 0,
            stored_size: 0,
            revision: 0,
        };
        if g.output == OutputFormat::Text {
            print_text(&r);
        }
        reports.push(r);
    }
    if g.output == OutputFormat::Json {
        if a.all {
            print_json(&reports)?;
        } else if let Some(r) = reports.first() {
            print_json(r)?;
        }
    }
    // Damage found outranks backups left unverified for want of the right identity.
    Ok(if !reports.iter().all(|r| r.ok) {
        ExitCode::Integrity
    } else if !not_verified.is_empty() {
        ExitCode::Usage
    } else {
        ExitCode::Ok
    })
}
