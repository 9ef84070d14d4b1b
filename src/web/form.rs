//! `application/x-www-form-urlencoded` in both directions: the HTML forms' bodies and
//! query strings in, percent-encoded link parameters out. Pure and small; a malformed
//! escape is kept as it is rather than refused, as browsers do.
//!
//! ```text
//! username=alice&password=p%C3%A4ss+word&token=   ->  [("username","alice"),
//!                                                      ("password","päss word"),
//!                                                      ("token","")]
//! ```

/// Decoded `name=value` pairs, in order. Invalid UTF-8 becomes U+FFFD.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fields(Vec<(String, String)>);

impl Fields {
    /// Parses a body or a query string.
    pub fn parse(input: &[u8]) -> Fields {
        Fields(
            input
                .split(|&b| b == b'&')
                .filter(|pair| !pair.is_empty())
                .map(|pair| {
                    let (name, value) = match pair.iter().position(|&b| b == b'=') {
                        Some(i) => (&pair[..i], &pair[i + 1..]),
                        None => (pair, &[][..]),
                    };
                    (decode(name), decode(value))
                })
                .collect(),
        )
    }

    /// Every pair, in order: what the fuzz target re-encodes.
    #[doc(hidden)]
    pub fn pairs(&self) -> &[(String, String)] {
        &self.0
    }

    /// The first value of `name`, as sent.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The first value of `name`, trimmed; `None` when absent or blank.
    pub fn text(&self, name: &str) -> Option<&str> {
        self.get(name).map(str::trim).filter(|v| !v.is_empty())
    }

    /// A checkbox: present with any value but "0" or "off".
    pub fn flag(&self, name: &str) -> bool {
        self.get(name).is_some_and(|v| v != "0" && v != "off")
    }
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Undoes `+` and `%XX`.
fn decode(s: &[u8]) -> String {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'+' => out.push(b' '),
            b'%' => match (
                s.get(i + 1).copied().and_then(hex),
                s.get(i + 2).copied().and_then(hex),
            ) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Percent-encodes everything but RFC 3986's unreserved characters, so the value
/// survives any URL parser (a `+` stays a plus, a space is `%20`).
pub fn encode(s: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(HEX[usize::from(b >> 4)] as char);
            out.push(HEX[usize::from(b & 15)] as char);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_browsers_send() {
        let f = Fields::parse(b"username=alice&password=p%C3%A4ss+word&token=&flag&x=%zz%4");
        assert_eq!(f.get("username"), Some("alice"));
        assert_eq!(f.get("password"), Some("päss word"));
        assert_eq!(f.get("token"), Some(""));
        assert_eq!(f.text("token"), None);
        assert!(f.flag("flag"));
        assert!(!f.flag("missing"));
        assert_eq!(f.get("x"), Some("%zz%4"));
        assert_eq!(Fields::parse(b""), Fields::default());
        assert_eq!(Fields::parse(b"a=1&a=2").get("a"), Some("1"));
    }

    #[test]
    fn encode_round_trips_through_decode() {
        let awkward = "a+b c&d=e/f?g#h%i\"j'k\\l~m.n_o-pä€";
        let e = encode(awkward);
        assert!(e
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"%-._~".contains(&b)));
        assert_eq!(decode(e.as_bytes()), awkward);
        assert_eq!(encode("a b+c"), "a%20b%2Bc");
    }
}
