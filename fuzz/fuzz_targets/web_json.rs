//! The JSON body of `POST /new`: any bytes either parse or are refused; what parses is
//! an object whose `username`, `password` and `token` are what a generic JSON reader
//! sees there.

#![no_main]

use libfuzzer_sys::fuzz_target;
use postern::web::JsonRequest;
use serde_json::Value;

/// What serde_json's generic reader refuses and its skipping of an ignored value lets by.
const SKIPPED_UNCHECKED: [&str; 5] = [
    "number out of range",
    "lone leading surrogate in hex escape",
    "unexpected end of hex escape",
    "invalid unicode code point",
    "recursion limit exceeded",
];

fuzz_target!(|data: &[u8]| {
    let parsed = serde_json::from_slice::<JsonRequest>(data);
    let generic = serde_json::from_slice::<Value>(data);
    let Ok(request) = parsed else {
        return;
    };
    let value = match generic {
        Ok(value) => value,
        Err(e) => {
            // serde_json skips an unknown field's value without checking its UTF-8, the
            // range of its numbers, whether its `\u` escapes make characters, or how deep
            // it nests, so such a body is accepted (and the field ignored); anything else
            // must be JSON.
            let message = e.to_string();
            let lenient = std::str::from_utf8(data).is_err()
                || SKIPPED_UNCHECKED.iter().any(|m| message.starts_with(m));
            assert!(lenient, "accepted as a sign-up but not as JSON: {e}");
            return;
        }
    };
    let field = |name: &str| value.get(name).and_then(Value::as_str).map(str::to_owned);
    if let Value::Object(_) = value {
        assert_eq!(request.username, field("username"));
        assert_eq!(request.password, field("password"));
        assert_eq!(request.token, field("token"));
    }
});
