//! `lifeboat diff A B`: key-level difference between two snapshots.

use std::io::Write;

use super::output::print_json;
use super::{Global, OutputFormat};
use crate::format::bolt::Db;
use crate::offline::diff::{diff, Change, DiffOptions};
use crate::offline::{self, OpenOptions};
use crate::ExitCode;

#[derive(Debug, clap::Args)]
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
}

pub fn run(args: Args, g: &Global) -> anyhow::Result<ExitCode> {
    let oo = OpenOptions {
        force: args.live.copy_live,
    };
    let ia = offline::open_input(&args.a, &oo)?;
    let ib = offline::open_input(&args.b, &oo)?;
    let da = Db::open(ia.db.as_ref())?;
    let db = Db::open(ib.db.as_ref())?;
    let mut r = diff(
        &da,
        &db,
        &DiffOptions {
            prefix: args.prefix.clone().into_bytes(),
        },
    )?;
    if args.summary {
        r.keys.clear();
    }
    match g.output {
        OutputFormat::Json => print_json(&r)?,
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
    Ok(ExitCode::Ok)
}
