//! `lifeboat get SNAPSHOT KEY [--prefix] [--rev N] [--keys-only]`: offline reads.
//!
//! Text output is etcdctl's simple format (key line, then value line; values printed as
//! they are), without the blank line etcdctl puts after each key in `--keys-only` mode.
//! JSON (`-o json`) follows `etcdctl get -w json`: keys and values in base64, with
//! `header.revision` and `count`.

use std::io::Write;

use super::output::print_json;
use super::{Global, OutputFormat};
use crate::format::bolt::Db;
use crate::offline::get::{get, GetOptions};
use crate::offline::{self, OpenOptions};
use crate::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Snapshot, db file, backup file or DEST:ID.
    pub snapshot: String,
    /// The key (or the prefix, with --prefix).
    pub key: String,
    /// Read every key that starts with KEY.
    #[arg(long)]
    pub prefix: bool,
    #[command(flatten)]
    pub rev: super::flags::RevArgs,
    /// Print keys only.
    #[arg(long)]
    pub keys_only: bool,
    /// Print at most N keys (0: all).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub limit: usize,
    #[command(flatten)]
    pub live: super::flags::CopyLiveArgs,
}

pub fn run(args: Args, g: &Global) -> anyhow::Result<ExitCode> {
    if args.rev.rev < 0 {
        return Err(crate::Error::Usage("--rev must be >= 0".into()).into());
    }
    let input = offline::open_input(
        &args.snapshot,
        &OpenOptions {
            force: args.live.copy_live,
        },
    )?;
    let db = Db::open(input.db.as_ref())?;
    let r = get(
        &db,
        args.key.as_bytes(),
        &GetOptions {
            prefix: args.prefix,
            rev: args.rev.rev,
            limit: args.limit,
        },
    )?;
    match g.output {
        OutputFormat::Json => print_json(&r.to_json(args.keys_only))?,
        OutputFormat::Text => {
            let mut out = std::io::stdout().lock();
            let res = (|| -> std::io::Result<()> {
                for kv in &r.kvs {
                    out.write_all(&kv.key)?;
                    out.write_all(b"\n")?;
                    if !args.keys_only {
                        out.write_all(&kv.value)?;
                        out.write_all(b"\n")?;
                    }
                }
                out.flush()
            })();
            match res {
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => return Err(e.into()),
                _ => {}
            }
        }
    }
    Ok(ExitCode::Ok)
}
