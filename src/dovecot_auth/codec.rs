//! Dovecot's auth-client protocol, server side: bytes to [`Request`]s, [`Reply`]s to bytes.
//!
//! This is what Postfix speaks with `smtpd_sasl_type = dovecot`: LF-ended lines of
//! TAB-separated, 0x01-escaped fields ([`crate::tabescape`]), the command name first.
//! The client opens with `VERSION` and `CPID`; the server answers with its handshake,
//! ended by `DONE`; then each `AUTH` is answered by `OK`, `FAIL`, or a `CONT` challenge
//! that the client answers with its own `CONT`. SASL data travels base64-encoded and is
//! left encoded here: the session decodes it.
//!
//! ```text
//! C: VERSION\t1\t0
//! C: CPID\t13861
//! S: VERSION\t1\t2
//! S: MECH\tPLAIN\tplaintext
//! S: MECH\tLOGIN\tplaintext
//! S: SPID\t13864
//! S: CUID\t1
//! S: COOKIE\t9e3faf7806fe113fc5408cdae06d560f
//! S: DONE
//! C: AUTH\t1\tPLAIN\tservice=smtp\tnologin\tlip=127.0.0.1\trip=127.0.0.1\tresp=AGFsaWNl...
//! S: OK\t1\tuser=alice@example.org
//! C: AUTH\t2\tLOGIN\tservice=smtp\tnologin\tlip=127.0.0.1\trip=127.0.0.1
//! S: CONT\t2\tVXNlcm5hbWU6
//! C: CONT\t2\tYWxpY2VAZXhhbXBsZS5vcmc=
//! S: FAIL\t2\tuser=alice@example.org
//! ```

use std::borrow::Cow;

use bytes::BytesMut;

use crate::lines::LineFramer;
use crate::tabescape;

/// Longest line accepted, without its line end: Dovecot's `AUTH_CLIENT_MAX_LINE_LENGTH`
/// (src/lib-auth/auth-client-interface.h).
pub const MAX_LINE: usize = 16384;

/// The protocol version Dovecot 2.3 announces (`VERSION\t1\t2`), which Postfix accepts.
pub const PROTOCOL_MAJOR: u32 = 1;
/// See [`PROTOCOL_MAJOR`].
pub const PROTOCOL_MINOR: u32 = 2;

/// One line from an auth client, fields unescaped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// `VERSION\t<major>\t<minor>`: the client's first line.
    Version { major: u32, minor: u32 },
    /// `CPID\t<pid>`: the client's process id; ends the client's half of the handshake.
    Cpid { pid: u32 },
    /// `AUTH\t<id>\t<mech>\t<params>...`: starts authentication request `id`.
    Auth(AuthRequest),
    /// `CONT\t<id>\t<base64>`: the client's answer to a [`Reply::Cont`] challenge.
    Cont { id: u32, data: String },
    /// `CANCEL\t<id>`: the client gave up on request `id`; no reply.
    Cancel { id: u32 },
}

/// The fields of an `AUTH` line that the server acts on, and the rest in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthRequest {
    /// The client's request id, never 0; every reply to this request repeats it.
    pub id: u32,
    /// The SASL mechanism as sent (`PLAIN`, `LOGIN`).
    pub mech: String,
    /// `service=`: `smtp` for Postfix.
    pub service: Option<String>,
    /// `resp=`: the base64 initial response, still encoded. `Some("")` is an empty
    /// response for clients of protocol minor 2 and later, but "no response" for older
    /// ones such as Postfix's `VERSION\t1\t0` (src/auth/auth-request-handler.c).
    pub resp: Option<String>,
    /// `rip=`: the SMTP client's address.
    pub rip: Option<String>,
    /// `lip=`: the address the SMTP client connected to.
    pub lip: Option<String>,
    /// `secured` (with or without a value): the SMTP session runs over TLS.
    pub secured: bool,
    /// Every other parameter in order: `(key, Some(value))` for `key=value`, `(flag, None)`
    /// for a bare flag such as `nologin` or `valid-client-cert`.
    pub other: Vec<(String, Option<String>)>,
}

impl AuthRequest {
    /// Whether the bare flag `name` (for instance `nologin`) was among the other parameters.
    pub fn has_flag(&self, name: &str) -> bool {
        self.other
            .iter()
            .any(|(key, value)| key == name && value.is_none())
    }
}

/// Why bytes could not be read as a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// A line grew past the limit. Nothing was consumed and the stream cannot be
    /// resynchronised: close the connection.
    #[error("auth-client line longer than {MAX_LINE} bytes")]
    LineTooLong,
    /// A complete line of a known command with bad fields. The line was consumed.
    #[error("malformed {command} line: {reason}")]
    Malformed {
        command: &'static str,
        reason: &'static str,
    },
    /// A complete line whose command is not one a client sends (name cut to 32 bytes,
    /// invalid UTF-8 replaced). The line was consumed; Dovecot closes the connection.
    #[error("unknown auth-client command {0:?}")]
    UnknownCommand(String),
}

impl DecodeError {
    /// Whether the connection closes after this error: an over-long line (the stream
    /// cannot be resynchronised) or a command no client sends (Dovecot's auth server
    /// closes on it too). A malformed line of a known command is skipped.
    pub fn ends_session(&self) -> bool {
        matches!(
            self,
            DecodeError::LineTooLong | DecodeError::UnknownCommand(_)
        )
    }
}

/// Reads requests from a byte buffer that the session fills from the socket.
#[derive(Debug, Clone)]
pub struct Codec {
    lines: LineFramer,
}

impl Default for Codec {
    fn default() -> Self {
        Self::new()
    }
}

impl Codec {
    /// A codec with Dovecot's line limit, [`MAX_LINE`].
    pub fn new() -> Self {
        Self::with_max_line(MAX_LINE)
    }

    /// A codec that refuses lines longer than `max_line` bytes (line end excluded).
    pub fn with_max_line(max_line: usize) -> Self {
        Self {
            lines: LineFramer::new(max_line),
        }
    }

    /// The next request in `buf`: `Ok(None)` if no complete line is there yet (nothing
    /// consumed); otherwise the line and its LF (or CRLF) are consumed, whether it held
    /// a valid request or not.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Request>, DecodeError> {
        match self
            .lines
            .take_line(buf)
            .map_err(|_| DecodeError::LineTooLong)?
        {
            Some(line) => parse_request(&line).map(Some),
            None => Ok(None),
        }
    }
}

fn unescape_field(field: &[u8]) -> Result<String, &'static str> {
    tabescape::unescape_text(field).map(Cow::into_owned)
}

fn number(field: Option<&[u8]>, what: &'static str) -> Result<u32, &'static str> {
    field
        .and_then(|f| std::str::from_utf8(f).ok())
        .and_then(|f| f.parse().ok())
        .ok_or(what)
}

fn parse_request(line: &[u8]) -> Result<Request, DecodeError> {
    let (name, args) = match line.iter().position(|&b| b == b'\t') {
        Some(tab) => (&line[..tab], &line[tab + 1..]),
        None => (line, &[][..]),
    };
    let (command, parsed) = match name {
        b"VERSION" => ("VERSION", parse_version(args)),
        b"CPID" => (
            "CPID",
            number(Some(args), "bad pid").map(|pid| Request::Cpid { pid }),
        ),
        b"AUTH" => ("AUTH", parse_auth(args).map(Request::Auth)),
        b"CONT" => ("CONT", parse_cont(args)),
        b"CANCEL" => (
            "CANCEL",
            number(Some(args), "bad request id").map(|id| Request::Cancel { id }),
        ),
        _ => {
            let shown = &name[..name.len().min(32)];
            return Err(DecodeError::UnknownCommand(
                String::from_utf8_lossy(shown).into_owned(),
            ));
        }
    };
    parsed.map_err(|reason| DecodeError::Malformed { command, reason })
}

fn parse_version(args: &[u8]) -> Result<Request, &'static str> {
    let mut fields = args.split(|&b| b == b'\t');
    Ok(Request::Version {
        major: number(fields.next(), "bad major version")?,
        minor: number(fields.next(), "bad minor version")?,
    })
}

fn parse_cont(args: &[u8]) -> Result<Request, &'static str> {
    // Dovecot takes everything after the id as the data, TABs included.
    let tab = args
        .iter()
        .position(|&b| b == b'\t')
        .ok_or("missing data")?;
    let id = number(Some(&args[..tab]), "bad request id")?;
    let data = unescape_field(&args[tab + 1..])?;
    Ok(Request::Cont { id, data })
}

fn parse_auth(args: &[u8]) -> Result<AuthRequest, &'static str> {
    let mut fields = args.split(|&b| b == b'\t');
    let id = number(fields.next(), "bad request id")?;
    if id == 0 {
        return Err("request id 0");
    }
    let mech = unescape_field(fields.next().ok_or("missing mechanism")?)?;
    if mech.is_empty() {
        return Err("missing mechanism");
    }
    let mut auth = AuthRequest {
        id,
        mech,
        ..AuthRequest::default()
    };
    for field in fields {
        // An escape never stands for '=', so the first '=' of the raw field is the
        // first of the unescaped one; only the values kept are copied out of the line.
        let (key, value) = match field.iter().position(|&b| b == b'=') {
            Some(eq) => (
                tabescape::unescape_text(&field[..eq])?,
                Some(&field[eq + 1..]),
            ),
            None => (tabescape::unescape_text(field)?, None),
        };
        let value = value.map(unescape_field).transpose()?;
        match &*key {
            "service" => auth.service = value,
            "resp" => auth.resp = value,
            "rip" => auth.rip = value,
            "lip" => auth.lip = value,
            "secured" => auth.secured = true,
            _ => auth.other.push((key.into_owned(), value)),
        }
    }
    Ok(auth)
}

/// One line to send to an auth client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply<'a> {
    /// `VERSION\t<major>\t<minor>`: the first line of the server's handshake.
    Version { major: u32, minor: u32 },
    /// `MECH\t<name>\t<flags>...`: one offered mechanism (flags such as `plaintext`).
    Mech { name: &'a str, flags: &'a [&'a str] },
    /// `SPID\t<pid>`: the server's process id.
    Spid(u32),
    /// `CUID\t<n>`: this connection's number.
    Cuid(u32),
    /// `COOKIE\t<32 hex digits>`: 128 random bits, written as lowercase hex.
    Cookie(&'a [u8; 16]),
    /// `DONE`: ends the server's handshake.
    Done,
    /// `OK\t<id>\t<key=value>...`: request `id` succeeded (Postfix reads `user=`).
    Ok {
        id: u32,
        fields: &'a [(&'a str, &'a str)],
    },
    /// `FAIL\t<id>\t<key=value>...`: request `id` failed (Postfix shows `reason=`).
    Fail {
        id: u32,
        fields: &'a [(&'a str, &'a str)],
    },
    /// `CONT\t<id>\t<base64>`: a challenge; the data may be empty.
    Cont { id: u32, data: &'a str },
}

fn push_field(out: &mut Vec<u8>, field: &str) {
    out.push(b'\t');
    tabescape::escape(field.as_bytes(), out);
}

fn push_number(out: &mut Vec<u8>, n: u32) {
    out.push(b'\t');
    out.extend_from_slice(n.to_string().as_bytes());
}

fn push_key_values(out: &mut Vec<u8>, fields: &[(&str, &str)]) {
    for (key, value) in fields {
        out.push(b'\t');
        tabescape::escape(key.as_bytes(), out);
        out.push(b'=');
        tabescape::escape(value.as_bytes(), out);
    }
}

/// Appends `reply` and its LF to `out`, every field escaped.
pub fn encode(reply: &Reply<'_>, out: &mut Vec<u8>) {
    match *reply {
        Reply::Version { major, minor } => {
            out.extend_from_slice(b"VERSION");
            push_number(out, major);
            push_number(out, minor);
        }
        Reply::Mech { name, flags } => {
            out.extend_from_slice(b"MECH");
            push_field(out, name);
            for flag in flags {
                push_field(out, flag);
            }
        }
        Reply::Spid(pid) => {
            out.extend_from_slice(b"SPID");
            push_number(out, pid);
        }
        Reply::Cuid(n) => {
            out.extend_from_slice(b"CUID");
            push_number(out, n);
        }
        Reply::Cookie(cookie) => {
            out.extend_from_slice(b"COOKIE\t");
            for byte in cookie {
                out.extend_from_slice(format!("{byte:02x}").as_bytes());
            }
        }
        Reply::Done => out.extend_from_slice(b"DONE"),
        Reply::Ok { id, fields } => {
            out.extend_from_slice(b"OK");
            push_number(out, id);
            push_key_values(out, fields);
        }
        Reply::Fail { id, fields } => {
            out.extend_from_slice(b"FAIL");
            push_number(out, id);
            push_key_values(out, fields);
        }
        Reply::Cont { id, data } => {
            out.extend_from_slice(b"CONT");
            push_number(out, id);
            push_field(out, data);
        }
    }
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec_tests::{drain, in_chunks, Decode, XorShift};

    /// What Postfix 3.7 sent to Dovecot 2.3 (reference/PROTOCOLS.md §2).
    const CLIENT_CORPUS: &[&[u8]] = &[
        b"VERSION\t1\t0\n",
        b"CPID\t13861\n",
        b"AUTH\t1\tPLAIN\tservice=smtp\tnologin\tlip=127.0.0.1\trip=127.0.0.1\tresp=AGFsaWNlQGV4YW1wbGUub3JnAHNlY3JldA==\n",
        b"AUTH\t2\tLOGIN\tservice=smtp\tnologin\tlip=127.0.0.1\trip=127.0.0.1\n",
        b"CONT\t2\tYWxpY2VAZXhhbXBsZS5vcmc=\n",
        b"CONT\t2\td3Jvbmc=\n",
        b"AUTH\t3\tPLAIN\tservice=smtp\n",
    ];

    fn s(text: &str) -> String {
        text.to_owned()
    }

    fn postfix_auth(id: u32, mech: &str, resp: Option<&str>) -> Request {
        Request::Auth(AuthRequest {
            id,
            mech: s(mech),
            service: Some(s("smtp")),
            resp: resp.map(s),
            rip: Some(s("127.0.0.1")),
            lip: Some(s("127.0.0.1")),
            secured: false,
            other: vec![(s("nologin"), None)],
        })
    }

    fn expected_requests() -> Vec<Request> {
        vec![
            Request::Version { major: 1, minor: 0 },
            Request::Cpid { pid: 13861 },
            postfix_auth(1, "PLAIN", Some("AGFsaWNlQGV4YW1wbGUub3JnAHNlY3JldA==")),
            postfix_auth(2, "LOGIN", None),
            Request::Cont {
                id: 2,
                data: s("YWxpY2VAZXhhbXBsZS5vcmc="),
            },
            Request::Cont {
                id: 2,
                data: s("d3Jvbmc="),
            },
            Request::Auth(AuthRequest {
                id: 3,
                mech: s("PLAIN"),
                service: Some(s("smtp")),
                ..AuthRequest::default()
            }),
        ]
    }

    impl Decode for Codec {
        type Item = Request;
        type Error = DecodeError;

        fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Request>, DecodeError> {
            Codec::decode(self, buf)
        }

        fn ends_session(e: &DecodeError) -> bool {
            matches!(e, DecodeError::LineTooLong)
        }
    }

    fn decode_one(line: &[u8]) -> Result<Option<Request>, DecodeError> {
        Codec::new().decode(&mut BytesMut::from(line))
    }

    fn encoded(reply: Reply<'_>) -> Vec<u8> {
        let mut out = Vec::new();
        encode(&reply, &mut out);
        out
    }

    #[test]
    fn every_captured_client_line_decodes() {
        for (line, expected) in CLIENT_CORPUS.iter().zip(expected_requests()) {
            let mut buf = BytesMut::from(*line);
            assert_eq!(
                Codec::new().decode(&mut buf),
                Ok(Some(expected)),
                "{}",
                String::from_utf8_lossy(line)
            );
            assert!(buf.is_empty());
        }
    }

    #[test]
    fn corpus_replayed_in_chunks_of_every_size_gives_the_same_requests() {
        let corpus: Vec<u8> = CLIENT_CORPUS.concat();
        let expected: Vec<_> = expected_requests().into_iter().map(Ok).collect();
        for size in 1..=corpus.len() {
            let (got, consumed) = in_chunks(Codec::new(), &corpus, size);
            assert_eq!(got, expected, "chunk size {size}");
            assert!(consumed, "chunk size {size}");
        }
    }

    #[test]
    fn crlf_line_ends_are_accepted() {
        let corpus: Vec<u8> = CLIENT_CORPUS
            .iter()
            .flat_map(|l| [&l[..l.len() - 1], &b"\r\n"[..]].concat())
            .collect();
        let mut codec = Codec::new();
        let mut buf = BytesMut::from(corpus.as_slice());
        let got = drain(&mut codec, &mut buf);
        let expected: Vec<_> = expected_requests().into_iter().map(Ok).collect();
        assert_eq!(got, expected);
    }

    #[test]
    fn the_server_handshake_is_encoded_byte_for_byte() {
        let cookie = [
            0x9e, 0x3f, 0xaf, 0x78, 0x06, 0xfe, 0x11, 0x3f, 0xc5, 0x40, 0x8c, 0xda, 0xe0, 0x6d,
            0x56, 0x0f,
        ];
        let mut out = Vec::new();
        for reply in [
            Reply::Version {
                major: PROTOCOL_MAJOR,
                minor: PROTOCOL_MINOR,
            },
            Reply::Mech {
                name: "PLAIN",
                flags: &["plaintext"],
            },
            Reply::Mech {
                name: "LOGIN",
                flags: &["plaintext"],
            },
            Reply::Spid(13864),
            Reply::Cuid(1),
            Reply::Cookie(&cookie),
            Reply::Done,
        ] {
            encode(&reply, &mut out);
        }
        assert_eq!(
            String::from_utf8_lossy(&out),
            "VERSION\t1\t2\nMECH\tPLAIN\tplaintext\nMECH\tLOGIN\tplaintext\nSPID\t13864\n\
             CUID\t1\nCOOKIE\t9e3faf7806fe113fc5408cdae06d560f\nDONE\n"
        );
    }

    #[test]
    fn every_captured_server_reply_is_encoded_byte_for_byte() {
        let user = [("user", "alice@example.org")];
        assert_eq!(
            encoded(Reply::Ok {
                id: 1,
                fields: &user
            }),
            b"OK\t1\tuser=alice@example.org\n"
        );
        assert_eq!(
            encoded(Reply::Cont {
                id: 2,
                data: "VXNlcm5hbWU6"
            }),
            b"CONT\t2\tVXNlcm5hbWU6\n"
        );
        assert_eq!(
            encoded(Reply::Cont {
                id: 2,
                data: "UGFzc3dvcmQ6"
            }),
            b"CONT\t2\tUGFzc3dvcmQ6\n"
        );
        assert_eq!(
            encoded(Reply::Fail {
                id: 2,
                fields: &user
            }),
            b"FAIL\t2\tuser=alice@example.org\n"
        );
        assert_eq!(encoded(Reply::Cont { id: 3, data: "" }), b"CONT\t3\t\n");
        assert_eq!(
            encoded(Reply::Fail {
                id: 6,
                fields: &[
                    ("code", "invalid_base64"),
                    ("reason", "Invalid base64 data in initial response")
                ]
            }),
            b"FAIL\t6\tcode=invalid_base64\treason=Invalid base64 data in initial response\n"
        );
        assert_eq!(
            encoded(Reply::Fail {
                id: 3,
                fields: &[("user", "x@example.org"), ("code", "temp_fail")]
            }),
            b"FAIL\t3\tuser=x@example.org\tcode=temp_fail\n"
        );
        assert_eq!(encoded(Reply::Fail { id: 4, fields: &[] }), b"FAIL\t4\n");
    }

    #[test]
    fn a_whole_postfix_exchange_in_one_read() {
        // Postfix writes its handshake and the first AUTH without waiting in between.
        let mut buf = BytesMut::from(CLIENT_CORPUS.concat().as_slice());
        let got = drain(&mut Codec::new(), &mut buf);
        assert_eq!(got.len(), 7);
        let Some(Ok(Request::Auth(plain))) = got.get(2) else {
            panic!("{got:?}")
        };
        assert_eq!(
            plain.resp.as_deref(),
            Some("AGFsaWNlQGV4YW1wbGUub3JnAHNlY3JldA==")
        );
        assert!(plain.has_flag("nologin"));
        assert!(!plain.has_flag("valid-client-cert"));
        let Some(Ok(Request::Auth(login))) = got.get(3) else {
            panic!("{got:?}")
        };
        assert_eq!(
            (login.id, login.mech.as_str(), login.resp.as_deref()),
            (2, "LOGIN", None)
        );
        let Some(Ok(Request::Auth(no_resp))) = got.get(6) else {
            panic!("{got:?}")
        };
        assert_eq!(no_resp.resp, None);
    }

    #[test]
    fn tls_and_unknown_params_are_kept() {
        let line = b"AUTH\t9\tPLAIN\tservice=smtp\tnologin\tlip=::1\trip=2001:db8::7\tsecured\tvalid-client-cert\tsession=abc\tresp=\n";
        assert_eq!(
            decode_one(line),
            Ok(Some(Request::Auth(AuthRequest {
                id: 9,
                mech: s("PLAIN"),
                service: Some(s("smtp")),
                resp: Some(s("")),
                rip: Some(s("2001:db8::7")),
                lip: Some(s("::1")),
                secured: true,
                other: vec![
                    (s("nologin"), None),
                    (s("valid-client-cert"), None),
                    (s("session"), Some(s("abc"))),
                ],
            })))
        );
        let Ok(Some(Request::Auth(tls))) =
            decode_one(b"AUTH\t1\tPLAIN\tservice=smtp\tsecured=tls\n")
        else {
            panic!()
        };
        assert!(tls.secured);
        assert_eq!(
            decode_one(b"CANCEL\t5\n"),
            Ok(Some(Request::Cancel { id: 5 }))
        );
    }

    #[test]
    fn escaped_fields_survive_decoding_and_encoding() {
        let odd = "a\tb\nc\u{1}d\re=f";
        let mut line = b"AUTH\t4\tPLAIN\t".to_vec();
        tabescape::escape(format!("session={odd}").as_bytes(), &mut line);
        line.push(b'\t');
        tabescape::escape(format!("{odd}=v").as_bytes(), &mut line);
        line.push(b'\n');
        let Ok(Some(Request::Auth(auth))) = decode_one(&line) else {
            panic!()
        };
        // A key never contains `=`: the first `=` splits, as in Dovecot.
        assert_eq!(
            auth.other,
            vec![
                (s("session"), Some(s(odd))),
                (s("a\tb\nc\u{1}d\re"), Some(s("f=v")))
            ]
        );

        let wire = encoded(Reply::Fail {
            id: 4,
            fields: &[("reason", odd)],
        });
        assert_eq!(wire.iter().filter(|&&b| b == b'\n').count(), 1);
        let fields: Vec<_> = wire[..wire.len() - 1].split(|&b| b == b'\t').collect();
        assert_eq!(fields.len(), 3);
        assert_eq!(
            tabescape::unescape(fields[2]),
            Ok(format!("reason={odd}").into_bytes())
        );
        let wire = encoded(Reply::Mech {
            name: "X\tY",
            flags: &[],
        });
        assert_eq!(wire, b"MECH\tX\x01tY\n");
    }

    fn malformed(line: &[u8]) -> DecodeError {
        let mut buf = BytesMut::from(line);
        buf.extend_from_slice(b"CANCEL\t77\n");
        let mut codec = Codec::new();
        let err = match codec.decode(&mut buf) {
            Err(e @ (DecodeError::Malformed { .. } | DecodeError::UnknownCommand(_))) => e,
            other => panic!("{:?}: got {other:?}", String::from_utf8_lossy(line)),
        };
        assert_eq!(codec.decode(&mut buf), Ok(Some(Request::Cancel { id: 77 })));
        err
    }

    #[test]
    fn malformed_lines_are_consumed_and_reported() {
        let cases: &[&[u8]] = &[
            b"VERSION\n",
            b"VERSION\t1\n",
            b"VERSION\tone\t0\n",
            b"VERSION\t1\t-1\n",
            b"CPID\n",
            b"CPID\tabc\n",
            b"AUTH\n",
            b"AUTH\t1\n",
            b"AUTH\t1\t\n",
            b"AUTH\t0\tPLAIN\tservice=smtp\n",
            b"AUTH\tx\tPLAIN\n",
            b"AUTH\t1\tPLAIN\tresp=\x01\n",
            b"AUTH\t1\tPLAIN\tservice=\xff\n",
            b"AUTH\t99999999999\tPLAIN\n",
            b"CONT\t2\n",
            b"CONT\tx\tabc\n",
            b"CONT\t2\t\x01z\n",
            b"CANCEL\n",
            b"CANCEL\t-3\n",
        ];
        for line in cases {
            assert!(matches!(malformed(line), DecodeError::Malformed { .. }));
        }
        assert_eq!(
            malformed(b"AUTH\t0\tPLAIN\n"),
            DecodeError::Malformed {
                command: "AUTH",
                reason: "request id 0"
            }
        );
        assert_eq!(malformed(b"\n"), DecodeError::UnknownCommand(s("")));
        assert_eq!(
            malformed(b"REQUEST\t1\n"),
            DecodeError::UnknownCommand(s("REQUEST"))
        );
        assert_eq!(
            malformed(b"auth\t1\tPLAIN\n"),
            DecodeError::UnknownCommand(s("auth"))
        );
        let long = [b"X".repeat(100), b"\t1\n".to_vec()].concat();
        assert_eq!(
            malformed(&long),
            DecodeError::UnknownCommand("X".repeat(32))
        );
    }

    #[test]
    fn cont_data_keeps_tabs_like_dovecot() {
        assert_eq!(
            decode_one(b"CONT\t2\tab\tcd\n"),
            Ok(Some(Request::Cont {
                id: 2,
                data: s("ab\tcd")
            }))
        );
        assert_eq!(
            decode_one(b"CONT\t2\t\n"),
            Ok(Some(Request::Cont { id: 2, data: s("") }))
        );
    }

    #[test]
    fn line_at_the_limit_is_accepted_and_one_byte_more_is_not() {
        let prefix = b"CONT\t1\t";
        let data = "A".repeat(MAX_LINE - prefix.len());
        let line = [&prefix[..], data.as_bytes(), &b"\n"[..]].concat();
        assert_eq!(
            decode_one(&line),
            Ok(Some(Request::Cont {
                id: 1,
                data: data.clone()
            }))
        );
        let line = [&prefix[..], data.as_bytes(), &b"A\n"[..]].concat();
        assert_eq!(decode_one(&line), Err(DecodeError::LineTooLong));

        let mut codec = Codec::new();
        let mut buf = BytesMut::from([&prefix[..], data.as_bytes()].concat().as_slice());
        assert_eq!(codec.decode(&mut buf), Ok(None));
        buf.extend_from_slice(b"A");
        assert_eq!(codec.decode(&mut buf), Err(DecodeError::LineTooLong));
        assert_eq!(buf.len(), MAX_LINE + 1, "nothing consumed");
    }

    #[test]
    fn random_garbage_never_panics_and_the_next_good_line_decodes() {
        const WORDS: &[&[u8]] = &[
            b"AUTH", b"CONT", b"VERSION", b"CPID", b"CANCEL", b"\t", b"\n", b"\r", b"=", b"1",
            b"0", b"PLAIN", b"resp", b"\x01", b"\xff", b"-",
        ];
        let mut rng = XorShift(0x853c_49e6_748f_ea9b);
        for round in 0..2000 {
            let mut garbage = Vec::new();
            for _ in 0..rng.next() % 40 {
                let r = rng.next();
                if r % 6 == 0 {
                    garbage.push((r >> 8) as u8);
                } else {
                    garbage.extend_from_slice(WORDS[(r >> 8) as usize % WORDS.len()]);
                }
            }
            garbage.extend_from_slice(b"\nCANCEL\t8\n");
            let chunk = 1 + (rng.next() % 16) as usize;
            let (got, _) = in_chunks(Codec::new(), &garbage, chunk);
            assert_eq!(
                got.last(),
                Some(&Ok(Request::Cancel { id: 8 })),
                "round {round}: {garbage:?}"
            );
        }
    }
}
