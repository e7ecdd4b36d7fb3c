use super::output::{human_bytes, print_json};
use super::{Global, OutputFormat};
use crate::config::resolve::DEFAULT_LOCK_TIMEOUT;
use crate::config::RetentionConfig;
use crate::jobs::prune::PruneReport;
use crate::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub from: super::flags::FromArgs,
    #[command(flatten)]
    pub policy: RetentionConfig,
    /// Print what would be kept (and by which rules) and removed; remove nothing.
    #[arg(long)]
    pub dry_run: bool,
}

fn print_text(r: &PruneReport) {
    for b in &r.backups {
        if b.action == crate::jobs::prune::Action::Keep {
            println!("keep    {}  ({})", b.id, b.reasons.join(", "));
        } else {
            println!("remove  {}", b.id);
        }
    }
    for x in &r.rejected {
        println!("skip    {x}");
    }
    let verb = if r.dry_run { "would remove" } else { "removed" };
    println!(
        "{}: {} kept, {verb} {} ({})",
        r.destination,
        r.kept,
        r.removed,
        human_bytes(r.removed_bytes)
    );
    if r.segments_removed > 0 {
        println!(
            "{}: {verb} {} capture segment(s) ({}) that only the removed backups could start from",
            r.destination,
            r.segments_removed,
            human_bytes(r.segments_removed_bytes)
        );
    }
}

pub fn run(a: Args, g: &Global) -> anyhow::Result<ExitCode> {
    let policy = g.layers.retention(&a.policy).policy();
    let lock_wait = g
        .layers
        .backup()
        .map(|(b, _)| b.lock_timeout)
        .unwrap_or(DEFAULT_LOCK_TIMEOUT);
    let repo = super::repository(&a.from.from, g)?;
    let report = repo.prune(&policy, a.dry_run, lock_wait)?;
    match g.output {
        OutputFormat::Json => print_json(&report)?,
        OutputFormat::Text => print_text(&report),
    }
    for x in &report.rejected {
        eprintln!("lifeboat: warning: {x} (left in place)");
    }
    for l in &report.locked {
        eprintln!(
            "lifeboat: warning: backup {} in {} is object-locked until {}: not removed",
            l.id, report.destination, l.retain_until
        );
    }
    Ok(ExitCode::Ok)
}
