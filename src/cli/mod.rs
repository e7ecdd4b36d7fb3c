//! Command-line edge: parse flags, dispatch to the library, print, map errors to exit codes.
//!
//! Each command lives in its own file with its `Args` struct and a `run`; the work itself is
//! in the library ([`crate::jobs`], [`crate::format`], ...) so tests can call it without a
//! process. Flag docs live on the flag definitions and become `--help`.

use clap::{Parser, Subcommand, ValueEnum};

use crate::ExitCode;

mod backup;
mod check_member;
pub mod connection;
mod diff;
mod fetch;
mod get;
mod inspect;
mod list;
pub mod output;
mod progress;
mod status;
mod verify;
mod wal;

#[derive(Debug, Parser)]
#[command(
    name = "lifeboat",
    version,
    about = "Back up etcd, prove each backup is good, and restore after disaster",
    propagate_version = true
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
    /// Re-read a stored backup and check everything: digests, compression, database pages.
    Verify(verify::Args),
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
}

/// Parse the command line, run the command, and return the process exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() {
                ExitCode::Usage
            } else {
                ExitCode::Ok
            };
            let _ = e.print();
            return code.code();
        }
    };
    init_logging(&cli.global);
    match run(cli) {
        Ok(code) => code.code(),
        Err(e) => {
            eprintln!("lifeboat: error: {e:#}");
            exit_code_of(&e).code()
        }
    }
}

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let g = &cli.global;
    match cli.command {
        Command::Backup(a) => backup::run(*a, g),
        Command::List(a) => list::run(a, g),
        Command::Verify(a) => verify::run(a, g),
        Command::Fetch(a) => fetch::run(a, g),
        Command::Inspect(a) => inspect::run(a, g),
        Command::Diff(a) => diff::run(a, g),
        Command::Get(a) => get::run(a, g),
        Command::CheckMember(a) => check_member::run(a, g),
        Command::Wal(c) => wal::run(c, g),
        Command::Status(a) => status::run(a, g),
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
    let default = if g.quiet {
        "error"
    } else {
        match g.verbose {
            0 => "lifeboat=info,warn",
            1 => "lifeboat=debug,info",
            _ => "trace",
        }
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .without_time()
        .try_init();
}
