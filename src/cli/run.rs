use super::Global;
use crate::config::Layers;
use crate::daemon::{self, DEFAULT_SHUTDOWN_GRACE};
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
        .or_else(|| g.layers.file.as_ref().map(|(p, _)| p.clone()))
    else {
        return Err(Error::flag(
            "--config",
            "lifeboat run needs --config FILE (with [schedule])",
        )
        .into());
    };
    // Re-read on SIGHUP: the file, and the environment as it was at start; the command
    // line's --s3-* and --identity apply on top, as they did at start.
    // The edge built the runtime (one worker, after `daemon::prepare_process`); every
    // reload's S3 stores run on it too.
    let rt = g.runtime()?;
    let (s3_flags, identity, handle) =
        (g.s3.clone(), g.config.identity.clone(), rt.handle().clone());
    let load = move || {
        let mut layers = Layers::load(Some(&path), &|k| std::env::var(k).ok())?;
        layers.flags.s3 = s3_flags.clone();
        let access = layers
            .access(identity.as_deref())
            .with_runtime(handle.clone());
        daemon::plan(&layers, &access)
    };
    rt.block_on(daemon::run(load, a.shutdown_grace.0))?;
    Ok(ExitCode::Ok)
}
