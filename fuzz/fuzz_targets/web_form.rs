//! Form bodies and query strings: any bytes parse; the pairs, percent-encoded again,
//! parse to the same pairs; `get`, `text` and `flag` agree with the pairs.

#![no_main]

use libfuzzer_sys::fuzz_target;
use postern::web::form::{encode, Fields};

fuzz_target!(|data: &[u8]| {
    let fields = Fields::parse(data);
    let body = fields
        .pairs()
        .iter()
        .map(|(name, value)| format!("{}={}", encode(name), encode(value)))
        .collect::<Vec<_>>()
        .join("&");
    let again = Fields::parse(body.as_bytes());
    assert_eq!(again, fields, "re-encoded as {body:?}");

    for (name, _) in fields.pairs() {
        let first = fields
            .pairs()
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v);
        assert_eq!(fields.get(name), first.map(String::as_str));
        let text = fields.text(name);
        assert!(text.is_none_or(|t| !t.is_empty() && t.trim() == t));
        assert_eq!(
            fields.flag(name),
            !matches!(fields.get(name), Some("0" | "off"))
        );
    }
});
