use super::Global;
use crate::config::Layers;
use crate::daemon::{self, DEFAULT_SHUTDOWN_GRACE};
use crate::store::open_destination;
use crate::{Error, ExitCode};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// How long an in-flight backup may take to finish after SIGTERM/SIGINT before it is
    /// aborted (leaving nothing listed).
    #[arg(long, value_name = "DURATION", default_value_t = crate::config::Dur(DEFAULT_SHUTDOWN_GRACE))]
    pub shutdown_grace: crate::config::Dur,
}

pub fn run(a: Args, g: &Global) -> anyhow::Result<ExitCode> {
    let Some(path) = g
        .config
        .config
        .clone()
        .or_else(|| super::settings().file.as_ref().map(|(p, _)| p.clone()))
    else {
        return Err(Error::flag(
            "--config",
            "lifeboat run needs --config FILE (with [schedule])",
        )
        .into());
    };
    // Re-read on SIGHUP: the file, and the environment as it was at start. The identity
    // is the one named at start, read once (as the daemon has always done).
    let keys = super::keys(g);
    let load = move || {
        let layers = Layers::load(Some(&path), &|k| std::env::var(k).ok())?;
        daemon::plan(&layers, &|d| open_destination(d, true), &keys)
    };
    daemon::run(load, a.shutdown_grace.0)?;
    Ok(ExitCode::Ok)
}
