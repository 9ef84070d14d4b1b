//! What the man pages say beyond the clap tree: the EXIT STATUS, ENVIRONMENT, FILES and
//! EXAMPLES sections of `postern(1)`, and `postern.toml(5)`, made from
//! `packaging/postern.toml` (the default file the package installs), whose comments are
//! the documented configuration: the page cannot drift from the file.
//!
//! ```text
//! # The mail domains ...          ->  .SS "Top level"  .PP The mail domains ...
//! #domains = ["example.org"]      ->  .nf \fBdomains\fR = ["example.org"] .fi
//! [database]                      ->  .SS [database]
//! #   url = "postgresql:///..."   ->  an indented example block
//! ```

use clap_mangen::roff::{bold, italic, roman, Inline, Roff};

/// The default configuration with its comments, as the package installs it.
pub const DEFAULT_CONFIG: &str = include_str!("../../packaging/postern.toml");

/// The exit statuses of every command (docs/operations.md has the same table).
const EXIT_STATUS: [(&str, &str); 5] = [
    ("0", "Done."),
    (
        "1",
        "Refused or failed: bad input, no such account, already exists, a mail home that \
         could not be removed, an error that config check found on this host; the message \
         says why. For serve: a socket or runtime failure (systemd restarts it).",
    ),
    (
        "2",
        "Usage or configuration error, a configuration file named by --config or \
         POSTERN_CONFIG that does not exist, or a socket directory serve cannot create or \
         write. postern.service does not restart on it.",
    ),
    (
        "3",
        "Temporary database failure (locked, full, read-only): try again.",
    ),
    (
        "4",
        "Permanent database problem: its directory is missing, the file is not a database, \
         the database was lost or replaced (see postern.db.id), or its schema is newer \
         than this postern. postern.service does not restart on it.",
    ),
];

const ENVIRONMENT: [(&str, &str); 4] = [
    (
        "POSTERN_CONFIG",
        "The configuration file, as --config names it. A file named here must exist.",
    ),
    (
        "POSTERN_SECTION__KEY",
        "Overrides one key of the file: POSTERN_REGISTRATION__MODE=open sets \
         [registration] mode, POSTERN_LOG__LEVEL=debug sets [log] level. Two underscores \
         separate the levels.",
    ),
    (
        "REGISTRATION_MODE",
        "The same as POSTERN_REGISTRATION__MODE: open, invite_only or closed.",
    ),
    (
        "ADMIN_USERNAME",
        "One more entry of registration.admin_usernames: promoted to administrator when \
         the daemon starts.",
    ),
];

const FILES: [(&str, &str); 8] = [
    (
        "/etc/postern/postern.toml",
        "The configuration (postern.toml(5)). Made at the first install from \
         /usr/share/postern/postern.toml, the default with every key explained.",
    ),
    (
        "/var/lib/postern/postern.db",
        "The SQLite accounts database (database.path), owned by the postern user.",
    ),
    (
        "/var/lib/postern/postern.db.id",
        "The database's id: postern refuses to start on a database that is not the one \
         it made (exit status 4).",
    ),
    (
        "/var/lib/postern/setup-invite",
        "The one-time invite that creates the first administrator, while there is none.",
    ),
    (
        "/etc/postern/auth-http.secret",
        "The shared secret of the Dovecot 2.4 Lua auth API (auth_http.secret_file).",
    ),
    (
        "/run/postern/",
        "The dict socket (and the web socket) for Dovecot; systemd makes the directory \
         (RuntimeDirectory=). Started another way, make it first: install -d -o postern \
         -g postern -m 0750 /run/postern.",
    ),
    (
        "/var/spool/postfix/postern/",
        "The SMTP AUTH and policy sockets, inside Postfix's chroot.",
    ),
    (
        "/usr/share/doc/postern/",
        "The installation, Dovecot, Postfix, operations, security and scaling guides, and \
         examples/ with the Dovecot, Postfix, nginx and fail2ban snippets.",
    ),
];

const EXAMPLES: [(&str, &str); 8] = [
    (
        "Check the configuration, and this host against it, after editing it:",
        "postern config check\nsystemctl reload postern",
    ),
    (
        "Create an account with a generated password (printed once):",
        "postern user add alice@example.org",
    ),
    (
        "Set its password from a script:",
        "printf '%s\\n' \"$PASSWORD\" | postern user passwd alice@example.org --password-stdin",
    ),
    (
        "Make an invite for five sign-ups that expires in 30 days:",
        "postern token create --uses 5 --expires 30d --comment \"for the team\"",
    ),
    (
        "Block an account; its mail is kept:",
        "postern user block bob@example.org --reason \"sent spam\"",
    ),
    (
        "Give an account 2 GiB, or the default again:",
        "postern user quota alice@example.org 2G\npostern user quota alice@example.org default",
    ),
    (
        "See what the daily maintenance would delete, then the counts:",
        "postern maintenance run --dry-run\npostern stats",
    ),
    (
        "List the accounts as JSON for a script:",
        "postern user list --json",
    ),
];

/// Text with `code` in bold, as the configuration's comments mark commands and keys.
fn marked(text: &str) -> Vec<Inline> {
    text.split('`')
        .enumerate()
        .filter(|(_, part)| !part.is_empty())
        .map(|(i, part)| if i % 2 == 1 { bold(part) } else { roman(part) })
        .collect()
}

/// Lines shown as typed: indented, unfilled.
fn literal<'a>(roff: &mut Roff, lines: impl IntoIterator<Item = &'a str>) {
    roff.control("RS", ["4"]).control("nf", []);
    for line in lines {
        roff.text([roman(line)]);
    }
    roff.control("fi", []).control("RE", []);
}

/// A list of terms, each with its paragraph.
fn terms(roff: &mut Roff, items: &[(&str, &str)]) {
    for (term, text) in items {
        roff.control("TP", [])
            .text([bold(*term)])
            .text([roman(*text)]);
    }
}

/// EXIT STATUS, on every page.
pub fn exit_status(roff: &mut Roff) {
    roff.control("SH", ["EXIT STATUS"]);
    terms(roff, &EXIT_STATUS);
}

/// ENVIRONMENT and FILES, on `postern(1)` and `postern.toml(5)`.
pub fn environment_and_files(roff: &mut Roff) {
    roff.control("SH", ["ENVIRONMENT"]);
    terms(roff, &ENVIRONMENT);
    roff.control("SH", ["FILES"]);
    terms(roff, &FILES);
}

/// EXAMPLES, on `postern(1)`.
pub fn examples(roff: &mut Roff) {
    roff.control("SH", ["EXAMPLES"]);
    for (what, commands) in EXAMPLES {
        roff.control("PP", []).text([roman(what)]);
        literal(roff, commands.lines());
    }
}

/// One stretch of the configuration file.
#[derive(Debug, PartialEq, Eq)]
enum Block<'a> {
    /// Comment prose, its lines joined.
    Text(String),
    /// Indented comment lines: examples and tables, shown as typed.
    Example(Vec<&'a str>),
    /// Key lines, set or (commented out) their default: `key = value`.
    Keys(Vec<&'a str>),
}

/// A table of the file (`None`: the lines before the first table) and its blocks.
type Table<'a> = (Option<&'a str>, Vec<Block<'a>>);

/// A `key = value` line, set or commented out (`#key = value`), without the `#`.
fn key_line(line: &str) -> Option<&str> {
    let line = line.strip_prefix('#').unwrap_or(line);
    let (key, _) = line.split_once(" = ")?;
    (!key.is_empty() && key.chars().all(|c| c.is_ascii_lowercase() || c == '_')).then_some(line)
}

/// Reads the file into its header (the opening comment, up to the first blank line) and
/// its tables.
fn parse(text: &str) -> (Vec<Block<'_>>, Vec<Table<'_>>) {
    let mut header = Vec::new();
    let mut tables: Vec<Table<'_>> = vec![(None, Vec::new())];
    let mut in_header = true;
    for line in text.lines() {
        let line = line.trim_end();
        if in_header && line.is_empty() {
            in_header = false;
            continue;
        }
        let blocks = if in_header {
            &mut header
        } else if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            tables.push((Some(name), Vec::new()));
            continue;
        } else {
            match tables.last_mut() {
                Some((_, blocks)) => blocks,
                None => continue,
            }
        };
        add_line(blocks, line);
    }
    (header, tables)
}

/// Adds one line to the blocks of a table (or the header).
fn add_line<'a>(blocks: &mut Vec<Block<'a>>, line: &'a str) {
    if line.is_empty() || line == "#" {
        // A paragraph ends.
        blocks.push(Block::Text(String::new()));
        return;
    }
    if let Some(key) = key_line(line) {
        match blocks.last_mut() {
            Some(Block::Keys(keys)) => keys.push(key),
            _ => blocks.push(Block::Keys(vec![key])),
        }
        return;
    }
    let text = line
        .strip_prefix("# ")
        .unwrap_or(line.trim_start_matches('#'));
    if text.starts_with(' ') || (text.starts_with('[') && text.ends_with(']')) {
        match blocks.last_mut() {
            Some(Block::Example(lines)) => lines.push(text),
            _ => blocks.push(Block::Example(vec![text])),
        }
        return;
    }
    match blocks.last_mut() {
        Some(Block::Text(prose)) => {
            if !prose.is_empty() {
                prose.push(' ');
            }
            prose.push_str(text);
        }
        _ => blocks.push(Block::Text(text.to_owned())),
    }
}

fn render_blocks(roff: &mut Roff, blocks: &[Block<'_>]) {
    for block in blocks {
        match block {
            Block::Text(prose) if prose.is_empty() => {}
            Block::Text(prose) => {
                roff.control("PP", []).text(marked(prose));
            }
            Block::Example(lines) => literal(roff, lines.iter().copied()),
            Block::Keys(keys) => {
                roff.control("PP", [])
                    .control("RS", ["4"])
                    .control("nf", []);
                for line in keys {
                    let (key, value) = line.split_once(" = ").unwrap_or((line, ""));
                    roff.text([bold(key), roman(format!(" = {value}"))]);
                }
                roff.control("fi", []).control("RE", []);
            }
        }
    }
}

/// `postern.toml(5)`, made from the default configuration file `text`.
pub fn config_page(text: &str, version: &str) -> String {
    let (header, tables) = parse(text);
    let mut roff = Roff::new();
    let source = format!("postern {version}");
    roff.control(
        "TH",
        ["postern.toml", "5", "", source.as_str(), "postern manual"],
    );
    roff.control("SH", ["NAME"]);
    roff.text([roman("postern.toml - the configuration of postern")]);
    roff.control("SH", ["SYNOPSIS"]);
    roff.text([bold("/etc/postern/postern.toml")]);
    roff.control("SH", ["DESCRIPTION"]);
    roff.text([roman(
        "postern(1) reads its configuration from a TOML file. This page is the default \
         file, /usr/share/postern/postern.toml, with its comments: each key below is \
         shown with its built-in default (or, for a key that is off by default, an \
         example).",
    )]);
    // The first line names the file: the page's title says it.
    render_blocks(&mut roff, header.get(1..).unwrap_or_default());
    roff.control("SH", ["SETTINGS"]);
    for (name, blocks) in &tables {
        let title = match name {
            Some(name) => format!("[{name}]"),
            None => "Top level".to_owned(),
        };
        roff.control("SS", [title.as_str()]);
        render_blocks(&mut roff, blocks);
    }
    environment_and_files(&mut roff);
    roff.control("SH", ["SEE ALSO"]);
    roff.text([
        bold("postern"),
        roman("(1), "),
        bold("dovecot"),
        roman("(1), "),
        bold("postconf"),
        roman("(5), "),
        italic("/usr/share/doc/postern/"),
    ]);
    roff.render()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_reads_into_prose_examples_and_keys() {
        let (header, tables) = parse(
            "# Title.\n#\n# About `it`.\n\n# The domains.\n#domains = []\n[a]\n# Either\n#   x = 1\n# or y.\nk = \"v\"\n#j = 2\n",
        );
        assert_eq!(
            header,
            vec![
                Block::Text("Title.".into()),
                Block::Text("About `it`.".into())
            ]
        );
        assert_eq!(
            tables,
            vec![
                (
                    None,
                    vec![
                        Block::Text("The domains.".into()),
                        Block::Keys(vec!["domains = []"])
                    ]
                ),
                (
                    Some("a"),
                    vec![
                        Block::Text("Either".into()),
                        Block::Example(vec!["  x = 1"]),
                        Block::Text("or y.".into()),
                        Block::Keys(vec!["k = \"v\"", "j = 2"]),
                    ]
                ),
            ]
        );
        assert_eq!(marked("run `postern config check` now").len(), 3);
    }

    /// Every key of the configuration as `config show` has it (the defaults): (table,
    /// key) for each value, with "" for the top level; tables are keys of their parent.
    fn config_keys(table: &str, value: &serde_json::Value, out: &mut Vec<(String, String)>) {
        for (key, v) in value.as_object().into_iter().flatten() {
            out.push((table.to_owned(), key.clone()));
            if v.is_object() {
                let path = if table.is_empty() {
                    key.clone()
                } else {
                    format!("{table}.{key}")
                };
                config_keys(&path, v, out);
            }
        }
    }

    #[test]
    fn the_configuration_page_documents_every_key() {
        let page = config_page(DEFAULT_CONFIG, "0.0.0");
        for section in [
            ".SH NAME",
            ".SH SYNOPSIS",
            ".SH DESCRIPTION",
            ".SH SETTINGS",
            ".SH ENVIRONMENT",
            ".SH FILES",
            ".SH \"SEE ALSO\"",
        ] {
            assert!(page.contains(section), "{section}");
        }
        // The page's text under each `.SS` heading: "Top level", "[database]", ...
        let sections: std::collections::HashMap<&str, &str> = page
            .split("\n.SS ")
            .skip(1)
            .filter_map(|s| s.split_once('\n'))
            .collect();
        let mut keys = Vec::new();
        let defaults = serde_json::to_value(crate::config::Config::default()).unwrap();
        config_keys("", &defaults, &mut keys);
        assert!(keys.len() > 80, "{keys:?}");
        for (table, key) in &keys {
            let heading = if table.is_empty() {
                "\"Top level\"".to_owned()
            } else {
                format!("[{table}]")
            };
            // Per-socket tables (listen.sockets.dict, ...) are one example.
            if table.starts_with("listen.sockets") {
                continue;
            }
            let text = sections
                .get(heading.as_str())
                .unwrap_or_else(|| panic!("no section {heading} for {key}"));
            let pointer: String = table
                .split('.')
                .filter(|t| !t.is_empty())
                .chain([key.as_str()])
                .map(|t| format!("/{t}"))
                .collect();
            let is_table = defaults.pointer(&pointer).is_some_and(|v| v.is_object());
            let found = if is_table && key == "sockets" {
                text.contains("[listen.sockets.dict]")
            } else if is_table {
                let path = if table.is_empty() {
                    key.clone()
                } else {
                    format!("{table}.{key}")
                };
                sections.contains_key(format!("[{path}]").as_str())
            } else {
                text.contains(&format!("\\fB{key}\\fR = "))
            };
            assert!(found, "{table} {key}: not under {heading}");
        }
        // Each table's keys under that table's heading.
        let listen = page.split(".SS [listen]").nth(1).unwrap();
        let listen = listen.split(".SS").next().unwrap();
        assert!(
            listen.contains("\\fBsocket_mode\\fR = \"0666\""),
            "{listen}"
        );
        assert!(!page.contains("\n#"), "no comment sign reaches the page");
    }
}
