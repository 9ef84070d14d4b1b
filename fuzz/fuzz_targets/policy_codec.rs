//! Postfix policy codec: the same requests and errors whole and in any chunking; every
//! decoded request written back as Postfix would decodes to itself; a reply is one
//! `action=` line and the empty line, whatever the action holds.

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use postern::postfix_policy::codec::{encode, Codec, DecodeError, Reply, Request, MAX_LINE};
use postern_fuzz::{same_in_any_chunking, Decoder, Plan};

struct Policy(Codec);

impl Decoder for Policy {
    type Item = Request;
    type Error = DecodeError;

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Request>, DecodeError> {
        self.0.decode(buf)
    }

    fn ends_session(e: &DecodeError) -> bool {
        !matches!(e, DecodeError::Malformed { .. })
    }
}

/// The block Postfix would send for `request` (CRLF line ends, so a value's own last CR
/// survives).
fn client_block(request: &Request) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in [
        ("protocol_state", &request.protocol_state),
        ("recipient", &request.recipient),
        ("sasl_username", &request.sasl_username),
        ("size", &request.size.to_string()),
        ("instance", &request.instance),
    ] {
        out.extend_from_slice(format!("{name}={value}\r\n").as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out
}

fuzz_target!(|data: &[u8]| {
    let plan = Plan::read(data);
    let decoded = same_in_any_chunking(|| Policy(Codec::new()), &plan);

    for request in decoded.into_iter().flatten() {
        let block = client_block(&request);
        let mut buf = BytesMut::from(&block[..]);
        let again = Codec::new().decode(&mut buf);
        let expected = Request {
            attributes: 5,
            ..request
        };
        if block.len() <= postern::postfix_policy::codec::MAX_BLOCK
            && block.split(|&b| b == b'\n').all(|l| l.len() <= MAX_LINE)
        {
            assert_eq!(again, Ok(Some(expected)), "re-encoded as {block:?}");
            assert!(buf.is_empty());
        }
    }

    let action = String::from_utf8_lossy(plan.stream);
    let mut out = Vec::new();
    encode(&Reply { action: &action }, &mut out);
    assert!(out.starts_with(b"action=") && out.ends_with(b"\n\n"));
    assert!(!out[..out.len() - 2].contains(&b'\n'), "{out:?}");
    if out.len() - 2 <= MAX_LINE {
        // The reply is framed as a request is: one attribute line, then the empty line.
        let mut buf = BytesMut::from(&out[..]);
        let read = Codec::new().decode(&mut buf);
        assert!(
            matches!(read, Ok(Some(Request { attributes: 1, .. }))),
            "{read:?}"
        );
        assert!(buf.is_empty());
    }
});
