//! `lifeboat config check`: validate the config and show the effective settings with their
//! origin (default, file, env, flag), secrets masked.

use serde::Serialize;

use super::output::print_json;
use super::{Global, OutputFormat};
use crate::config::Entry;
use crate::ExitCode;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Validate the config file (and environment), then print every effective setting and
    /// where it came from. Unknown keys are errors naming the key and line (exit 2).
    /// Connection and backup flags given here show how they would change the result.
    Check(CheckArgs),
}

#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// Destinations, as `backup --to` would take them.
    #[arg(long = "to", value_name = "DEST")]
    pub to: Vec<String>,
    #[command(flatten)]
    pub backup: crate::config::BackupSettings,
    #[command(flatten)]
    pub conn: super::connection::ConnectionArgs,
}

#[derive(Debug, Serialize)]
struct Report<'a> {
    /// The file read, if any.
    config_file: Option<String>,
    ok: bool,
    warnings: &'a [String],
    settings: &'a [Entry],
}

pub fn run(cmd: Command, g: &Global) -> anyhow::Result<ExitCode> {
    let Command::Check(a) = cmd;
    let layers = g
        .layers
        .with_etcd_flags(&a.conn)
        .with_backup_flags(&a.backup);
    let entries = layers.entries(&a.to)?;
    let file = layers.file.as_ref().map(|(p, _)| p.display().to_string());
    match g.output {
        OutputFormat::Json => print_json(&Report {
            config_file: file,
            ok: true,
            warnings: &layers.warnings,
            settings: &entries,
        })?,
        OutputFormat::Text => {
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            match &file {
                Some(f) => writeln!(out, "config file {f}: OK")?,
                None => writeln!(
                    out,
                    "no config file (give --config FILE or LIFEBOAT_CONFIG)"
                )?,
            }
            let width = entries.iter().map(|e| e.key.len()).max().unwrap_or(0);
            for e in &entries {
                let origin = match e.source {
                    crate::config::Origin::Default => "default".to_string(),
                    crate::config::Origin::File => "file".to_string(),
                    crate::config::Origin::Env => format!("env {}", e.from),
                    crate::config::Origin::Flag => format!("flag {}", e.from),
                };
                writeln!(out, "{:<width$}  {}  ({origin})", e.key, e.value)?;
            }
        }
    }
    Ok(ExitCode::Ok)
}
