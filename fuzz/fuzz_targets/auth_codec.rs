//! Dovecot auth-client codec: the same requests and errors whole and in any chunking;
//! every decoded request written back as Postfix would decodes to itself; every reply is
//! one line whose fields unescape to what was encoded.

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use postern::dovecot_auth::codec::{encode, Codec, DecodeError, Reply, Request, MAX_LINE};
use postern::tabescape;
use postern_fuzz::{same_in_any_chunking, Decoder, Plan};

struct Auth(Codec);

impl Decoder for Auth {
    type Item = Request;
    type Error = DecodeError;

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Request>, DecodeError> {
        self.0.decode(buf)
    }

    fn ends_session(e: &DecodeError) -> bool {
        *e == DecodeError::LineTooLong
    }
}

fn push(out: &mut Vec<u8>, field: &str) {
    out.push(b'\t');
    tabescape::escape(field.as_bytes(), out);
}

fn param(out: &mut Vec<u8>, key: &str, value: &Option<String>) {
    match value {
        Some(v) => push(out, &format!("{key}={v}")),
        None => push(out, key),
    }
}

/// The line an auth client would send for `request`.
fn client_line(request: &Request) -> Vec<u8> {
    let mut out = Vec::new();
    match request {
        Request::Version { major, minor } => {
            out.extend_from_slice(format!("VERSION\t{major}\t{minor}").as_bytes());
        }
        Request::Cpid { pid } => out.extend_from_slice(format!("CPID\t{pid}").as_bytes()),
        Request::Cancel { id } => out.extend_from_slice(format!("CANCEL\t{id}").as_bytes()),
        Request::Cont { id, data } => {
            out.extend_from_slice(format!("CONT\t{id}").as_bytes());
            push(&mut out, data);
        }
        Request::Auth(auth) => {
            out.extend_from_slice(format!("AUTH\t{}", auth.id).as_bytes());
            push(&mut out, &auth.mech);
            for (key, value) in [
                ("service", &auth.service),
                ("resp", &auth.resp),
                ("rip", &auth.rip),
                ("lip", &auth.lip),
            ] {
                if value.is_some() {
                    param(&mut out, key, value);
                }
            }
            if auth.secured {
                push(&mut out, "secured");
            }
            for (key, value) in &auth.other {
                param(&mut out, key, value);
            }
        }
    }
    out.push(b'\n');
    out
}

/// The fields of one encoded reply line, unescaped; asserts it is exactly one line.
fn reply_fields(reply: &Reply<'_>) -> Vec<String> {
    let mut out = Vec::new();
    encode(reply, &mut out);
    assert_eq!(out.last(), Some(&b'\n'), "{reply:?}");
    let line = &out[..out.len() - 1];
    assert!(
        !line.contains(&b'\n') && !line.contains(&b'\r'),
        "{reply:?}"
    );
    line.split(|&b| b == b'\t')
        .map(|f| {
            let raw = tabescape::unescape(f).expect("an encoded field unescapes");
            String::from_utf8(raw).expect("an encoded field is the UTF-8 it was")
        })
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let plan = Plan::read(data);
    let max_line = plan.max_line.unwrap_or(MAX_LINE);
    let decoded = same_in_any_chunking(|| Auth(Codec::with_max_line(max_line)), &plan);

    for request in decoded.into_iter().flatten() {
        let line = client_line(&request);
        let mut buf = BytesMut::from(&line[..]);
        let again = Codec::with_max_line(usize::MAX).decode(&mut buf);
        assert_eq!(again, Ok(Some(request)), "re-encoded as {line:?}");
        assert!(buf.is_empty());
    }

    let text = String::from_utf8_lossy(plan.stream);
    let user = format!("user={text}");
    assert_eq!(
        reply_fields(&Reply::Fail {
            id: 7,
            fields: &[("user", &text), ("reason", &text)],
        }),
        [
            "FAIL",
            "7",
            user.as_str(),
            format!("reason={text}").as_str()
        ]
    );
    assert_eq!(
        reply_fields(&Reply::Cont { id: 2, data: &text }),
        ["CONT", "2", &*text]
    );
});
