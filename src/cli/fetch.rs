use super::Global;
use crate::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Arguments (to be defined).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    rest: Vec<String>,
}

pub fn run(_args: Args, _g: &Global) -> anyhow::Result<ExitCode> {
    super::not_yet("fetch")
}
