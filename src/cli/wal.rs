use super::Global;
use crate::ExitCode;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Print the decoded records of a member's WAL, one per line.
    Dump {
        /// Arguments (to be defined).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        rest: Vec<String>,
    },
}

pub fn run(_cmd: Command, _g: &Global) -> anyhow::Result<ExitCode> {
    super::not_yet("wal dump")
}
