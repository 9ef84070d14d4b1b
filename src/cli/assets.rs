//! `postern generate-assets DIR` (hidden): the man pages and shell completions the
//! package ships, generated from the clap tree.
//!
//! ```text
//! DIR/man/postern.1  DIR/man/postern-user-block.1 ...
//! DIR/completions/postern.bash  DIR/completions/_postern  DIR/completions/postern.fish
//! ```

use std::io::Write;

use super::{Cli, Failure};

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
        page.render(&mut text).map_err(fail)?;
        // SEE ALSO: the top page names every other page; the others, their parents.
        let related = if parents.is_empty() {
            &everything
        } else {
            parents
        };
        let mut see_also = clap_mangen::roff::Roff::new();
        see_also.control("SH", ["SEE ALSO"]);
        // Names are not hyphenated or spread out (the section ends the page).
        see_also.control("nh", []).control("ad", ["l"]);
        let mut line = Vec::new();
        for (i, name) in related.iter().enumerate() {
            let end = if i + 1 < related.len() {
                "(1), "
            } else {
                "(1)"
            };
            line.push(clap_mangen::roff::bold(name.as_str()));
            line.push(clap_mangen::roff::roman(end));
        }
        see_also.text(line);
        text.extend_from_slice(see_also.to_roff().as_bytes());
        std::fs::write(man.join(page.get_filename()), text).map_err(fail)?;
    }
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
        pages.len(),
        man.display(),
        completions.display()
    )?;
    Ok(())
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
