//! `postern generate-assets DIR` (hidden): the man pages and shell completions the
//! package ships, generated from the clap tree, and `postern.toml(5)` from the default
//! configuration file (`manual.rs`).
//!
//! ```text
//! DIR/man/postern.1  DIR/man/postern-user-block.1 ...  DIR/man/postern.toml.5
//! DIR/completions/postern.bash  DIR/completions/_postern  DIR/completions/postern.fish
//! ```

use std::io::Write;

use super::{manual, Cli, Failure};

/// Writes the man pages, `DIR/man/postern.1` and one per subcommand as git and cargo
/// have them (`postern-user.1`, `postern-user-block.1`, ...), and
/// `DIR/completions/{postern.bash,_postern,postern.fish}`.
pub(super) fn generate(dir: &std::path::Path, out: &mut dyn Write) -> Result<(), Failure> {
    use clap::CommandFactory;
    let fail = |e: std::io::Error| Failure::refused(format!("{}: {e}", dir.display()));
    let (man, completions) = (dir.join("man"), dir.join("completions"));
    std::fs::create_dir_all(&man).map_err(fail)?;
    std::fs::create_dir_all(&completions).map_err(fail)?;
    // Built once, every subcommand knows its page name (`postern-user-block`) and its
    // synopsis name (`postern user block`). `help` is no subcommand worth a page.
    let mut cli = Cli::command().disable_help_subcommand(true);
    cli.build();
    let mut pages = Vec::new();
    man_pages(&cli, &[], &mut pages);
    let everything: Vec<String> = pages.iter().skip(1).map(|(c, _)| page_name(c)).collect();
    let source = format!("postern {}", env!("CARGO_PKG_VERSION"));
    for (cmd, parents) in &pages {
        let page = clap_mangen::Man::new((*cmd).clone()).source(source.as_str());
        let mut text = Vec::new();
        render(&page, cmd, parents.is_empty(), &mut text).map_err(fail)?;
        // SEE ALSO: the top page names every other page and postern.toml(5); the others,
        // their parents.
        let mut top = everything.clone();
        top.push("postern.toml".into());
        let related = if parents.is_empty() { &top } else { parents };
        let mut see_also = clap_mangen::roff::Roff::new();
        see_also.control("SH", ["SEE ALSO"]);
        // Names are not hyphenated or spread out (the section ends the page).
        see_also.control("nh", []).control("ad", ["l"]);
        let mut line = Vec::new();
        for (i, name) in related.iter().enumerate() {
            let section = if name == "postern.toml" { "5" } else { "1" };
            let end = if i + 1 < related.len() {
                format!("({section}), ")
            } else {
                format!("({section})")
            };
            line.push(clap_mangen::roff::bold(name.as_str()));
            line.push(clap_mangen::roff::roman(end));
        }
        see_also.text(line);
        text.extend_from_slice(see_also.to_roff().as_bytes());
        std::fs::write(man.join(page.get_filename()), text).map_err(fail)?;
    }
    std::fs::write(
        man.join("postern.toml.5"),
        manual::config_page(manual::DEFAULT_CONFIG, env!("CARGO_PKG_VERSION")),
    )
    .map_err(fail)?;
    for (shell, name) in [
        (clap_complete::Shell::Bash, "postern.bash"),
        (clap_complete::Shell::Zsh, "_postern"),
        (clap_complete::Shell::Fish, "postern.fish"),
    ] {
        let mut out = Vec::new();
        clap_complete::generate(shell, &mut Cli::command(), "postern", &mut out);
        std::fs::write(completions.join(name), out).map_err(fail)?;
    }
    writeln!(
        out,
        "wrote {} man pages to {}/ and completions to {}/",
        pages.len() + 1,
        man.display(),
        completions.display()
    )?;
    Ok(())
}

/// One command's page: clap_mangen's sections, then EXIT STATUS (every page), and on the
/// top page ENVIRONMENT, FILES and EXAMPLES (`manual`), before VERSION.
fn render(
    page: &clap_mangen::Man,
    cmd: &clap::Command,
    top: bool,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    page.render_title(out)?;
    page.render_name_section(out)?;
    page.render_synopsis_section(out)?;
    page.render_description_section(out)?;
    if cmd.get_arguments().any(|a| !a.is_hide_set()) {
        page.render_options_section(out)?;
    }
    if cmd.get_subcommands().any(|s| !s.is_hide_set()) {
        page.render_subcommands_section(out)?;
    }
    let mut extra = clap_mangen::roff::Roff::new();
    manual::exit_status(&mut extra);
    if top {
        manual::environment_and_files(&mut extra);
        manual::examples(&mut extra);
    }
    out.write_all(extra.to_roff().as_bytes())?;
    page.render_version_section(out)
}

/// A built command's man page name: `postern-user-block` for `postern user block`.
fn page_name(cmd: &clap::Command) -> String {
    cmd.get_display_name().unwrap_or(cmd.get_name()).to_owned()
}

/// `cmd` and its visible subcommands at every depth, each after its parent, with the
/// page names of its parents.
fn man_pages<'a>(
    cmd: &'a clap::Command,
    parents: &[String],
    out: &mut Vec<(&'a clap::Command, Vec<String>)>,
) {
    out.push((cmd, parents.to_vec()));
    let mut chain = parents.to_vec();
    chain.push(page_name(cmd));
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        man_pages(sub, &chain, out);
    }
}
