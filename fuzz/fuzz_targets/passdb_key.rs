//! The dict passdb key `passdb/<password>"<user>` (Dovecot's `%E`: a backslash before
//! `"`, `'` and `\`): any pair escaped that way splits back into itself, and whatever a
//! split gives, escaped again, splits the same.

#![no_main]

use libfuzzer_sys::fuzz_target;
use postern::dovecot_dict::handler::split_passdb_key;

/// Dovecot's `%E` modifier.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '"' | '\'' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn split(key: &str) -> Option<(String, String)> {
    split_passdb_key(key).map(|(p, u)| (p.expose().to_owned(), u))
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Some((password, user)) = split(&text) {
        let again = format!("{}\"{}", escape(&password), escape(&user));
        assert_eq!(
            split(&again),
            Some((password, user)),
            "re-escaped as {again:?}"
        );
    }

    let (password, user) = text.split_once('\u{fffd}').unwrap_or((&text[..], ""));
    let key = format!("{}\"{}", escape(password), escape(user));
    assert_eq!(
        split(&key),
        Some((password.to_owned(), user.to_owned())),
        "key {key:?}"
    );
});
