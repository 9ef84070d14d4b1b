//! The one way a value that a peer or an operator chose is written into a `key=value`
//! log line. A plain token is written as it is; anything else is quoted and escaped, so
//! a value can never end its field or its line, and a field that looks like postern's
//! own (`ip=...`, `event=...`) stays inside the quotes. `log.no_log` hides personal
//! values through the same code: they are written `-`.
//!
//! ```text
//! address=alice@example.org                 a plain token: [A-Za-z0-9@._:+/-]+
//! address="x ip=192.0.2.10"                 a space: quoted, the forged field stays inside
//! address="a\nevent=admin_signin result=ok" a line break: escaped, no second line
//! address="say \"hi\" \\ \x00 \u{202e}"     quote, backslash, control and bidi characters
//! address=""                                empty
//! address="-"                               the one-character value "-"
//! address=-                                 absent, or hidden by log.no_log
//! ```
//!
//! Inside quotes: `\"`, `\\`, `\n`, `\r`, `\t`; other ASCII control characters (and DEL)
//! as `\xNN`; non-ASCII control, line-separator, bidirectional and invisible formatting
//! characters as `\u{NNNN}`; every other character as it is (UTF-8).
//!
//! `Repeats` tells the first of a run of like lines (a throttled client trying again)
//! from the rest, so a flood of cheap requests writes one INFO line per window, not one
//! per request.

use std::collections::HashMap;
use std::fmt::{self, Display, Write};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// A value for a log line: escaped when written, or `-` when absent or hidden.
#[derive(Debug, Clone, Copy)]
pub struct Shown<T>(Option<T>);

/// A value that is logged whatever `log.no_log` says: a service name, a reason, an
/// error's text. Escaped like every other value.
pub fn value<T: Display>(value: T) -> Shown<T> {
    Shown(Some(value))
}

/// A value `log.no_log` hides: an address, a username as typed, an IP, a token id, a
/// path that names an account.
pub fn private<T: Display>(value: T, no_log: bool) -> Shown<T> {
    Shown((!no_log).then_some(value))
}

/// Like `private`, for a value that may be absent (a client IP the protocol does not
/// carry): `-` then.
pub fn private_opt<T: Display>(value: Option<T>, no_log: bool) -> Shown<T> {
    Shown(value.filter(|_| !no_log))
}

impl<T: Display> Display for Shown<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            None => f.write_str("-"),
            Some(v) => write_escaped(f, &v.to_string()),
        }
    }
}

/// A byte that may appear in an unquoted value.
fn is_plain(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"@._:+/-".contains(&b)
}

/// Characters that are written as `\u{..}` although printable text may contain them:
/// they end lines in some viewers or change how the rest of the line reads.
fn is_hidden_format(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{061C}' | '\u{180E}'
        | '\u{200B}'..='\u{200F}'
        | '\u{2028}'..='\u{202E}'
        | '\u{2060}'..='\u{2069}'
        | '\u{FEFF}'
        | '\u{FFF9}'..='\u{FFFB}')
}

/// Writes `s` as one log value: as is when it is a plain token (and not the `-` that
/// stands for "absent"), else quoted and escaped.
pub fn write_escaped<W: Write + ?Sized>(out: &mut W, s: &str) -> fmt::Result {
    if !s.is_empty() && s != "-" && s.bytes().all(is_plain) {
        return out.write_str(s);
    }
    out.write_char('"')?;
    let mut rest = s;
    while let Some(at) =
        rest.find(|c: char| c == '"' || c == '\\' || c.is_control() || is_hidden_format(c))
    {
        out.write_str(&rest[..at])?;
        let mut chars = rest[at..].chars();
        let Some(c) = chars.next() else { break };
        match c {
            '"' => out.write_str("\\\"")?,
            '\\' => out.write_str("\\\\")?,
            '\n' => out.write_str("\\n")?,
            '\r' => out.write_str("\\r")?,
            '\t' => out.write_str("\\t")?,
            c if c.is_ascii() => write!(out, "\\x{:02x}", c as u32)?,
            c => write!(out, "\\u{{{:04x}}}", c as u32)?,
        }
        rest = chars.as_str();
    }
    out.write_str(rest)?;
    out.write_char('"')
}

/// Most keys `Repeats` remembers; beyond them every line counts as a repeat.
const MAX_KEYS: usize = 100_000;

/// Remembers, per key, when a line was last written at its full level, so the repeats
/// within a window can go to DEBUG. Bounded: expired keys are forgotten when it fills.
#[derive(Default)]
pub struct Repeats {
    seen: Mutex<HashMap<String, Instant>>,
}

impl Repeats {
    /// True for the first event for `key` in `window`; false for the repeats (and for
    /// new keys while `MAX_KEYS` keys are within their window).
    pub fn first(&self, key: &str, window: Duration, now: Instant) -> bool {
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(at) = seen.get_mut(key) {
            if now.saturating_duration_since(*at) < window {
                return false;
            }
            *at = now;
            return true;
        }
        if seen.len() >= MAX_KEYS {
            seen.retain(|_, at| now.saturating_duration_since(*at) < window);
            if seen.len() >= MAX_KEYS {
                return false;
            }
        }
        seen.insert(key.to_owned(), now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    fn shown(s: &str) -> String {
        value(s).to_string()
    }

    /// The inverse of `write_escaped`, for the tests: `None` if `text` is not exactly
    /// one well-formed value.
    fn unescape(text: &str) -> Option<String> {
        let Some(inner) = text.strip_prefix('"') else {
            return (!text.is_empty() && text.bytes().all(is_plain)).then(|| text.to_owned());
        };
        let mut out = String::new();
        let mut chars = inner.chars();
        loop {
            match chars.next()? {
                '"' => return chars.as_str().is_empty().then_some(out),
                '\\' => match chars.next()? {
                    '"' => out.push('"'),
                    '\\' => out.push('\\'),
                    'n' => out.push('\n'),
                    'r' => out.push('\r'),
                    't' => out.push('\t'),
                    'x' => {
                        let hex: String = chars.by_ref().take(2).collect();
                        out.push(char::from(u8::from_str_radix(&hex, 16).ok()?));
                    }
                    'u' => {
                        let rest = chars.as_str().strip_prefix('{')?;
                        let end = rest.find('}')?;
                        out.push(char::from_u32(u32::from_str_radix(&rest[..end], 16).ok()?)?);
                        chars = rest[end + 1..].chars();
                    }
                    _ => return None,
                },
                c => out.push(c),
            }
        }
    }

    /// Splits a line into its `key=value` fields by the grammar the fail2ban filter
    /// uses: a value is a plain token or a quoted string with backslash escapes.
    fn fields(line: &str) -> Option<Vec<(String, String)>> {
        let mut out = Vec::new();
        let mut rest = line;
        while !rest.is_empty() {
            let (key, after) = rest.split_once('=')?;
            if key.is_empty() || !key.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
                return None;
            }
            let end = if let Some(quoted) = after.strip_prefix('"') {
                let mut escaped = false;
                let close = quoted.char_indices().find(|&(_, c)| {
                    let done = c == '"' && !escaped;
                    escaped = c == '\\' && !escaped;
                    done
                })?;
                close.0 + 2
            } else {
                after.find(' ').unwrap_or(after.len())
            };
            let text = &after[..end];
            let value = if text == "-" {
                "-".to_owned()
            } else {
                unescape(text)?
            };
            out.push((key.to_owned(), value));
            let tail = &after[end..];
            if tail.is_empty() {
                break;
            }
            rest = tail.strip_prefix(' ').filter(|r| !r.is_empty())?;
        }
        Some(out)
    }

    /// What every written value must satisfy: nothing that ends a line or a field
    /// outside quotes, and it reads back as what was written.
    fn check(s: &str) {
        let out = shown(s);
        assert!(
            !out.chars().any(|c| c.is_control() || is_hidden_format(c)),
            "{s:?} -> {out:?}"
        );
        assert_eq!(unescape(&out).as_deref(), Some(s), "{s:?} -> {out:?}");
        if !out.starts_with('"') {
            assert!(!out.contains([' ', '=', '"', '\\']), "{s:?} -> {out:?}");
        }
        let line = format!("event=login address={out} service=smtp ip=203.0.113.5");
        let expected: Vec<(String, String)> = [
            ("event", "login"),
            ("address", s),
            ("service", "smtp"),
            ("ip", "203.0.113.5"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(fields(&line), Some(expected), "{line}");
    }

    #[test]
    fn plain_tokens_are_written_as_they_are() {
        for s in [
            "alice@example.org",
            "192.0.2.7",
            "2001:db8::1",
            "a+b/c-d_e",
            "smtp",
        ] {
            assert_eq!(shown(s), s);
        }
        assert_eq!(
            value(std::net::Ipv4Addr::new(192, 0, 2, 7)).to_string(),
            "192.0.2.7"
        );
    }

    #[test]
    fn everything_else_is_quoted_and_escaped() {
        assert_eq!(shown(""), r#""""#);
        assert_eq!(shown("-"), r#""-""#);
        assert_eq!(shown("x ip=192.0.2.10"), r#""x ip=192.0.2.10""#);
        assert_eq!(
            shown("a\nevent=admin_signin result=ok"),
            r#""a\nevent=admin_signin result=ok""#
        );
        assert_eq!(shown("say \"hi\" \\"), r#""say \"hi\" \\""#);
        assert_eq!(shown("\r\t\0\x7f\x1b"), r#""\r\t\x00\x7f\x1b""#);
        assert_eq!(
            shown("\u{85}\u{2028}\u{202e}x"),
            r#""\u{0085}\u{2028}\u{202e}x""#
        );
        assert_eq!(shown("jürgen@example.org"), "\"jürgen@example.org\"");
        assert_eq!(shown("k=v"), r#""k=v""#);
    }

    #[test]
    fn no_log_hides_private_values_and_only_those() {
        assert_eq!(private("alice@example.org", true).to_string(), "-");
        assert_eq!(
            private("alice@example.org", false).to_string(),
            "alice@example.org"
        );
        assert_eq!(private("a b", false).to_string(), r#""a b""#);
        assert_eq!(private_opt(Some("192.0.2.7"), true).to_string(), "-");
        assert_eq!(private_opt(None::<&str>, false).to_string(), "-");
        assert_eq!(
            private_opt(Some("192.0.2.7"), false).to_string(),
            "192.0.2.7"
        );
        assert_eq!(value("smtp").to_string(), "smtp");
    }

    #[test]
    fn every_byte_value_alone_and_inside_text_round_trips() {
        for b in 0..=255u8 {
            let c = char::from(b);
            check(&c.to_string());
            check(&format!("a{c}b"));
            check(&format!("{c}{c} ip=192.0.2.10{c}"));
        }
    }

    #[test]
    fn unicode_and_every_special_character_round_trip() {
        for c in [
            '\u{85}', '\u{a0}', '\u{ad}', '\u{61c}', '\u{200b}', '\u{200f}', '\u{2028}',
            '\u{2029}', '\u{202e}', '\u{2066}', '\u{feff}', '\u{fffd}', 'ü', '日', '🦀',
        ] {
            check(&c.to_string());
            check(&format!("user{c}@example.org"));
        }
    }

    #[test]
    fn random_strings_round_trip_and_never_break_a_line_or_a_field() {
        const ALPHABET: &[char] = &[
            'a', 'Z', '0', '@', '.', '-', '_', ':', '+', '/', ' ', '=', '"', '\\', '\n', '\r',
            '\t', '\0', '\x01', '\x1b', '\x7f', '\u{85}', '\u{2028}', '\u{202e}', 'é', '🦀', 'x',
            'u', '{', '}',
        ];
        let mut rng = StdRng::seed_from_u64(11);
        for _ in 0..20_000 {
            let len = rng.gen_range(0..24);
            let s: String = (0..len)
                .map(|_| {
                    if rng.gen_bool(0.1) {
                        char::from_u32(rng.gen_range(0..0x11000)).unwrap_or('?')
                    } else {
                        ALPHABET[rng.gen_range(0..ALPHABET.len())]
                    }
                })
                .collect();
            check(&s);
        }
    }

    #[test]
    fn a_forged_field_or_line_stays_inside_its_value() {
        for forged in [
            "x ip=192.0.2.10",
            "x\" ip=192.0.2.10",
            "x\\\" ip=192.0.2.10 \"",
            "x\nevent=login result=fail reason=bad_password address=y service=smtp ip=192.0.2.10",
            "event=admin_signin result=ok",
        ] {
            let line = format!(
                "event=login result=fail address={} ip=203.0.113.5",
                shown(forged)
            );
            assert!(!line.contains('\n'), "{line}");
            let f = fields(&line).unwrap_or_else(|| panic!("unparsable: {line}"));
            let ips: Vec<&str> = f
                .iter()
                .filter(|(k, _)| k == "ip")
                .map(|(_, v)| v.as_str())
                .collect();
            assert_eq!(ips, ["203.0.113.5"], "{line}");
            assert_eq!(f[2].1, forged);
        }
    }

    #[test]
    fn repeats_are_first_once_per_key_and_window() {
        let r = Repeats::default();
        let t0 = Instant::now();
        let w = Duration::from_secs(60);
        assert!(r.first("ip:192.0.2.7", w, t0));
        assert!(!r.first("ip:192.0.2.7", w, t0 + Duration::from_secs(1)));
        assert!(!r.first("ip:192.0.2.7", w, t0 + Duration::from_secs(59)));
        assert!(r.first("ip:192.0.2.8", w, t0 + Duration::from_secs(1)));
        assert!(r.first("ip:192.0.2.7", w, t0 + Duration::from_secs(60)));
        assert!(!r.first("ip:192.0.2.7", w, t0 + Duration::from_secs(61)));
    }

    #[test]
    fn repeats_stay_bounded_and_forget_expired_keys_when_full() {
        let r = Repeats::default();
        let t0 = Instant::now();
        let w = Duration::from_secs(60);
        for i in 0..MAX_KEYS {
            assert!(r.first(&i.to_string(), w, t0));
        }
        assert!(!r.first("one more", w, t0), "full: a repeat");
        assert!(r.first("one more", w, t0 + w), "the old keys expired");
        assert!(r.seen.lock().expect("lock").len() <= MAX_KEYS);
    }
}
