//! `lifeboat diff A B`: key-level difference between two snapshots.

use std::io::Write;

use serde::Serialize;

use super::output::print_json;
use super::{Global, OutputFormat};
use crate::error::InFile;
use crate::format::bolt::Db;
use crate::offline::diff::{diff, Change, DiffOptions, DiffResult, Named};
use crate::offline::{self, DigestStatus, OpenOptions, Verification};
use crate::ExitCode;

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Every page read in A and B is validated and each file's SHA-256 is compared with its trailer \
(or manifest) before anything is printed; damage exits 3 naming which file, and the page.

Exit codes: 0 ok, 1 read failed, 2 usage, 3 integrity problem. With --exit-code (as `git diff
--exit-code`): 0 when the snapshots hold the same keys, 1 when any key differs.")]
pub struct Args {
    /// The older snapshot (file, db, backup file or DEST:ID).
    pub a: String,
    /// The newer snapshot.
    pub b: String,
    /// Only keys starting with this prefix.
    #[arg(long, default_value = "")]
    pub prefix: String,
    /// Print only the summary counts.
    #[arg(long)]
    pub summary: bool,
    #[command(flatten)]
    pub live: super::flags::CopyLiveArgs,
    /// Skip the full-file SHA-256 checks (faster on huge files); pages read are still
    /// validated.
    #[arg(long)]
    pub no_verify: bool,
    /// Exit 1 when the snapshots differ (a key added, removed or changed under --prefix, or
    /// a revision with different bytes), 0 when they do not, as `git diff --exit-code`.
    #[arg(long)]
    pub exit_code: bool,
}

#[derive(Serialize)]
struct JsonOut<'a> {
    #[serde(flatten)]
    result: &'a DiffResult,
    verification: Vec<Verification>,
}

/// Say on stderr which inputs were read without their digest compared.
pub(super) fn note_unverified(v: &[Verification], no_verify: bool) {
    if !no_verify {
        return;
    }
    for i in v.iter().filter(|i| i.digest == DigestStatus::Skipped) {
        eprintln!(
            "lifeboat: note: --no-verify: the SHA-256 of {} was not compared with its {}; only the pages read were checked",
            i.input,
            i.source.as_deref().unwrap_or("digest")
        );
    }
}

pub fn run(args: Args, g: &Global) -> anyhow::Result<ExitCode> {
    let oo = OpenOptions {
        force: args.live.copy_live,
        access: g.access.clone(),
    };
    let ia = offline::open_input(&args.a, &oo)?;
    let ib = offline::open_input(&args.b, &oo)?;
    let (mut r, verification) = offline::read_verified(&[&ia, &ib], !args.no_verify, || {
        let da = Db::open(ia.db.as_ref()).map_err(|e| e.in_file(&ia.name))?;
        let db = Db::open(ib.db.as_ref()).map_err(|e| e.in_file(&ib.name))?;
        diff(
            Named {
                db: &da,
                name: &ia.name,
            },
            Named {
                db: &db,
                name: &ib.name,
            },
            &DiffOptions {
                prefix: args.prefix.clone().into_bytes(),
            },
        )
    })?;
    note_unverified(&verification, args.no_verify);
    let differ = {
        let s = &r.summary;
        s.added + s.removed + s.changed + s.revisions_differing > 0
    };
    if args.summary {
        r.keys.clear();
    }
    match g.output {
        OutputFormat::Json => print_json(&JsonOut {
            result: &r,
            verification,
        })?,
        OutputFormat::Text => {
            let s = &r.summary;
            let mut o = String::new();
            for k in &r.keys {
                let (mark, detail) = match k.change {
                    Change::Added => (
                        "+",
                        format!("rev {}", k.b.map(|s| s.mod_revision).unwrap_or(0)),
                    ),
                    Change::Removed => (
                        "-",
                        format!("rev {}", k.a.map(|s| s.mod_revision).unwrap_or(0)),
                    ),
                    Change::Changed => (
                        "~",
                        format!(
                            "rev {} -> {}",
                            k.a.map(|s| s.mod_revision).unwrap_or(0),
                            k.b.map(|s| s.mod_revision).unwrap_or(0)
                        ),
                    ),
                };
                o.push_str(&format!("{mark} {}  ({detail})\n", k.key));
            }
            o.push_str(&format!(
                "{} added, {} removed, {} changed (revision {} -> {}; revisions only in A: {}, only in B: {}{})\n",
                s.added,
                s.removed,
                s.changed,
                s.revision_a,
                s.revision_b,
                s.revisions_only_in_a,
                s.revisions_only_in_b,
                if s.revisions_differing > 0 {
                    format!(", DIFFERING at the same revision: {} (not one history)", s.revisions_differing)
                } else {
                    String::new()
                }
            ));
            let mut out = std::io::stdout().lock();
            match out.write_all(o.as_bytes()) {
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => return Err(e.into()),
                _ => {}
            }
        }
    }
    Ok(if args.exit_code && differ {
        ExitCode::Failed
    } else {
        ExitCode::Ok
    })
}
