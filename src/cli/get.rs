//! `lifeboat get SNAPSHOT KEY [--prefix] [--rev N] [--keys-only]`: offline reads.
//!
//! Text output is etcdctl's simple format (key line, then value line; values printed as
//! they are), without the blank line etcdctl puts after each key in `--keys-only` mode.
//! JSON (`-o json`) follows `etcdctl get -w json`: keys and values in base64, with
//! `header.revision` (the snapshot's current revision, as etcdctl reports the store's,
//! even with `--rev`) and `count`, plus `verification` (how the input was checked).

use std::ffi::OsString;
use std::io::Write;

use serde::Serialize;

use super::output::print_json;
use super::{Global, OutputFormat};
use crate::error::InFile;
use crate::format::bolt::Db;
use crate::offline::get::{get, GetOptions, JsonResult};
use crate::offline::{self, OpenOptions, Verification};
use crate::ExitCode;

#[derive(Debug, clap::Args)]
#[command(after_help = "\
KEY is taken as bytes, like etcdctl: keys that are not UTF-8 work as given by the shell. \
With --hex, KEY is hexadecimal (e.g. `--hex 2f6b0aff` for the bytes \"/k\\n\\xff\").

Every page read is validated and the file's SHA-256 is compared with its trailer (or the \
manifest, for DEST:ID) before anything is printed; damage exits 3 naming the file and page.

Exit codes: 0 ok, 1 read failed, 2 usage (bad flag, revision compacted or in the future), \
3 integrity problem.")]
pub struct Args {
    /// Snapshot, db file, backup file or DEST:ID.
    pub snapshot: String,
    /// The key (or the prefix, with --prefix), as bytes; hexadecimal with --hex.
    pub key: OsString,
    /// KEY is given in hexadecimal (for keys a shell cannot type).
    #[arg(long)]
    pub hex: bool,
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
    /// Skip the full-file SHA-256 check (faster on huge files); pages read are still
    /// validated.
    #[arg(long)]
    pub no_verify: bool,
}

#[derive(Serialize)]
struct JsonOut {
    #[serde(flatten)]
    result: JsonResult,
    verification: Vec<Verification>,
}

/// KEY as the bytes to look up.
fn key_bytes(key: &OsString, hex: bool) -> Result<Vec<u8>, crate::Error> {
    use std::os::unix::ffi::OsStrExt;
    let raw = key.as_bytes();
    if !hex {
        return Ok(raw.to_vec());
    }
    hex::decode(raw).map_err(|e| {
        crate::Error::flag(
            "--hex",
            format!(
                "KEY {:?} is not hexadecimal ({e}); give two hex digits per byte, e.g. 2f6b6579",
                String::from_utf8_lossy(raw)
            ),
        )
    })
}

pub fn run(args: Args, g: &Global) -> anyhow::Result<ExitCode> {
    if args.rev.rev < 0 {
        return Err(crate::Error::flag("--rev", "must be >= 0").into());
    }
    let key = key_bytes(&args.key, args.hex)?;
    let input = offline::open_input(
        &args.snapshot,
        &OpenOptions {
            force: args.live.copy_live,
            access: g.access.clone(),
        },
    )?;
    let (r, verification) = offline::read_verified(&[&input], !args.no_verify, || {
        let db = Db::open(input.db.as_ref()).map_err(|e| e.in_file(&input.name))?;
        get(
            &db,
            &input.name,
            &key,
            &GetOptions {
                prefix: args.prefix,
                rev: args.rev.rev,
                limit: args.limit,
            },
        )
    })?;
    super::diff::note_unverified(&verification, args.no_verify);
    match g.output {
        OutputFormat::Json => print_json(&JsonOut {
            result: r.to_json(args.keys_only),
            verification,
        })?,
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
