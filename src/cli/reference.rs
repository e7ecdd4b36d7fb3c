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

#[derive(Debug, clap::Args)]
pub struct ManArgs {
    /// Write one page per command into DIR (lifeboat.1, lifeboat-backup.1,
    /// lifeboat-restore-plan.1, ...) instead of printing one complete page.
    #[arg(long, value_name = "DIR")]
    pub out: Option<std::path::PathBuf>,
}

/// `lifeboat man`: one complete page (roff) on stdout, every command and subcommand in it;
/// `--out DIR`: a page per command, each naming only pages that are written with it.
pub fn man(a: ManArgs, quiet: bool) -> anyhow::Result<ExitCode> {
    let Some(dir) = a.out else {
        let out = one_page()?;
        let mut stdout = std::io::stdout().lock();
        stdout.write_all(&out)?;
        stdout.flush()?;
        return Ok(ExitCode::Ok);
    };
    if !dir.is_dir() {
        return Err(crate::Error::flag(
            "--out",
            format!(
                "{} is not a directory: create it first (`mkdir -p {}`), e.g. /usr/local/share/man/man1",
                dir.display(),
                dir.display()
            ),
        )
        .into());
    }
    let pages = pages(&dir).map_err(|e| {
        crate::Error::Failed(format!(
            "cannot write man pages into {}: {}",
            dir.display(),
            crate::error::io_words(&e)
        ))
    })?;
    if !quiet {
        eprintln!("wrote {} man pages into {}", pages.len(), dir.display());
    }
    Ok(ExitCode::Ok)
}

/// Every command, depth first (`restore plan` after `restore`), with its full name.
fn all_commands(cmd: &clap::Command) -> Vec<clap::Command> {
    let mut out = Vec::new();
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        out.push(sub.clone());
        out.extend(all_commands(sub));
    }
    out
}

/// The built command: subcommands know their full names (`lifeboat restore plan`).
fn built() -> clap::Command {
    let mut cmd = super::command().disable_help_subcommand(true);
    cmd.build();
    cmd
}

/// One page per command into `dir`; returns the files written.
pub fn pages(dir: &std::path::Path) -> std::io::Result<Vec<std::path::PathBuf>> {
    let cmd = built();
    let mut written = Vec::new();
    for c in std::iter::once(cmd.clone()).chain(all_commands(&cmd)) {
        written.push(clap_mangen::Man::new(c).generate_to(dir)?);
    }
    Ok(written)
}

/// The complete page: the top-level command, then a section per command with its synopsis,
/// description and options. It names no other page but the per-command ones `--out` writes.
pub fn one_page() -> anyhow::Result<Vec<u8>> {
    let cmd = built();
    let mut out = Vec::new();
    let man = clap_mangen::Man::new(cmd.clone());
    man.render_title(&mut out)?;
    man.render_name_section(&mut out)?;
    man.render_synopsis_section(&mut out)?;
    man.render_description_section(&mut out)?;
    man.render_options_section(&mut out)?;
    let subs = all_commands(&cmd);
    out.extend_from_slice(b".SH COMMANDS\n");
    for sub in &subs {
        let name = sub.get_bin_name().unwrap_or_else(|| sub.get_name());
        let about = sub.get_about().map(|a| a.to_string()).unwrap_or_default();
        out.extend_from_slice(
            format!(".TP\n\\fB{}\\fR\n{}\n", roff_text(name), roff_text(&about)).as_bytes(),
        );
    }
    for sub in &subs {
        let name = sub.get_bin_name().unwrap_or_else(|| sub.get_name());
        out.extend_from_slice(format!(".SH \"{}\"\n", name.to_uppercase()).as_bytes());
        // The flags every command takes are listed once, under the top-level OPTIONS.
        let globals: Vec<clap::Id> = sub
            .get_arguments()
            .filter(|a| a.is_global_set())
            .map(|a| a.get_id().clone())
            .collect();
        let mut lean = sub.clone();
        for id in globals {
            lean = lean.mut_arg(id, |a| a.hide(true));
        }
        let page = clap_mangen::Man::new(lean);
        let mut part = Vec::new();
        page.render_synopsis_section(&mut part)?;
        page.render_description_section(&mut part)?;
        if sub.get_arguments().any(|a| !a.is_hide_set()) {
            page.render_options_section(&mut part)?;
        }
        // Within the command's section, its synopsis, description and options are
        // subsections.
        for line in String::from_utf8_lossy(&part).lines() {
            match line.strip_prefix(".SH ") {
                Some(rest) => out.extend_from_slice(format!(".SS {rest}\n").as_bytes()),
                None => out.extend_from_slice(format!("{line}\n").as_bytes()),
            }
        }
    }
    // The exit codes get the section name man pages use for them, not clap's "EXTRA".
    let codes = super::EXIT_CODES.replace('\\', "\\\\");
    out.extend_from_slice(format!(".SH \"EXIT STATUS\"\n.nf\n{codes}\n.fi\n").as_bytes());
    out.extend_from_slice(
        b".SH \"SEE ALSO\"\n\\fBlifeboat man --out DIR\\fR writes one page per command (lifeboat-backup.1, lifeboat-restore-plan.1, ...). The documentation: docs/ in the source tree.\n",
    );
    man.render_version_section(&mut out)?;
    Ok(out)
}

/// Text for a roff line: backslashes doubled, a leading dot or quote escaped.
fn roff_text(s: &str) -> String {
    let s = s.replace('\\', "\\\\");
    if s.starts_with('.') || s.starts_with('\'') {
        format!("\\&{s}")
    } else {
        s
    }
}
