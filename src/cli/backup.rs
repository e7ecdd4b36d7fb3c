use std::sync::Arc;

use super::connection::ConnectionArgs;
use super::{output, Global, OutputFormat};
use crate::config::BackupSettings;
use crate::jobs::backup::{BackupOptions, Destination};
use crate::jobs::run::{run_backup, Row, RunPlan, Watch};
use crate::{Error, ExitCode};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Destination: a local directory or s3://bucket/prefix. Repeat to store the same
    /// backup in several places from one stream. Without --to, the [[destination]]s of the
    /// config file.
    #[arg(long = "to", value_name = "DEST")]
    pub to: Vec<String>,
    /// Encrypt the stored data object (age) to this public key: `age1…` (age-keygen) or
    /// `ssh-ed25519 …` / `ssh-rsa …`. Repeat for several; any one of their secret keys
    /// opens the backup. Applies to every --to; without it, each [[destination]]'s
    /// encrypt_to. The manifest stays readable and records the public keys.
    #[arg(long = "encrypt-to", value_name = "RECIPIENT")]
    pub encrypt_to: Vec<String>,
    /// Encrypt to the public keys in FILE: one a line, `#` comments and blank lines
    /// ignored (as `age -R`). Repeatable; combines with --encrypt-to.
    #[arg(long = "encrypt-to-file", value_name = "FILE")]
    pub encrypt_to_file: Vec<std::path::PathBuf>,
    #[command(flatten)]
    pub settings: BackupSettings,
    #[command(flatten)]
    pub conn: ConnectionArgs,
    /// After a successful backup, apply the retention policy to each destination that
    /// stored it ([retention] in the config file, or the --keep-* flags).
    #[arg(long)]
    pub prune: bool,
    #[command(flatten)]
    pub policy: crate::config::RetentionConfig,
    /// Write node_exporter textfile-collector metrics here (atomically) after the run,
    /// success or failure. Default: [metrics] textfile in the config file, if set.
    #[arg(long, value_name = "PATH")]
    pub metrics_textfile: Option<std::path::PathBuf>,
}

pub fn run(a: Args, g: &Global) -> anyhow::Result<ExitCode> {
    let conn = a.conn.to_config(&g.layers)?;
    let layers = g.layers.with_backup_flags(&a.settings);
    let (b, _) = layers.backup()?;
    let (to, _) = layers.destinations(&a.to)?;
    let opts = BackupOptions {
        conn,
        source: b.source,
        retries: b.retries,
        frames: b.frames,
        rate_limit: b.rate_limit,
        stream_idle_timeout: b.stream_timeout,
        read_back: b.read_back,
        lock_timeout: b.lock_timeout,
    };
    crate::jobs::run::refuse_duplicates(&to)?;
    let mut dests = Vec::new();
    for d in &to {
        let encryption = layers.encryption_for(d, &a.encrypt_to, &a.encrypt_to_file)?;
        dests.push(Destination {
            name: d.clone(),
            store: g.access.open(d, true)?.into(),
            encryption: encryption.map(Arc::new),
            keys: super::keys(g),
        });
    }
    let policy = g.layers.retention(&a.policy).policy();
    if a.prune && policy.is_empty() {
        return Err(Error::flag(
            "--prune",
            "no retention rule: give --keep-last N (or another --keep-*), or [retention] in --config FILE",
        )
        .into());
    }
    if !a.prune && a.policy != Default::default() {
        return Err(Error::flag("--keep-*", "retention flags need --prune").into());
    }
    let textfile = a.metrics_textfile.clone().or_else(|| {
        g.layers
            .file
            .as_ref()
            .and_then(|(_, c)| c.metrics.as_ref()?.textfile.clone())
    });
    // Runs of one config file from cron/timers must not overlap on this host, even for S3
    // destinations (which have no writer lock).
    let _host_lock = match g.layers.file.as_ref() {
        Some((path, _)) => Some(crate::jobs::hostlock::acquire(path, b.lock_timeout)?),
        None => None,
    };
    let bar = Arc::new(super::progress::Bar::new(g.quiet));
    let rt = g.runtime()?;
    let plan = RunPlan {
        opts: &opts,
        dests: &dests,
        policy: a.prune.then_some(&policy),
        lock_timeout: b.lock_timeout,
    };
    let shown = Arc::new(Shown {
        textfile,
        prune: a.prune,
        quiet: g.quiet,
    });
    let ran = rt.block_on(run_backup(&plan, &dests, bar, shown))?;
    let prune_failed = ran.runs.iter().any(|r| r.stage == Some("prune"));
    let mut outcome = ran.backup?;
    if outcome.stored.is_empty() {
        return Err(every_destination_failed(std::mem::take(
            &mut outcome.failed,
        )));
    }
    for (dest, e) in &outcome.failed {
        eprintln!("lifeboat: error: backup to {dest} failed: {e}");
    }
    let Some((_, first)) = outcome.stored.first() else {
        return Ok(ExitCode::Failed);
    };
    match g.output {
        OutputFormat::Json => output::print_json(&with_destinations(first, &dests, &outcome)?)?,
        OutputFormat::Text => {
            for (dest, m) in &outcome.stored {
                if !g.quiet {
                    println!("backup {} stored in {dest}", m.id);
                }
            }
            if !g.quiet {
                print!("{}", super::list::describe(first));
            }
        }
    }
    Ok(if outcome.failed.is_empty() && !prune_failed {
        ExitCode::Ok
    } else {
        ExitCode::Failed
    })
}

/// The JSON document of a backup: the (first stored) manifest's fields, as scripts read
/// them, and `destinations`: per destination in `--to` order, whether it stored the backup
/// and, if not, why (`error`, `exit_code`).
fn with_destinations(
    m: &crate::catalog::Manifest,
    dests: &[Destination],
    outcome: &crate::jobs::backup::BackupOutcome,
) -> anyhow::Result<serde_json::Value> {
    let mut doc = serde_json::to_value(m)?;
    let per: Vec<serde_json::Value> = dests
        .iter()
        .map(
            |d| match outcome.failed.iter().find(|(n, _)| *n == d.name) {
                Some((_, e)) => serde_json::json!({
                    "destination": d.name,
                    "stored": false,
                    "error": e.to_string(),
                    "exit_code": e.exit_code().code(),
                }),
                None => serde_json::json!({ "destination": d.name, "stored": true }),
            },
        )
        .collect();
    if let Some(o) = doc.as_object_mut() {
        o.insert("destinations".into(), serde_json::Value::Array(per));
    }
    Ok(doc)
}

/// What the CLI shows of a run: a line per prune, and the metrics textfile if asked for.
struct Shown {
    textfile: Option<std::path::PathBuf>,
    prune: bool,
    quiet: bool,
}

impl Watch for Shown {
    fn pruned(&self, runs: &[crate::jobs::prune::DestinationRun]) {
        for r in runs {
            if let Some(e) = &r.prune_error {
                eprintln!("lifeboat: error: prune of {} failed: {e}", r.destination);
            } else if self.prune && !self.quiet && r.stage.is_none() {
                eprintln!("lifeboat: pruned {}: {} removed", r.destination, r.pruned);
            }
        }
    }

    /// A failure to write the textfile is reported but does not turn a good backup into a
    /// failed one: the backup is stored either way.
    fn metrics(&self, rows: &[Row<'_>], attempt: f64) {
        let Some(path) = &self.textfile else { return };
        if let Err(e) = crate::metrics::write_run(path, rows, attempt) {
            eprintln!("lifeboat: error: --metrics-textfile: {e}");
        }
    }
}

/// Nothing was stored: one error (so `-o json` prints its document) that names every
/// destination, carrying the failure with the highest exit code so that code decides.
fn every_destination_failed(failed: Vec<(String, Error)>) -> anyhow::Error {
    let names: Vec<String> = failed.iter().map(|(d, _)| d.clone()).collect();
    if failed.len() > 1 {
        for (dest, e) in &failed {
            eprintln!("lifeboat: error: backup to {dest} failed: {e}");
        }
    }
    match failed.into_iter().max_by_key(|(_, e)| e.exit_code()) {
        Some((dest, e)) if names.len() == 1 => {
            anyhow::Error::new(e).context(format!("backup to {dest} failed"))
        }
        Some((_, e)) => anyhow::Error::new(e).context(format!(
            "backup failed in every destination ({})",
            names.join(", ")
        )),
        // Nothing stored and no destination failed: cannot happen unless lifeboat is wrong.
        None => anyhow::Error::new(Error::Internal(
            "backup stored nothing and no destination failed".into(),
        )),
    }
}
