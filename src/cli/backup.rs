use std::sync::Arc;

use super::connection::{runtime, ConnectionArgs};
use super::{output, Global, OutputFormat};
use crate::config::BackupSettings;
use crate::jobs::backup::{backup, BackupOptions, Destination};
use crate::store::open_destination;
use crate::{Error, ExitCode};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Destination: a local directory (s3://bucket/prefix in a later release). Repeat to
    /// store the same backup in several places from one stream. Without --to, the
    /// [[destination]]s of the config file.
    #[arg(long = "to", value_name = "DEST")]
    pub to: Vec<String>,
    #[command(flatten)]
    pub settings: BackupSettings,
    #[command(flatten)]
    pub conn: ConnectionArgs,
}

pub fn run(a: Args, g: &Global) -> anyhow::Result<ExitCode> {
    let conn = a.conn.to_config()?;
    let layers = super::settings().with_backup_flags(&a.settings);
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
    let mut dests = Vec::new();
    for d in &to {
        if dests.iter().any(|x: &Destination| x.name == *d) {
            return Err(Error::flag("--to", format!("{d} given twice")).into());
        }
        dests.push(Destination {
            name: d.clone(),
            store: open_destination(d, true)?.into(),
        });
    }
    let bar = Arc::new(super::progress::Bar::new(g.quiet));
    let rt = runtime()?;
    let mut outcome = rt.block_on(backup(&opts, &dests, bar))?;
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
        OutputFormat::Json => output::print_json(first)?,
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
    Ok(if outcome.failed.is_empty() {
        ExitCode::Ok
    } else {
        ExitCode::Failed
    })
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
        None => anyhow::Error::new(Error::Failed("backup stored nothing".into())),
    }
}
