//! Dovecot's TAB-escaping, shared by the dict proxy and auth-client protocols.
//!
//! Both protocols are lines of TAB-separated fields, so a field must not contain a TAB,
//! CR or LF. Dovecot replaces those bytes (and the escape byte itself, and NUL) with the
//! byte 0x01 followed by a letter or digit. Every field read is unescaped, every field
//! written is escaped.
//!
//! ```text
//! raw field                 on the wire (\x01 is the single byte 0x01)
//! a<TAB>b                   a\x01tb
//! line1<LF>line2<CR>        line1\x01nline2\x01r
//! \x01 (the escape byte)    \x011
//! NUL                       \x010
//! ```

use std::borrow::Cow;

/// The byte that starts an escape sequence.
pub const ESCAPE_BYTE: u8 = 0x01;

/// An 0x01 followed by a byte that is not `1`, `t`, `r`, `n` or `0`, or an 0x01 that
/// ends the input: the peer is not speaking the protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("bad 0x01 escape at byte {position}")]
pub struct BadEscape {
    /// Offset of the offending 0x01 in the escaped input.
    pub position: usize,
}

/// The escape letter for `byte`, if `byte` must be escaped.
fn escape_letter(byte: u8) -> Option<u8> {
    match byte {
        ESCAPE_BYTE => Some(b'1'),
        b'\t' => Some(b't'),
        b'\r' => Some(b'r'),
        b'\n' => Some(b'n'),
        0 => Some(b'0'),
        _ => None,
    }
}

/// Appends `input` to `out` with every special byte escaped.
pub fn escape(input: &[u8], out: &mut Vec<u8>) {
    out.reserve(input.len());
    let mut rest = input;
    // Runs without a special byte (usually the whole input) are copied at once.
    while let Some((at, letter)) = rest
        .iter()
        .enumerate()
        .find_map(|(at, &byte)| escape_letter(byte).map(|letter| (at, letter)))
    {
        out.extend_from_slice(&rest[..at]);
        out.extend_from_slice(&[ESCAPE_BYTE, letter]);
        rest = &rest[at + 1..];
    }
    out.extend_from_slice(rest);
}

/// The escaped form of `input`. Escapes are ASCII, so the result is still a `String`.
pub fn escape_str(input: &str) -> String {
    let mut out = String::with_capacity(input.len());
    for c in input.chars() {
        match u8::try_from(c).ok().and_then(escape_letter) {
            Some(letter) => {
                out.push(char::from(ESCAPE_BYTE));
                out.push(char::from(letter));
            }
            None => out.push(c),
        }
    }
    out
}

/// The raw bytes behind the escaped field `input`.
pub fn unescape(input: &[u8]) -> Result<Vec<u8>, BadEscape> {
    unescape_borrowed(input).map(Cow::into_owned)
}

/// Like [`unescape`], but a field without an escape (nearly every field) is handed back
/// as it is, without a copy.
pub fn unescape_borrowed(input: &[u8]) -> Result<Cow<'_, [u8]>, BadEscape> {
    let Some(first) = memchr::memchr(ESCAPE_BYTE, input) else {
        return Ok(Cow::Borrowed(input));
    };
    let mut out = Vec::with_capacity(input.len());
    out.extend_from_slice(&input[..first]);
    let mut bytes = input.iter().enumerate().skip(first);
    while let Some((position, &byte)) = bytes.next() {
        if byte != ESCAPE_BYTE {
            out.push(byte);
            continue;
        }
        let raw = match bytes.next() {
            Some((_, b'1')) => ESCAPE_BYTE,
            Some((_, b't')) => b'\t',
            Some((_, b'r')) => b'\r',
            Some((_, b'n')) => b'\n',
            Some((_, b'0')) => 0,
            _ => return Err(BadEscape { position }),
        };
        out.push(raw);
    }
    Ok(Cow::Owned(out))
}

/// The escaped field `input` as UTF-8 text, borrowed unless it had an escape in it; on
/// failure, the reason both protocols' malformed-line errors give.
pub fn unescape_text(input: &[u8]) -> Result<Cow<'_, str>, &'static str> {
    const NOT_UTF8: &str = "field is not UTF-8";
    match unescape_borrowed(input).map_err(|_| "bad 0x01 escape")? {
        Cow::Borrowed(raw) => std::str::from_utf8(raw)
            .map(Cow::Borrowed)
            .map_err(|_| NOT_UTF8),
        Cow::Owned(raw) => String::from_utf8(raw).map(Cow::Owned).map_err(|_| NOT_UTF8),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec_tests::XorShift;

    fn escaped(input: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        escape(input, &mut out);
        out
    }

    #[test]
    fn each_special_byte_has_its_letter() {
        assert_eq!(escaped(b"\x01"), b"\x011");
        assert_eq!(escaped(b"\t"), b"\x01t");
        assert_eq!(escaped(b"\r"), b"\x01r");
        assert_eq!(escaped(b"\n"), b"\x01n");
        assert_eq!(escaped(b"\0"), b"\x010");
        assert_eq!(escaped(b"a\tb\nc"), b"a\x01tb\x01nc");
    }

    #[test]
    fn plain_text_is_unchanged() {
        let text = "shared/passdb/alice@example.org {PLAIN}s3cr\u{e9}t \"quoted\"";
        assert_eq!(escape_str(text), text);
        assert_eq!(unescape(text.as_bytes()), Ok(text.as_bytes().to_vec()));
    }

    #[test]
    fn escape_appends() {
        let mut out = b"O".to_vec();
        escape(b"x\ty", &mut out);
        assert_eq!(out, b"Ox\x01ty");
    }

    #[test]
    fn escaped_output_has_no_field_or_line_separator() {
        let all: Vec<u8> = (0..=255).collect();
        let out = escaped(&all);
        assert!(!out.contains(&b'\t') && !out.contains(&b'\n') && !out.contains(&b'\r'));
        assert!(!out.contains(&0));
    }

    #[test]
    fn unescape_rejects_unknown_letter_and_dangling_escape() {
        assert_eq!(unescape(b"ab\x01x"), Err(BadEscape { position: 2 }));
        assert_eq!(unescape(b"ab\x01"), Err(BadEscape { position: 2 }));
        assert_eq!(unescape(b"\x01\x01"), Err(BadEscape { position: 0 }));
        assert_eq!(unescape(b"\x011\x01"), Err(BadEscape { position: 2 }));
        assert_eq!(
            unescape_borrowed(b"plain\x01x"),
            Err(BadEscape { position: 5 })
        );
    }

    #[test]
    fn unescape_text_borrows_plain_fields_and_names_what_is_wrong() {
        assert!(matches!(
            unescape_text(b"alice"),
            Ok(Cow::Borrowed("alice"))
        ));
        assert_eq!(unescape_text(b"a\x01tb").as_deref(), Ok("a\tb"));
        assert_eq!(unescape_text(b"a\x01x"), Err("bad 0x01 escape"));
        assert_eq!(unescape_text(b"\xc3\x28"), Err("field is not UTF-8"));
        assert_eq!(unescape_text(b"\x01n\xff"), Err("field is not UTF-8"));
    }

    #[test]
    fn unescape_keeps_multibyte_utf8() {
        let escaped = escape_str("m\u{fc}ller\t\u{1f600}");
        assert_eq!(escaped, "m\u{fc}ller\x01t\u{1f600}");
        assert_eq!(
            unescape(escaped.as_bytes()),
            Ok("m\u{fc}ller\t\u{1f600}".as_bytes().to_vec())
        );
    }

    #[test]
    fn round_trip_over_many_byte_strings() {
        // Bytes drawn mostly from the special ones, so escapes sit next to each other.
        const ALPHABET: &[u8] = b"\x01\t\r\n\x001trn0a\xff";
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        for _ in 0..5000 {
            let len = (rng.next() % 40) as usize;
            let input: Vec<u8> = (0..len)
                .map(|_| {
                    let r = rng.next();
                    if r % 4 == 0 {
                        (r >> 8) as u8
                    } else {
                        ALPHABET[(r >> 8) as usize % ALPHABET.len()]
                    }
                })
                .collect();
            let wire = escaped(&input);
            assert_eq!(unescape(&wire), Ok(input.clone()), "input {input:?}");
            let borrowed = unescape_borrowed(&wire).expect("escaped by us");
            assert_eq!(*borrowed, input[..], "input {input:?}");
            // Only a field with an escape in it is copied.
            assert_eq!(
                matches!(borrowed, Cow::Borrowed(_)),
                !wire.contains(&ESCAPE_BYTE)
            );
        }
    }

    #[test]
    fn round_trip_every_two_byte_string() {
        for a in 0..=255u8 {
            for b in 0..=255u8 {
                let input = [a, b];
                assert_eq!(unescape(&escaped(&input)), Ok(input.to_vec()));
            }
        }
    }
}
