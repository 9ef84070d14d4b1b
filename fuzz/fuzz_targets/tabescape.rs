//! Dovecot's 0x01 escaping: unescape(escape(x)) == x for any bytes; an escaped field holds
//! no TAB, CR, LF or NUL; unescaping either fails at an 0x01 or gives bytes whose escape
//! is the input again (when the input had no raw special byte).

#![no_main]

use libfuzzer_sys::fuzz_target;
use postern::tabescape::{escape, escape_str, unescape, ESCAPE_BYTE};

fuzz_target!(|data: &[u8]| {
    let mut wire = Vec::new();
    escape(data, &mut wire);
    assert!(!wire.iter().any(|b| matches!(b, b'\t' | b'\r' | b'\n' | 0)));
    assert_eq!(unescape(&wire).as_deref(), Ok(data));

    if let Ok(text) = std::str::from_utf8(data) {
        assert_eq!(escape_str(text).as_bytes(), &wire[..]);
    }

    match unescape(data) {
        Ok(raw) => {
            if !data.iter().any(|b| matches!(b, b'\t' | b'\r' | b'\n' | 0)) {
                let mut back = Vec::new();
                escape(&raw, &mut back);
                assert_eq!(back, data);
            }
        }
        Err(e) => assert_eq!(data.get(e.position), Some(&ESCAPE_BYTE)),
    }
});
