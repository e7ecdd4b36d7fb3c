use super::output::print_json;
use super::{Global, OutputFormat};
use crate::catalog;
use crate::jobs::scrub::{scrub, ScrubOptions};
use crate::jobs::verify::VerifyReport;
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
    /// Check the point-in-time recovery chain instead of the backups: every capture
    /// segment's digest and link, and, replayed onto the backup that starts each window,
    /// every live HashKV capture recorded (JSON: an array of windows). Exit 3 on damage.
    #[arg(long, conflicts_with_all = ["all", "budget"])]
    pub capture: bool,
}

fn run_capture(repo: &catalog::Repository, g: &Global) -> anyhow::Result<ExitCode> {
    let verdicts = crate::restore::pitr::verify::verify_windows(repo)?;
    if verdicts.is_empty() {
        return Err(Error::NotFound(format!(
            "no capture segments in {}: nothing to verify (see `lifeboat capture`)",
            repo.location()
        ))
        .into());
    }
    match g.output {
        OutputFormat::Json => print_json(&verdicts)?,
        OutputFormat::Text => {
            for v in &verdicts {
                let w = &v.window;
                println!(
                    "capture of cluster {} revisions {}..{} ({} segments, {} records): {}",
                    w.cluster_id,
                    w.from_revision,
                    w.to_revision,
                    w.segments,
                    v.records,
                    if v.ok { "OK" } else { "DAMAGED" }
                );
                if !v.live_hashes_checked.is_empty() {
                    println!(
                        "  live hashkv reproduced at {} revision(s), the last at {}",
                        v.live_hashes_checked.len(),
                        v.live_hashes_checked.iter().max().unwrap_or(&0)
                    );
                }
                for p in &v.problems {
                    println!("  problem: {p}");
                }
                if let Some(n) = &v.note {
                    println!("  note: {n}");
                }
            }
        }
    }
    Ok(if verdicts.iter().all(|v| v.ok) {
        ExitCode::Ok
    } else {
        ExitCode::Integrity
    })
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

/// The CLI's view of a scrub run: a bar per backup, each verdict printed as it comes.
struct Shown<'a> {
    bar: &'a super::progress::Bar,
    text: bool,
}

impl crate::jobs::scrub::Watch for Shown<'_> {
    fn rejected(&self, b: &catalog::BadManifest) {
        eprintln!("lifeboat: error: {}", b.error);
    }
    fn begin(&self, m: &catalog::Manifest) {
        use crate::jobs::backup::Progress;
        self.bar
            .begin(&format!("verify {}", m.id), Some(m.stored_size));
    }
    fn set(&self, done: u64) {
        use crate::jobs::backup::Progress;
        self.bar.set(done);
    }
    fn end(&self) {
        use crate::jobs::backup::Progress;
        self.bar.end();
    }
    fn verdict(&self, r: &VerifyReport) {
        if self.text {
            print_text(r);
        }
    }
}

pub fn run(a: Args, g: &Global) -> anyhow::Result<ExitCode> {
    let repo = super::repository(&a.from.from, g)?;
    if a.capture {
        return run_capture(&repo, g);
    }
    let bar = super::progress::Bar::new(g.quiet);
    let text = g.output == OutputFormat::Text;
    // Rejected manifests are damaged backups: `--all` reports each and exits 3.
    let (mut reports, rejected, mut not_verified) = if a.all {
        // The scrub job: the rotation up to the budget, each verdict recorded in the
        // destination (best effort: a read-only or full destination does not hide them).
        let s = scrub(
            &repo,
            &ScrubOptions {
                budget: a.budget.map(|b| b.0),
                best_effort_record: true,
                watch: &Shown { bar: &bar, text },
            },
        )?;
        if s.chosen == 0 && s.rejected.is_empty() {
            return Err(
                Error::NotFound(format!("no complete backup in {}", repo.location())).into(),
            );
        }
        if let Some((e, n)) = s.unrecorded {
            eprintln!(
                "lifeboat: warning: {n} verdict(s) not recorded in {} ({e}); prune and the next rotation do not see them, the verdicts shown stand",
                repo.location()
            );
        }
        (s.reports, s.rejected, s.not_verified)
    } else {
        let m = repo.resolve(&a.id)?;
        use crate::jobs::backup::Progress;
        bar.begin(&format!("verify {}", m.id), Some(m.stored_size));
        let r = repo.verify(&m, &bar.setter());
        bar.end();
        let r = r?;
        if text {
            print_text(&r);
        }
        (vec![r], Vec::new(), Vec::new())
    };
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
            object: format!("{}/{}", repo.location(), b.name),
            db_size: 0,
            stored_size: 0,
            revision: 0,
        };
        if text {
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
