//! Command-line edge: parse flags, dispatch to the library, print, map errors to exit codes.
//!
//! Each command lives in its own file with its `Args` struct and a `run`; the work itself is
//! in the library ([`crate::jobs`], [`crate::format`], ...) so tests can call it without a
//! process. Flag docs live on the flag definitions and become `--help`.

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};

use crate::catalog::Access;
use crate::config::Layers;
use crate::ExitCode;

mod backup;
mod capture;
mod check_member;
mod cleanup;
mod config_check;
pub mod connection;
mod diff;
pub mod edge;
mod fetch;
pub mod flags;
mod get;
mod inspect;
mod list;
pub mod output;
mod progress;
mod prune;
mod reference;
mod restore;
mod restore_check;
mod run;
mod status;
mod systemd;
mod verify;
mod wal;

/// The exit codes, at the end of every `--help`.
pub const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  the operation failed (network, storage, etcd)
  2  usage or configuration error
  3  integrity problem found (digest mismatch, corrupt page, corrupt WAL record)
  4  unhealthy cluster or member (doctor verdicts)
With -o json, a failure prints one JSON document on stdout: error, exit_code, and where
known file, page, offset, endpoint, destination, flag.";

#[derive(Debug, Parser)]
#[command(
    name = "lifeboat",
    version,
    about = "Back up etcd, prove each backup is good, and restore after disaster",
    propagate_version = true,
    after_help = EXIT_CODES
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command accepts.
#[derive(Debug, Clone, clap::Args)]
pub struct Global {
    /// Output format: text for people, json (one document on stdout) for scripts.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = OutputFormat::Text, global = true)]
    pub output: OutputFormat,
    /// Print nothing but errors on stderr (no progress bar, no logs).
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// More logging on stderr (-v: debug, -vv: trace). RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Log lines on stderr: text for people, json (one object per line) for journald/Loki.
    #[arg(long, value_enum, env = "LIFEBOAT_LOG_FORMAT", default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
    #[command(flatten)]
    pub config: flags::ConfigArgs,
    #[command(flatten)]
    pub s3: crate::config::s3::S3Options,
    /// The config file and environment, loaded once by [`main`] before any command runs;
    /// commands add their own flags on top ([`Layers::with_etcd_flags`]).
    #[arg(skip)]
    pub layers: Layers,
    /// How destinations and encrypted backups are opened, from `layers` and `--identity`.
    #[arg(skip)]
    pub access: Access,
    /// The one tokio runtime of the process (built by [`main`]; [`Global::runtime`]).
    #[arg(skip)]
    pub runtime: Option<std::sync::Arc<tokio::runtime::Runtime>>,
}

impl Global {
    /// The runtime the edge built: commands block on it (from the main thread, outside
    /// any task), and S3 stores opened through [`Global::access`] run their requests on it.
    pub fn runtime(&self) -> anyhow::Result<&tokio::runtime::Runtime> {
        match &self.runtime {
            Some(rt) => Ok(rt),
            None => Err(
                crate::Error::Internal("no runtime: lifeboat::cli::main builds it".into()).into(),
            ),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Take one backup: stream a snapshot, verify it, compress and store it with a manifest.
    Backup(Box<backup::Args>),
    /// List the complete backups in a destination, newest first.
    List(list::Args),
    /// Record every change between full backups (point-in-time recovery) until SIGTERM.
    Capture(Box<capture::Args>),
    /// Re-read a stored backup and check everything: digests, compression, database pages.
    Verify(verify::Args),
    /// Remove what killed backups left in a destination: partial files, stale S3 uploads.
    Cleanup(cleanup::Args),
    /// Scheduler daemon: back up on [schedule], prune by [retention], until SIGTERM.
    Run(run::Args),
    /// Print (or write) a hardened systemd service + timer that run `backup --config FILE`.
    Systemd(systemd::Args),
    /// Remove old backups by a retention policy (--keep-*, or [retention] in the config).
    Prune(prune::Args),
    /// Write a stored backup out as an etcdctl-compatible snapshot file (db + SHA-256 trailer).
    Fetch(fetch::Args),
    /// Offline report on a snapshot file, a member's db, or a stored backup.
    Inspect(inspect::Args),
    /// Key-level difference between two snapshots.
    Diff(diff::Args),
    /// Read keys from a snapshot offline, like `etcdctl get`.
    Get(get::Args),
    /// Offline verdict on member data dirs: WAL, snap files and db.
    CheckMember(check_member::Args),
    /// Write-ahead log tools.
    #[command(subcommand)]
    Wal(wal::Command),
    /// Live cluster doctor: health, agreement, lag, quota, alarms.
    Status(status::Args),
    /// Restore after disaster: validated per-node plans, and one node's part of a plan.
    #[command(subcommand)]
    Restore(restore::Command),
    /// Configuration tools.
    #[command(subcommand)]
    Config(config_check::Command),
    /// Print shell completions (bash, zsh, fish, elvish, powershell) on stdout.
    Completions(reference::CompletionsArgs),
    /// Print the man page (roff) on stdout, or write one page per command (--out DIR).
    Man(reference::ManArgs),
}

/// The clap command with the exit codes after every command's help, and each flag under
/// its own heading.
pub fn command() -> clap::Command {
    let headed = headed_flags();
    let fix = move |c: clap::Command| fix_headings(c, &headed);
    fn with_codes(c: clap::Command, fix: &dyn Fn(clap::Command) -> clap::Command) -> clap::Command {
        fix(c.after_help(EXIT_CODES)).mut_subcommands(|s| with_codes(s, fix))
    }
    with_codes(Cli::command(), &fix)
}

/// The flag groups that have a help heading of their own, and their flags' ids.
fn headed_flags() -> Vec<(String, Vec<String>)> {
    fn group<T: clap::Args>() -> (String, Vec<String>) {
        let c = T::augment_args(clap::Command::new("group"));
        let heading = c.get_next_help_heading().unwrap_or_default().to_string();
        let ids = c.get_arguments().map(|a| a.get_id().to_string()).collect();
        (heading, ids)
    }
    vec![
        group::<crate::config::EtcdSettings>(),
        group::<crate::config::RetentionConfig>(),
        group::<crate::config::s3::S3Options>(),
    ]
}

/// clap's derive carries a flattened group's heading on to every flag declared after it in
/// the same struct (`backup --prune` showed under "Connection:"): a flag under a group's
/// heading that is not of that group goes back to the command's own options.
fn fix_headings(c: clap::Command, headed: &[(String, Vec<String>)]) -> clap::Command {
    c.mut_args(|a| {
        let stray = a.get_help_heading().is_some_and(|h| {
            headed.iter().any(|(heading, ids)| {
                heading == h && !ids.iter().any(|id| a.get_id() == id.as_str())
            })
        });
        if stray {
            a.help_heading(None::<&str>)
        } else {
            a
        }
    })
}

/// The keys for encrypted backups: the identity file of `--identity`, `LIFEBOAT_IDENTITY`
/// or the config file, read the first time an encrypted backup is opened.
pub fn keys(g: &Global) -> crate::catalog::Keys {
    g.access.keys().clone()
}

/// A destination to read backups from (`--from DEST`), with its S3 settings and the keys
/// to open its backups.
pub fn repository(dest: &str, g: &Global) -> crate::Result<crate::catalog::Repository> {
    g.access.repository(dest, false)
}

/// Parse the command line, run the command, and return the process exit code.
pub fn main() -> i32 {
    edge::quiet_broken_pipe();
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let json = edge::wants_json(&args);
    let parsed = command()
        .try_get_matches_from(&args)
        .and_then(|m| Cli::from_arg_matches(&m));
    let mut cli = match parsed {
        Ok(cli) => cli,
        Err(e) => {
            if !e.use_stderr() {
                let _ = e.print();
                return ExitCode::Ok.code();
            }
            if json {
                edge::print_document(&edge::clap_document(&e));
            } else {
                let _ = e.print();
            }
            return ExitCode::Usage.code();
        }
    };
    init_logging(&cli.global);
    let output = cli.global.output;
    let daemon = matches!(cli.command, Command::Run(_));
    let result = load_settings(&mut cli.global, daemon).and_then(|()| {
        let rt = cli.global.runtime.clone();
        let r = run(cli);
        edge::release_runtime(rt);
        r
    });
    match result {
        Ok(code) => code.code(),
        Err(e) if edge::is_broken_pipe(&e) => ExitCode::Ok.code(),
        Err(e) => {
            let code = exit_code_of(&e);
            match output {
                OutputFormat::Json => edge::print_document(&edge::document(&e, code)),
                OutputFormat::Text => eprintln!("lifeboat: error: {}", edge::render(&e)),
            }
            code.code()
        }
    }
}

/// Load the config file and environment into `g` (with the `--s3-*` flags on top), build
/// the process's runtime, and what opening destinations and backups needs from them. The
/// daemon (`lifeboat run`) sets the allocator up first and runs on one worker.
fn load_settings(g: &mut Global, daemon: bool) -> anyhow::Result<()> {
    let mut layers = Layers::load(g.config.config.as_deref(), &|k| std::env::var(k).ok())?;
    layers.flags.s3 = g.s3.clone();
    if !g.quiet {
        for w in &layers.warnings {
            eprintln!("lifeboat: warning: {w}");
        }
    }
    if daemon {
        crate::daemon::prepare_process();
    }
    let rt = std::sync::Arc::new(connection::runtime(if daemon { 1 } else { 2 })?);
    g.access = layers
        .access(g.config.identity.as_deref())
        .with_runtime(rt.handle().clone());
    g.runtime = Some(rt);
    g.layers = layers;
    Ok(())
}

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let g = &cli.global;
    match cli.command {
        Command::Backup(a) => backup::run(*a, g),
        Command::List(a) => list::run(a, g),
        Command::Capture(a) => capture::run(*a, g),
        Command::Verify(a) => verify::run(a, g),
        Command::Cleanup(a) => cleanup::run(a, g),
        Command::Fetch(a) => fetch::run(a, g),
        Command::Prune(a) => prune::run(a, g),
        Command::Run(a) => run::run(a, g),
        Command::Systemd(a) => systemd::run(a, g),
        Command::Inspect(a) => inspect::run(a, g),
        Command::Diff(a) => diff::run(a, g),
        Command::Get(a) => get::run(a, g),
        Command::CheckMember(a) => check_member::run(a, g),
        Command::Wal(c) => wal::run(c, g),
        Command::Status(a) => status::run(a, g),
        Command::Restore(c) => restore::run(c, g),
        Command::Config(c) => config_check::run(c, g),
        Command::Completions(a) => reference::completions(a),
        Command::Man(a) => reference::man(a, g.quiet),
    }
}

/// The exit code for an error: the first [`crate::Error`] in its chain decides.
pub fn exit_code_of(e: &anyhow::Error) -> ExitCode {
    for cause in e.chain() {
        if let Some(le) = cause.downcast_ref::<crate::Error>() {
            return le.exit_code();
        }
    }
    ExitCode::Failed
}

fn init_logging(g: &Global) {
    use tracing_subscriber::EnvFilter;
    // Other crates' logs stay off unless asked for (-v, -vv, RUST_LOG): the AWS SDK, for
    // one, logs each credential provider it tries with its errors' Debug output, while
    // lifeboat reports the failure that matters in one line of its own.
    let default = if g.quiet {
        "lifeboat=error,off"
    } else {
        match g.verbose {
            0 => "lifeboat=info,off",
            1 => "lifeboat=debug,warn",
            _ => "trace",
        }
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    if g.log_format == LogFormat::Json {
        // One JSON object per line, with a timestamp (log shippers may not add one).
        let _ = tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .with_target(false)
            .with_current_span(false)
            .try_init();
        return;
    }
    // RFC 3339 UTC times (`2026-12-05T09:14:15.123456Z`), as in the JSON lines and etcd's
    // own log, so that a log file can be read against the cluster's.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_timer(tracing_subscriber::fmt::time::SystemTime)
        .try_init();
}
