//! `lifeboat capture --config FILE`: record every change between full backups
//! (point-in-time recovery), until SIGTERM/SIGINT.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::connection::ConnectionArgs;
use super::{output, Global, OutputFormat};
use crate::jobs::backup::Destination;
use crate::jobs::capture::{CaptureMetrics, CaptureOptions};
use crate::{Error, ExitCode};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Destination: a local directory or s3://bucket/prefix (repeatable). Without --to, the
    /// [[destination]]s of the config file.
    #[arg(long = "to", value_name = "DEST")]
    pub to: Vec<String>,
    #[command(flatten)]
    pub conn: ConnectionArgs,
}

#[derive(serde::Serialize)]
struct Summary {
    cluster_revision: i64,
    durable_revision: i64,
    segments: u64,
    bytes: u64,
    gaps: u64,
}

pub fn run(a: Args, g: &Global) -> anyhow::Result<ExitCode> {
    // SIGTERM/SIGINT are ours from the start: a stop that arrives while the destinations
    // open still ends with a summary and exit 0, never the default death by signal.
    let rt = g.runtime()?;
    let (mut term, mut int) = {
        use tokio::signal::unix::{signal, SignalKind};
        let _in_rt = rt.enter();
        (
            signal(SignalKind::terminate())?,
            signal(SignalKind::interrupt())?,
        )
    };
    let conn = a.conn.to_config(&g.layers)?;
    let settings = match g
        .layers
        .file
        .as_ref()
        .and_then(|(p, c)| Some((p, c.capture.as_ref()?)))
    {
        Some((p, c)) => c.resolve(&p.display().to_string())?,
        None => crate::config::CaptureSettings::default(),
    };
    let (to, _) = g.layers.destinations(&a.to)?;
    if to.is_empty() {
        return Err(Error::flag(
            "--to",
            "no destination: give --to DEST or [[destination]] in --config FILE",
        )
        .into());
    }
    crate::jobs::run::refuse_duplicates(&to)?;
    let mut dests = Vec::new();
    for d in &to {
        let encryption = g.layers.encryption_for(d, &[], &[])?;
        dests.push(Destination {
            name: d.clone(),
            store: g.access.open(d, true)?.into(),
            encryption: encryption.map(Arc::new),
            keys: super::keys(g),
        });
    }
    let opts = CaptureOptions { conn, settings };
    let metrics = Arc::new(CaptureMetrics::default());
    rt.block_on(async {
        let stop = async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        };
        crate::jobs::capture::run(&opts, &dests, Arc::clone(&metrics), stop).await?;
        Ok::<_, anyhow::Error>(())
    })?;
    let s = Summary {
        cluster_revision: metrics.head_revision.load(Ordering::Relaxed),
        durable_revision: metrics.durable_revision.load(Ordering::Relaxed),
        segments: metrics.segments.load(Ordering::Relaxed),
        bytes: metrics.bytes.load(Ordering::Relaxed),
        gaps: metrics.gaps.load(Ordering::Relaxed),
    };
    match g.output {
        OutputFormat::Json => output::print_json(&s)?,
        OutputFormat::Text if !g.quiet => println!(
            "capture stopped: revision {} durable in every destination (etcd at {}); {} segments, {} bytes, {} gaps",
            s.durable_revision, s.cluster_revision, s.segments, s.bytes, s.gaps
        ),
        OutputFormat::Text => {}
    }
    Ok(ExitCode::Ok)
}
