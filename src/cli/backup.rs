use std::sync::Arc;
use std::time::Duration;

use super::connection::{runtime, ConnectionArgs};
use super::{output, Global, OutputFormat};
use crate::jobs::backup::{backup, BackupOptions, Destination, ReadBack};
use crate::pipeline::FrameOptions;
use crate::source::etcd::SourcePolicy;
use crate::store::open_destination;
use crate::{Error, ExitCode};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Destination: a local directory (s3://bucket/prefix in a later release). Repeat to
    /// store the same backup in several places from one stream.
    #[arg(long = "to", value_name = "DEST", required = true)]
    pub to: Vec<String>,
    /// Member to stream from: `leader`, `freshest` (highest raft term and applied index),
    /// or a member name or hex id.
    #[arg(long, default_value = "leader", value_name = "leader|freshest|NAME")]
    pub source: SourcePolicy,
    /// Further attempts, on the next healthy member, when a stream breaks.
    #[arg(long, default_value_t = 3)]
    pub retries: u32,
    /// zstd compression level (1-19; 3 is fast and compresses etcd data well).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(i32).range(1..=19))]
    pub zstd_level: i32,
    /// Compression threads (default: one per CPU).
    #[arg(long)]
    pub zstd_threads: Option<usize>,
    /// Cap the streaming rate, bytes per second (suffixes K, M, G: 1024-based), to spare
    /// the member's disk and network.
    #[arg(long, value_parser = parse_size, value_name = "BYTES")]
    pub rate_limit: Option<u64>,
    /// Give up on a stream when no data arrives for this long.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub stream_timeout: Duration,
    /// What to read back from the store before the manifest is written: `facts` (the
    /// database pages the manifest quotes), `digest` (also every stored byte against the
    /// SHA-256 computed while writing), `full` (also decode every frame). The in-flight check
    /// of etcd's SHA-256 trailer always happens; `lifeboat verify` checks everything.
    #[arg(long, value_enum, default_value = "digest")]
    pub read_back: ReadBack,
    /// How long to wait for another backup's lock on a destination before giving up
    /// (the message names the holder: pid, host, since when).
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    pub lock_timeout: Duration,
    #[command(flatten)]
    pub conn: ConnectionArgs,
}

/// `64M`, `1.5G`, `1048576`: sizes in bytes with optional 1024-based suffixes.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, mult) = match s.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let m = match c.to_ascii_uppercase() {
                'K' => 1u64 << 10,
                'M' => 1 << 20,
                'G' => 1 << 30,
                'T' => 1 << 40,
                'B' => 1,
                _ => return Err(format!("{s:?}: unknown size suffix {c:?} (use K, M, G, T)")),
            };
            (&s[..i], m)
        }
        _ => (s, 1),
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a size (e.g. 512K, 64M, 1G)"))?;
    if v.is_nan() || v <= 0.0 || !v.is_finite() {
        return Err(format!("{s:?}: size must be positive"));
    }
    Ok((v * mult as f64) as u64)
}

pub fn run(a: Args, g: &Global) -> anyhow::Result<ExitCode> {
    let conn = a.conn.to_config()?;
    let mut frames = FrameOptions {
        level: a.zstd_level,
        ..FrameOptions::default()
    };
    if let Some(t) = a.zstd_threads {
        frames.threads = t;
    }
    let opts = BackupOptions {
        conn,
        source: a.source,
        retries: a.retries,
        frames,
        rate_limit: a.rate_limit,
        stream_idle_timeout: a.stream_timeout,
        read_back: a.read_back,
        lock_timeout: a.lock_timeout,
    };
    let mut dests = Vec::new();
    for d in &a.to {
        if dests.iter().any(|x: &Destination| x.name == *d) {
            return Err(Error::Usage(format!("--to {d} given twice")).into());
        }
        dests.push(Destination {
            name: d.clone(),
            store: open_destination(d, true)?.into(),
        });
    }
    let bar = Arc::new(super::progress::Bar::new(g.quiet));
    let rt = runtime()?;
    let outcome = rt.block_on(backup(&opts, &dests, bar))?;
    for (dest, e) in &outcome.failed {
        eprintln!("lifeboat: error: backup to {dest} failed: {e}");
    }
    let Some((_, first)) = outcome.stored.first() else {
        let code = outcome
            .failed
            .iter()
            .map(|(_, e)| e.exit_code())
            .max()
            .unwrap_or(ExitCode::Failed);
        return Ok(code);
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

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1024").unwrap(), 1024);
        assert_eq!(parse_size("64M").unwrap(), 64 << 20);
        assert_eq!(parse_size("1.5k").unwrap(), 1536);
        assert!(parse_size("-1").is_err());
        assert!(parse_size("12Q").is_err());
        assert!(parse_size("M").is_err());
    }
}
