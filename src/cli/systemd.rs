use std::path::PathBuf;

use super::Global;
use crate::config::Config;
use crate::daemon::units::{self, UnitInput};
use crate::{Error, ExitCode};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// systemd calendar expression for the timer (`hourly`, `*:0/15`, `daily`).
    #[arg(long, value_name = "CALENDAR", default_value = "hourly")]
    pub on_calendar: String,
    /// Write lifeboat-backup.service and lifeboat-backup.timer into this directory (e.g.
    /// /etc/systemd/system) instead of printing them.
    #[arg(long = "output-dir", visible_alias = "dir", value_name = "DIR")]
    pub output_dir: Option<PathBuf>,
    /// Where the service writes its metrics. Default: [metrics] textfile in the config
    /// file, else /var/lib/node_exporter/textfile_collector/lifeboat.prom.
    #[arg(long, value_name = "PATH")]
    pub metrics_textfile: Option<PathBuf>,
}

fn absolute(flag: &str, p: &std::path::Path) -> anyhow::Result<PathBuf> {
    std::fs::canonicalize(p).map_err(|e| {
        Error::flag(
            flag,
            format!("{}: {}", p.display(), crate::error::io_words(&e)),
        )
        .into()
    })
}

/// The directory the units go into must exist: one line naming it and what to do.
fn check_output_dir(dir: &std::path::Path) -> anyhow::Result<()> {
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(Error::flag(
            "--output-dir",
            format!(
                "{} is not a directory: give the directory the units go into (e.g. /etc/systemd/system)",
                dir.display()
            ),
        )
        .into()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::flag(
            "--output-dir",
            format!(
                "{} does not exist: create it first (`mkdir -p {}`) or give an existing one (e.g. /etc/systemd/system)",
                dir.display(),
                dir.display()
            ),
        )
        .into()),
        Err(e) => Err(Error::flag(
            "--output-dir",
            format!("{}: {}", dir.display(), crate::error::io_words(&e)),
        )
        .into()),
    }
}

pub fn run(a: Args, g: &Global) -> anyhow::Result<ExitCode> {
    let Some(path) = g.config.config.clone() else {
        return Err(Error::flag(
            "--config",
            "lifeboat systemd needs --config FILE: the service runs `lifeboat backup --config FILE`",
        )
        .into());
    };
    let config_path = absolute("--config", &path)?;
    let text = std::fs::read_to_string(&config_path).map_err(|e| {
        Error::flag(
            "--config",
            format!("{}: {}", config_path.display(), crate::error::io_words(&e)),
        )
    })?;
    let config = Config::parse(&config_path.display().to_string(), &text)?;
    if config.destination.is_empty() {
        return Err(Error::flag(
            "--config",
            format!(
                "{}: no [[destination]]: the service would have nowhere to back up to",
                config_path.display()
            ),
        )
        .into());
    }
    let exe = std::env::current_exe()
        .map_err(|e| Error::Failed(format!("cannot tell where this lifeboat binary is: {e}")))?;
    let textfile = a
        .metrics_textfile
        .clone()
        .or_else(|| config.metrics.as_ref()?.textfile.clone())
        .unwrap_or_else(|| PathBuf::from(units::DEFAULT_TEXTFILE));
    let u = UnitInput {
        exe: &exe,
        config_path: &config_path,
        config: &config,
        on_calendar: &a.on_calendar,
        textfile: &textfile,
    };
    let (service, timer) = (units::service(&u)?, units::timer(&u)?);
    match &a.output_dir {
        None => {
            println!("# --- {} ---\n{service}", units::SERVICE_NAME);
            println!("# --- {} ---\n{timer}", units::TIMER_NAME);
        }
        Some(dir) => {
            check_output_dir(dir)?;
            for (name, body) in [(units::SERVICE_NAME, &service), (units::TIMER_NAME, &timer)] {
                let p = dir.join(name);
                std::fs::write(&p, body).map_err(|e| {
                    Error::Failed(
                        format!(
                            "cannot write {}: {} (run as root for /etc/systemd/system, or give a directory you can write)",
                            p.display(),
                            crate::error::io_words(&e)
                        ),
                    )
                })?;
                if !g.quiet {
                    eprintln!("wrote {}", p.display());
                }
            }
            if !g.quiet {
                eprintln!(
                    "next: systemctl daemon-reload && systemctl enable --now {}",
                    units::TIMER_NAME
                );
            }
        }
    }
    Ok(ExitCode::Ok)
}
