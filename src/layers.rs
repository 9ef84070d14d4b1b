//! The layer check: the module map at the top of `src/lib.rs` is the one list of
//! floors, and this test holds the code to it. It reads every `src/**/*.rs`, collects
//! the top-level modules each one names (`crate::x`, `crate::{x, y}`, `super::x` from a
//! module's root file), and fails when a module names one on its own floor or above.
//!
//! ```text
//! web, dovecot_lua_api   ...        floor 3: may use floors 4 and below
//! accounts               ...        floor 5
//! config                 ...        config -> accounts: "config imports accounts, on floor 5 above it"
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Pairs on one floor that may use each other: (user, used).
const SAME_FLOOR_ALLOWED: &[(&str, &str)] = &[];

/// Edges that go up and are being removed: (user, used).
const UPWARD_ALLOWED: &[(&str, &str)] = &[];

/// The floors of the `src/lib.rs` map, top first: the module names at the start of each
/// line of its text block (several on one floor are separated by commas).
fn floors(lib_rs: &str) -> Vec<Vec<String>> {
    let mut floors = Vec::new();
    let mut inside = false;
    for line in lib_rs.lines() {
        let Some(doc) = line.strip_prefix("//!") else {
            if inside {
                break;
            }
            continue;
        };
        let doc = doc.strip_prefix(' ').unwrap_or(doc);
        if doc.starts_with("```") {
            if inside {
                break;
            }
            inside = doc.trim() == "```text";
            continue;
        }
        if !inside || doc.starts_with(' ') || doc.is_empty() {
            continue;
        }
        let names = doc.split("  ").next().unwrap_or_default();
        floors.push(
            names
                .split(',')
                .map(|n| n.trim().to_owned())
                .filter(|n| !n.is_empty())
                .collect(),
        );
    }
    floors
}

/// The top-level module a file under `src/` belongs to, and whether `super::` in it
/// names the crate root (`src/x.rs`, `src/x/mod.rs`).
fn module_of(rel: &Path) -> Option<(String, bool)> {
    let parts: Vec<&str> = rel.iter().filter_map(|p| p.to_str()).collect();
    match parts.as_slice() {
        [file] => Some((file.strip_suffix(".rs")?.to_owned(), true)),
        [dir, "mod.rs"] => Some(((*dir).to_owned(), true)),
        [dir, ..] => Some(((*dir).to_owned(), false)),
        [] => None,
    }
}

/// The top-level modules `text` names through `prefix` (`crate::` or `super::`).
fn named_after(text: &str, prefix: &str, out: &mut BTreeSet<String>) {
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    for (at, _) in text.match_indices(prefix) {
        // Not the tail of a longer path such as `foo::crate::`.
        if text[..at].ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':') {
            continue;
        }
        let rest = &text[at + prefix.len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 0usize;
            let mut item_start = true;
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => item_start = true,
                    c if c.is_whitespace() => {}
                    _ if item_start && depth == 0 => {
                        out.insert(ident(&group[i..]));
                        item_start = false;
                    }
                    _ => {}
                }
            }
        } else {
            out.insert(ident(rest));
        }
    }
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Every top-level module's uses of other top-level modules, from the files under `src`.
fn uses(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let mut uses: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let Ok(rel) = file.strip_prefix(src) else {
            continue;
        };
        // The binary and the crate root are not modules of the library; this file
        // names modules in its test data.
        if ["main.rs", "lib.rs", "layers.rs"]
            .iter()
            .any(|f| rel == Path::new(f))
        {
            continue;
        }
        let Some((module, super_is_root)) = module_of(rel) else {
            continue;
        };
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        // Comments and docs name modules without using them.
        let text: String = text
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .flat_map(|l| [l, "\n"])
            .collect();
        let mut named = BTreeSet::new();
        named_after(&text, "crate::", &mut named);
        if super_is_root {
            named_after(&text, "super::", &mut named);
        }
        named.remove(&module);
        uses.entry(module).or_default().extend(named);
    }
    uses
}

/// Every use of a module on the user's own floor or above, as readable lines.
fn violations(lib_rs: &str, src: &Path) -> Vec<String> {
    let floors = floors(lib_rs);
    let floor_of = |m: &str| floors.iter().position(|f| f.iter().any(|n| n == m));
    let mut found = Vec::new();
    for (module, used) in uses(src) {
        let Some(own) = floor_of(&module) else {
            found.push(format!("{module} is not in the src/lib.rs map"));
            continue;
        };
        for target in used {
            let Some(theirs) = floor_of(&target) else {
                // Not a module (a macro, `crate::*`, an item of the root): not a layer.
                continue;
            };
            let pair = (module.as_str(), target.as_str());
            if theirs < own && !UPWARD_ALLOWED.contains(&pair) {
                found.push(format!(
                    "{module} imports {target}, on floor {} above it",
                    theirs + 1
                ));
            } else if theirs == own && !SAME_FLOOR_ALLOWED.contains(&pair) {
                found.push(format!("{module} imports {target}, on its own floor"));
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
    }

    #[test]
    fn no_module_imports_one_above_it_in_the_lib_rs_map() {
        let lib_rs = std::fs::read_to_string(src().join("lib.rs")).expect("read lib.rs");
        let found = violations(&lib_rs, &src());
        assert!(found.is_empty(), "layer violations:\n{}", found.join("\n"));
    }

    #[test]
    fn every_module_of_the_crate_is_on_the_map() {
        let lib_rs = std::fs::read_to_string(src().join("lib.rs")).expect("read lib.rs");
        let mapped: Vec<String> = floors(&lib_rs).into_iter().flatten().collect();
        for line in lib_rs.lines() {
            if let Some(name) = line
                .strip_prefix("pub mod ")
                .and_then(|l| l.strip_suffix(';'))
            {
                assert!(mapped.iter().any(|m| m == name), "{name} is not on the map");
            }
        }
    }

    #[test]
    fn the_check_sees_an_upward_import_and_grouped_imports() {
        let dir = tempfile::tempdir().expect("tempdir");
        let src = dir.path();
        std::fs::create_dir(src.join("web")).expect("mkdir");
        std::fs::write(
            src.join("web/mod.rs"),
            "use crate::server::http::PeerAddr;\n",
        )
        .expect("write");
        std::fs::write(
            src.join("store.rs"),
            "use crate::{config::Config, accounts};\nuse super::web;\n",
        )
        .expect("write");
        let map = "//! ```text\n//! server  top\n//! web  middle\n//! accounts  core\n\
                   //! store, config  bottom\n//! ```\n";
        let mut found = violations(map, src);
        found.sort();
        assert_eq!(
            found,
            [
                "store imports accounts, on floor 3 above it",
                "store imports config, on its own floor",
                "store imports web, on floor 2 above it",
                "web imports server, on floor 1 above it",
            ]
        );
    }
}
