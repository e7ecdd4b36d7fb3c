//! Flags that several commands share, defined once so that a name always means one thing.

use std::path::PathBuf;

/// `--from DEST`: where stored backups are read from.
#[derive(Debug, Clone, clap::Args)]
pub struct FromArgs {
    /// Destination holding the backups: a local directory or s3://bucket/prefix.
    #[arg(long, value_name = "DEST")]
    pub from: String,
}

/// `--rev N`: a revision inside a snapshot (0: the snapshot's own latest).
#[derive(Debug, Clone, clap::Args)]
pub struct RevArgs {
    /// Revision to read at (inspect: to compute hashkv at). 0 or absent: the snapshot's
    /// latest.
    #[arg(long, value_name = "N", default_value_t = 0, value_parser = clap::value_parser!(i64).range(0..))]
    pub rev: i64,
}

/// `--force`: replace an output file that exists. Nothing else.
#[derive(Debug, Clone, clap::Args)]
pub struct ForceArgs {
    /// Replace the output file if it exists.
    #[arg(long)]
    pub force: bool,
}

/// `--copy-live`: read a db that a running etcd holds open, through a private copy.
#[derive(Debug, Clone, clap::Args)]
pub struct CopyLiveArgs {
    /// Read a db that a running etcd holds open, through a point-in-time private copy
    /// (without it, a live member's db is refused).
    #[arg(long)]
    pub copy_live: bool,
}

/// `--config FILE`, read by every command.
#[derive(Debug, Clone, clap::Args)]
pub struct ConfigArgs {
    /// Config file (TOML): [etcd], [[destination]], [backup], ... Env: LIFEBOAT_CONFIG.
    /// Flags override the environment, which overrides the file.
    #[arg(long = "config", value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,
    /// age identity file (AGE-SECRET-KEY-1… lines, as age-keygen writes) or unencrypted
    /// SSH private key that opens encrypted backups (verify, fetch, inspect/get DEST:ID,
    /// diff, restore). Env: LIFEBOAT_IDENTITY; config: [encryption] identity.
    #[arg(long = "identity", value_name = "FILE", global = true)]
    pub identity: Option<PathBuf>,
}
