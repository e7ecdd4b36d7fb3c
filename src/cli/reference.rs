//! `lifeboat completions SHELL` and `lifeboat man`: generated from the same clap
//! definitions as `--help`, so they cannot drift from the flags.

use std::io::Write;

use crate::ExitCode;

#[derive(Debug, clap::Args)]
pub struct CompletionsArgs {
    /// The shell to write completions for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

pub fn completions(a: CompletionsArgs) -> anyhow::Result<ExitCode> {
    let mut cmd = super::command();
    let mut out = Vec::new();
    clap_complete::generate(a.shell, &mut cmd, "lifeboat", &mut out);
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(&out)?;
    stdout.flush()?;
    Ok(ExitCode::Ok)
}

/// The man page (roff) of the top-level command, with every subcommand's flags in it.
pub fn man() -> anyhow::Result<ExitCode> {
    let cmd = super::command();
    let mut out = Vec::new();
    let man = clap_mangen::Man::new(cmd.clone());
    man.render_title(&mut out)?;
    man.render_name_section(&mut out)?;
    man.render_synopsis_section(&mut out)?;
    man.render_description_section(&mut out)?;
    man.render_options_section(&mut out)?;
    man.render_subcommands_section(&mut out)?;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let heading = format!("LIFEBOAT {}", sub.get_name().to_uppercase());
        let sub = sub.clone().bin_name(format!("lifeboat {}", sub.get_name()));
        let page = clap_mangen::Man::new(sub.clone());
        out.extend_from_slice(format!(".SH \"{heading}\"\n").as_bytes());
        page.render_synopsis_section(&mut out)?;
        page.render_options_section(&mut out)?;
    }
    // The exit codes get the section name man pages use for them, not clap's "EXTRA".
    let codes = super::EXIT_CODES.replace('\\', "\\\\");
    out.extend_from_slice(format!(".SH \"EXIT STATUS\"\n.nf\n{codes}\n.fi\n").as_bytes());
    man.render_version_section(&mut out)?;
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(&out)?;
    stdout.flush()?;
    Ok(ExitCode::Ok)
}
