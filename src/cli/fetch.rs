use std::path::PathBuf;

use super::output::print_json;
use super::{Global, OutputFormat};
use crate::jobs::backup::Progress;
use crate::jobs::fetch::fetch;
use crate::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub from: super::flags::FromArgs,
    /// Backup id, or `latest`.
    #[arg(value_name = "ID|latest")]
    pub id: String,
    /// Snapshot file to write (database + SHA-256 trailer, as `etcdctl snapshot save` makes).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    #[command(flatten)]
    pub force: super::flags::ForceArgs,
}

pub fn run(a: Args, g: &Global) -> anyhow::Result<ExitCode> {
    let repo = super::repository(&a.from.from, g)?;
    let m = repo.resolve(&a.id)?;
    let bar = super::progress::Bar::new(g.quiet);
    bar.begin(&format!("fetch {}", m.id), Some(m.stored_size));
    let r = fetch(&repo, &m, &a.out, a.force.force, &bar.setter());
    bar.end();
    let r = r?;
    match g.output {
        OutputFormat::Json => print_json(&r)?,
        OutputFormat::Text => {
            if !g.quiet {
                println!(
                    "wrote {} ({} bytes: database of revision {} + SHA-256 trailer {})",
                    r.out.display(),
                    r.file_size,
                    m.revision,
                    r.db_sha256
                );
            }
        }
    }
    Ok(ExitCode::Ok)
}
