//! Dovecot's dict proxy protocol, server side: bytes to [`Command`]s, [`Reply`]s to bytes.
//!
//! Dovecot's `proxy` dict driver (2.3 passdb/userdb `driver = dict`, the `last_login` and
//! `quota_clone` plugins of 2.3 and 2.4) sends one command per LF-ended line. The first
//! byte names the command, TAB separates the fields, and every field is 0x01-escaped
//! ([`crate::tabescape`]). Only lookups, iterations and commits are answered: the client
//! sends transaction commands and hellos without waiting for anything.
//!
//! ```text
//! C: H3\t2\t0\t\tauth                                   hello: major, minor, value type, user, dict
//! C: Lshared/passdb/alice@example.org\talice@example.org  lookup: key, user
//! S: O{"password":"{PLAIN}secret"}                       found (N: not found, F<reason>: failed)
//! C: I0\t0\tshared/userdb/                               iterate: flags, max rows, path
//! S: Oshared/userdb/alice@example.org\t                  one row: key, value
//! S:                                                     an empty line ends the rows
//! C: B1\talice@example.org                               begin transaction 1 for a user
//! C: S1\tshared/last-login/alice@example.org\t1763750000 set
//! C: A1\tpriv/quota/storage\t-2048                       atomic increment
//! C: C1                                                  commit
//! S: O1                                                  O/N/F/W, then the transaction id
//! ```

use std::borrow::Cow;

use bytes::BytesMut;

use crate::lines::LineFramer;
use crate::tabescape;

/// Longest line accepted, without its line end: Dovecot's own dict line limit
/// (`DICT_CLIENT_MAX_LINE_LENGTH` in src/lib-dict/dict-client.h).
pub const MAX_LINE: usize = 64 * 1024;

/// One command from a dict client, fields unescaped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `H`: the first line of every connection. Missing trailing fields read as 0 / empty.
    Hello {
        major: u32,
        minor: u32,
        value_type: String,
        user: String,
        dict_name: String,
    },
    /// `L<key>[\t<user>]`: answer with [`Reply::Found`], [`Reply::NotFound`] or [`Reply::Fail`].
    /// The user field is sent since Dovecot 2.3.17; an empty one reads as `None`.
    Lookup { key: String, user: Option<String> },
    /// `I<flags>\t<max_rows>\t<path>[\t<user>]`: answer with [`Reply::IterRow`]s, then
    /// [`Reply::IterEnd`] or [`Reply::IterFail`]. `max_rows` 0 means no limit. Field order
    /// as in src/dict/dict-commands.c `cmd_iterate`; before 2.3.17 more paths could follow
    /// the first, and a fourth field is read as the user, as 2.3.17 and later send it.
    Iterate {
        flags: u64,
        max_rows: u64,
        path: String,
        user: Option<String>,
    },
    /// `B<id>[\t<user>]`: opens transaction `id` (Dovecot 2.4 appends more fields: ignored).
    Begin { id: u32, user: Option<String> },
    /// `S<id>\t<key>\t<value>`
    Set { id: u32, key: String, value: String },
    /// `U<id>\t<key>`
    Unset { id: u32, key: String },
    /// `A<id>\t<key>\t<delta>`
    AtomicInc { id: u32, key: String, delta: i64 },
    /// `C<id>` (`is_async` false) or `D<id>` (true): answer with [`Reply::Commit`].
    Commit { id: u32, is_async: bool },
    /// `R<id>`: no reply.
    Rollback { id: u32 },
    /// `T<id>\t<secs>\t<nsecs>`: the time the client wants the writes stamped with.
    Timestamp { id: u32, secs: i64, nsecs: u32 },
    /// `V<id>\t<yes|no>`: whether the server may log the values of this transaction.
    HideLogValues { id: u32, hide: bool },
}

/// Why bytes could not be read as a command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// A line grew past the limit. Nothing was consumed and the stream cannot be
    /// resynchronised: close the connection.
    #[error("dict line longer than the limit")]
    LineTooLong,
    /// A complete line that is not a valid command. The line was consumed, so the next
    /// decode starts at the next line.
    #[error("malformed dict line ({}): {reason}", describe(*command))]
    Malformed {
        /// The command byte, `None` for an empty line.
        command: Option<char>,
        reason: &'static str,
    },
}

impl DecodeError {
    /// Whether the connection closes after answering this error: only an over-long
    /// line, after which the stream cannot be resynchronised. A malformed line was
    /// consumed whole, so the next one decodes.
    pub fn ends_session(&self) -> bool {
        matches!(self, DecodeError::LineTooLong)
    }

    /// Whether the client waits for an answer to the line that failed. Dovecot's client
    /// sends hellos and transaction commands without expecting a reply, so an `F` sent
    /// for one of those would be taken as the answer to its next lookup or commit
    /// (src/lib-dict/dict-client.c, `dict_conn_input_line`). Dovecot's own server
    /// closes the connection on any bad line.
    pub fn expects_reply(&self) -> bool {
        matches!(
            self,
            DecodeError::Malformed {
                command: Some('L' | 'I' | 'C' | 'D'),
                ..
            }
        )
    }
}

fn describe(command: Option<char>) -> String {
    match command {
        Some(c) => format!("command {c:?}"),
        None => "empty line".to_owned(),
    }
}

/// Reads commands from a byte buffer that the session fills from the socket.
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

    /// The next command in `buf`: `Ok(None)` if no complete line is there yet (nothing
    /// consumed); otherwise the line and its LF (or CRLF) are consumed, whether it held
    /// a valid command or not.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Command>, DecodeError> {
        match self
            .lines
            .take_line(buf)
            .map_err(|_| DecodeError::LineTooLong)?
        {
            Some(line) => parse_command(&line).map(Some),
            None => Ok(None),
        }
    }
}

/// The fields after a command byte, taken in order, each unescaped where it lies and
/// copied only when a command keeps it as text. [`Fields::finish`] checks the fields no
/// command reads, so a bad escape anywhere on the line is still refused.
struct Fields<'a>(std::slice::Split<'a, u8, fn(&u8) -> bool>);

impl<'a> Fields<'a> {
    fn split(args: &'a [u8]) -> Self {
        Self(args.split(|&b| b == b'\t'))
    }

    fn next(&mut self) -> Result<Option<Cow<'a, str>>, &'static str> {
        self.0.next().map(tabescape::unescape_text).transpose()
    }

    fn text(&mut self, what: &'static str) -> Result<String, &'static str> {
        self.next()?.map(Cow::into_owned).ok_or(what)
    }

    fn number<T: std::str::FromStr>(&mut self, what: &'static str) -> Result<T, &'static str> {
        self.next()?.and_then(|f| f.parse().ok()).ok_or(what)
    }

    /// A trailing field that may be missing; missing or empty reads as `None`.
    fn optional(&mut self) -> Result<Option<String>, &'static str> {
        Ok(self.next()?.filter(|f| !f.is_empty()).map(Cow::into_owned))
    }

    /// The fields left over, which no command reads, must still be well-formed.
    fn finish(mut self) -> Result<(), &'static str> {
        while self.next()?.is_some() {}
        Ok(())
    }
}

fn parse_command(line: &[u8]) -> Result<Command, DecodeError> {
    let Some((&first, args)) = line.split_first() else {
        return Err(DecodeError::Malformed {
            command: None,
            reason: "empty line",
        });
    };
    let command = char::from(first);
    parse_args(first, args).map_err(|reason| DecodeError::Malformed {
        command: Some(command),
        reason,
    })
}

fn parse_args(command: u8, args: &[u8]) -> Result<Command, &'static str> {
    const ID: &str = "missing or bad transaction id";
    const KEY: &str = "missing key";
    let mut f = Fields::split(args);
    let parsed = match command {
        b'H' => Command::Hello {
            major: f.number("bad major version")?,
            minor: match f.next()?.filter(|m| !m.is_empty()) {
                Some(minor) => minor.parse().map_err(|_| "bad minor version")?,
                None => 0,
            },
            value_type: f.optional()?.unwrap_or_default(),
            user: f.optional()?.unwrap_or_default(),
            dict_name: f.optional()?.unwrap_or_default(),
        },
        b'L' => Command::Lookup {
            key: f.text(KEY)?,
            user: f.optional()?,
        },
        b'I' => Command::Iterate {
            flags: f.number("missing or bad flags")?,
            max_rows: f.number("missing or bad max rows")?,
            path: f.text("missing path")?,
            user: f.optional()?,
        },
        b'B' => Command::Begin {
            id: f.number(ID)?,
            user: f.optional()?,
        },
        b'S' => Command::Set {
            id: f.number(ID)?,
            key: f.text(KEY)?,
            value: f.text("missing value")?,
        },
        b'U' => Command::Unset {
            id: f.number(ID)?,
            key: f.text(KEY)?,
        },
        b'A' => Command::AtomicInc {
            id: f.number(ID)?,
            key: f.text(KEY)?,
            delta: f.number("missing or bad delta")?,
        },
        b'C' | b'D' => Command::Commit {
            id: f.number(ID)?,
            is_async: command == b'D',
        },
        b'R' => Command::Rollback { id: f.number(ID)? },
        b'T' => Command::Timestamp {
            id: f.number(ID)?,
            secs: f.number("missing or bad seconds")?,
            nsecs: f.number("missing or bad nanoseconds")?,
        },
        b'V' => Command::HideLogValues {
            id: f.number(ID)?,
            hide: f.optional()?.as_deref() == Some("yes"),
        },
        _ => return Err("unknown command"),
    };
    f.finish()?;
    Ok(parsed)
}

/// How a transaction ended, as the client is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitResult {
    /// Every write was applied.
    Ok,
    /// An atomic increment hit a key that does not exist.
    NotFound,
    /// Nothing was written.
    Failed,
    /// The write may or may not have happened.
    WriteUncertain,
}

/// One line to send to a dict client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply<'a> {
    /// `O<value>`: a lookup found `value` (postern sends a flat JSON object).
    Found(&'a str),
    /// `N`: a lookup found nothing.
    NotFound,
    /// `F<reason>`: a lookup failed (src/dict/dict-commands.c, `cmd_lookup_callback`).
    Fail(&'a str),
    /// `O<key>\t<value>`: one iteration row (src/dict/dict-commands.c, `cmd_iterate_flush`).
    IterRow { key: &'a str, value: &'a str },
    /// The empty line that ends an iteration: the client reads a line without fields as
    /// "finished" (src/lib-dict/dict-client.c, `dict_cmd_callback_line`).
    IterEnd,
    /// `F<reason>`: an iteration failed; replaces [`Reply::IterEnd`]
    /// (src/dict/dict-commands.c, `cmd_iterate_flush_finish`).
    IterFail(&'a str),
    /// `<O|N|F|W><id>`, prefixed by `A` for an async commit, and for `F` and `W` followed
    /// by `\t<reason>` (src/dict/dict-commands.c, `cmd_commit_finish`). The client ignores
    /// the id (`obsolete trans_id`, src/lib-dict/dict-client.c).
    Commit {
        result: CommitResult,
        id: u32,
        is_async: bool,
    },
}

/// Appends `reply` and its LF to `out`, every field escaped.
pub fn encode(reply: &Reply<'_>, out: &mut Vec<u8>) {
    match *reply {
        Reply::Found(value) => {
            out.push(b'O');
            tabescape::escape(value.as_bytes(), out);
        }
        Reply::NotFound => out.push(b'N'),
        Reply::Fail(reason) | Reply::IterFail(reason) => {
            out.push(b'F');
            tabescape::escape(reason.as_bytes(), out);
        }
        Reply::IterRow { key, value } => {
            out.push(b'O');
            tabescape::escape(key.as_bytes(), out);
            out.push(b'\t');
            tabescape::escape(value.as_bytes(), out);
        }
        Reply::IterEnd => {}
        Reply::Commit {
            result,
            id,
            is_async,
        } => {
            if is_async {
                out.push(b'A');
            }
            let (code, reason) = match result {
                CommitResult::Ok => (b'O', None),
                CommitResult::NotFound => (b'N', None),
                CommitResult::Failed => (b'F', Some("commit failed")),
                CommitResult::WriteUncertain => (b'W', Some("write uncertain")),
            };
            out.push(code);
            out.extend_from_slice(id.to_string().as_bytes());
            if let Some(reason) = reason {
                out.push(b'\t');
                tabescape::escape(reason.as_bytes(), out);
            }
        }
    }
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec_tests::{in_chunks, Decode, XorShift};

    /// Client lines captured from Dovecot 2.3.19 and 2.4.1 (reference/PROTOCOLS.md §1, §6).
    const CLIENT_CORPUS: &[(&[u8], &str)] = &[
        (b"H3\t2\t0\t\tauth\n", "2.3 hello"),
        (
            b"Lshared/passdb/alice@example.org\talice@example.org\n",
            "passdb lookup",
        ),
        (
            b"Lshared/userdb/alice@example.org\talice@example.org\n",
            "userdb lookup",
        ),
        (b"I0\t0\tshared/userdb/\n", "iterate"),
        (b"B1\talice@example.org\n", "2.3 begin"),
        (
            b"S1\tshared/last-login/alice@example.org\t1763750000\n",
            "set",
        ),
        (b"A1\tpriv/quota/storage\t-2048\n", "atomic inc"),
        (b"C1\n", "commit"),
        (b"H4\t0\t0\t\tlastlogin\n", "2.4 hello"),
        (b"B1\talice\t0\n", "2.4 begin"),
        (b"S1\tshared/last-login/alice\t1795299509\n", "2.4 set"),
        (b"C1\n", "2.4 commit"),
    ];

    fn s(text: &str) -> String {
        text.to_owned()
    }

    fn expected_commands() -> Vec<Command> {
        vec![
            Command::Hello {
                major: 3,
                minor: 2,
                value_type: s("0"),
                user: s(""),
                dict_name: s("auth"),
            },
            Command::Lookup {
                key: s("shared/passdb/alice@example.org"),
                user: Some(s("alice@example.org")),
            },
            Command::Lookup {
                key: s("shared/userdb/alice@example.org"),
                user: Some(s("alice@example.org")),
            },
            Command::Iterate {
                flags: 0,
                max_rows: 0,
                path: s("shared/userdb/"),
                user: None,
            },
            Command::Begin {
                id: 1,
                user: Some(s("alice@example.org")),
            },
            Command::Set {
                id: 1,
                key: s("shared/last-login/alice@example.org"),
                value: s("1763750000"),
            },
            Command::AtomicInc {
                id: 1,
                key: s("priv/quota/storage"),
                delta: -2048,
            },
            Command::Commit {
                id: 1,
                is_async: false,
            },
            Command::Hello {
                major: 4,
                minor: 0,
                value_type: s("0"),
                user: s(""),
                dict_name: s("lastlogin"),
            },
            Command::Begin {
                id: 1,
                user: Some(s("alice")),
            },
            Command::Set {
                id: 1,
                key: s("shared/last-login/alice"),
                value: s("1795299509"),
            },
            Command::Commit {
                id: 1,
                is_async: false,
            },
        ]
    }

    impl Decode for Codec {
        type Item = Command;
        type Error = DecodeError;

        fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Command>, DecodeError> {
            Codec::decode(self, buf)
        }

        fn ends_session(e: &DecodeError) -> bool {
            e.ends_session()
        }
    }

    fn decode_one(line: &[u8]) -> Result<Option<Command>, DecodeError> {
        Codec::new().decode(&mut BytesMut::from(line))
    }

    fn encoded(reply: Reply<'_>) -> Vec<u8> {
        let mut out = Vec::new();
        encode(&reply, &mut out);
        out
    }

    #[test]
    fn every_captured_client_line_decodes() {
        for ((line, what), expected) in CLIENT_CORPUS.iter().zip(expected_commands()) {
            let mut buf = BytesMut::from(*line);
            assert_eq!(Codec::new().decode(&mut buf), Ok(Some(expected)), "{what}");
            assert!(buf.is_empty(), "{what}: line not consumed");
        }
    }

    #[test]
    fn corpus_replayed_in_chunks_of_every_size_gives_the_same_commands() {
        let corpus: Vec<u8> = CLIENT_CORPUS
            .iter()
            .flat_map(|(l, _)| l.iter().copied())
            .collect();
        let expected: Vec<_> = expected_commands().into_iter().map(Ok).collect();
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
            .flat_map(|(l, _)| {
                let mut crlf = l[..l.len() - 1].to_vec();
                crlf.extend_from_slice(b"\r\n");
                crlf
            })
            .collect();
        for size in [1, 2, 3, 7, corpus.len()] {
            let (got, _) = in_chunks(Codec::new(), &corpus, size);
            let expected: Vec<_> = expected_commands().into_iter().map(Ok).collect();
            assert_eq!(got, expected, "chunk size {size}");
        }
    }

    #[test]
    fn every_captured_server_line_is_encoded_byte_for_byte() {
        let passdb = r#"{"password":"{PLAIN}secret","user":"alice@example.org"}"#;
        let userdb = r#"{"home":"/var/vmail/example.org/alice","uid":"5000","gid":"5000","quota_rule":"*:storage=100M"}"#;
        assert_eq!(
            encoded(Reply::Found(passdb)),
            format!("O{passdb}\n").as_bytes()
        );
        assert_eq!(
            encoded(Reply::Found(userdb)),
            format!("O{userdb}\n").as_bytes()
        );
        assert_eq!(encoded(Reply::NotFound), b"N\n");
        assert_eq!(encoded(Reply::Fail("database down")), b"Fdatabase down\n");
        assert_eq!(
            encoded(Reply::IterRow {
                key: "shared/userdb/alice@example.org",
                value: ""
            }),
            b"Oshared/userdb/alice@example.org\t\n"
        );
        assert_eq!(encoded(Reply::IterEnd), b"\n");
    }

    #[test]
    fn commit_replies_carry_the_transaction_id_as_dovecot_sends_them() {
        // PROTOCOLS.md abbreviates the commit reply as `O`; Dovecot's dict server writes
        // the id after the result (src/dict/dict-commands.c, cmd_commit_finish).
        let commit = |result, is_async| {
            encoded(Reply::Commit {
                result,
                id: 1,
                is_async,
            })
        };
        assert_eq!(commit(CommitResult::Ok, false), b"O1\n");
        assert_eq!(commit(CommitResult::NotFound, false), b"N1\n");
        assert_eq!(commit(CommitResult::Failed, false), b"F1\tcommit failed\n");
        assert_eq!(
            commit(CommitResult::WriteUncertain, false),
            b"W1\twrite uncertain\n"
        );
        assert_eq!(commit(CommitResult::Ok, true), b"AO1\n");
        assert_eq!(commit(CommitResult::Failed, true), b"AF1\tcommit failed\n");
        assert_eq!(encoded(Reply::IterFail("db gone")), b"Fdb gone\n");
    }

    #[test]
    fn replies_escape_their_fields() {
        let value = "{\"a\":\"x\ty\nz\u{1}\r\"}";
        let wire = encoded(Reply::Found(value));
        assert_eq!(wire.iter().filter(|&&b| b == b'\n').count(), 1);
        assert!(!wire.contains(&b'\t') && !wire.contains(&b'\r'));
        let body = &wire[1..wire.len() - 1];
        assert_eq!(tabescape::unescape(body), Ok(value.as_bytes().to_vec()));

        let wire = encoded(Reply::IterRow {
            key: "k\tey",
            value: "va\nl",
        });
        let fields: Vec<_> = wire[1..wire.len() - 1].split(|&b| b == b'\t').collect();
        assert_eq!(fields.len(), 2);
        assert_eq!(tabescape::unescape(fields[0]), Ok(b"k\tey".to_vec()));
        assert_eq!(tabescape::unescape(fields[1]), Ok(b"va\nl".to_vec()));
    }

    #[test]
    fn escaped_fields_survive_decoding() {
        let key = "shared/passdb/p\ta\ns\u{1}s\"alice@example.org";
        let value = "line1\nline2\t\u{1}end";
        let mut line = b"S7\t".to_vec();
        tabescape::escape(key.as_bytes(), &mut line);
        line.push(b'\t');
        tabescape::escape(value.as_bytes(), &mut line);
        line.push(b'\n');
        assert_eq!(
            decode_one(&line),
            Ok(Some(Command::Set {
                id: 7,
                key: s(key),
                value: s(value)
            }))
        );
        let mut line = b"L".to_vec();
        tabescape::escape(key.as_bytes(), &mut line);
        line.push(b'\n');
        assert_eq!(
            decode_one(&line),
            Ok(Some(Command::Lookup {
                key: s(key),
                user: None
            }))
        );
    }

    #[test]
    fn every_command_decodes() {
        let cases: &[(&[u8], Command)] = &[
            (
                b"H3\n",
                Command::Hello {
                    major: 3,
                    minor: 0,
                    value_type: s(""),
                    user: s(""),
                    dict_name: s(""),
                },
            ),
            (
                b"Lpriv/quota/storage\n",
                Command::Lookup {
                    key: s("priv/quota/storage"),
                    user: None,
                },
            ),
            (
                b"I1\t10\tshared/userdb/\tbob\n",
                Command::Iterate {
                    flags: 1,
                    max_rows: 10,
                    path: s("shared/userdb/"),
                    user: Some(s("bob")),
                },
            ),
            (b"B2\n", Command::Begin { id: 2, user: None }),
            (
                b"U2\tpriv/quota/messages\n",
                Command::Unset {
                    id: 2,
                    key: s("priv/quota/messages"),
                },
            ),
            (
                b"A2\tpriv/quota/messages\t3\n",
                Command::AtomicInc {
                    id: 2,
                    key: s("priv/quota/messages"),
                    delta: 3,
                },
            ),
            (
                b"D2\n",
                Command::Commit {
                    id: 2,
                    is_async: true,
                },
            ),
            (b"R2\n", Command::Rollback { id: 2 }),
            (
                b"T2\t1763750000\t500\n",
                Command::Timestamp {
                    id: 2,
                    secs: 1763750000,
                    nsecs: 500,
                },
            ),
            (b"V2\tyes\n", Command::HideLogValues { id: 2, hide: true }),
            (b"V2\tno\n", Command::HideLogValues { id: 2, hide: false }),
            (
                b"S2\tk\t\n",
                Command::Set {
                    id: 2,
                    key: s("k"),
                    value: s(""),
                },
            ),
        ];
        for (line, expected) in cases {
            assert_eq!(
                decode_one(line),
                Ok(Some(expected.clone())),
                "{}",
                String::from_utf8_lossy(line)
            );
        }
    }

    fn malformed(line: &[u8]) -> DecodeError {
        let mut buf = BytesMut::from(line);
        buf.extend_from_slice(b"C9\n");
        let mut codec = Codec::new();
        let err = match codec.decode(&mut buf) {
            Err(e @ DecodeError::Malformed { .. }) => e,
            other => panic!(
                "{:?}: expected Malformed, got {other:?}",
                String::from_utf8_lossy(line)
            ),
        };
        // The bad line is consumed and the next one decodes.
        assert_eq!(
            codec.decode(&mut buf),
            Ok(Some(Command::Commit {
                id: 9,
                is_async: false
            }))
        );
        err
    }

    #[test]
    fn malformed_lines_are_consumed_and_reported() {
        let cases: &[&[u8]] = &[
            b"\n",
            b"\r\n",
            b"X1\n",
            b"h3\t2\n",
            b"H\n",
            b"Hthree\t2\n",
            b"H3\tx\n",
            b"I0\t0\n",
            b"Ix\t0\tpath\n",
            b"I0\t-1\tpath\n",
            b"B\n",
            b"Babc\n",
            b"B-1\n",
            b"B4294967296\n",
            b"S1\tkey\n",
            b"Sx\tkey\tvalue\n",
            b"U1\n",
            b"A1\tkey\n",
            b"A1\tkey\t1.5\n",
            b"A1\tkey\t99999999999999999999\n",
            b"C\n",
            b"C1x\n",
            b"R\n",
            b"T1\t5\n",
            b"V\n",
            b"Lbad\x01escape\n",
            b"Ldangling\x01\n",
            b"L\xff\xfe\n",
            b"S1\t\xc3\x28\tvalue\n",
        ];
        for line in cases {
            malformed(line);
        }
        assert_eq!(
            malformed(b"\n"),
            DecodeError::Malformed {
                command: None,
                reason: "empty line"
            }
        );
        assert_eq!(
            malformed(b"Q\n"),
            DecodeError::Malformed {
                command: Some('Q'),
                reason: "unknown command"
            }
        );
    }

    #[test]
    fn only_lookup_iterate_and_commit_errors_expect_a_reply() {
        assert!(malformed(b"L\xff\n").expects_reply());
        assert!(malformed(b"I0\n").expects_reply());
        assert!(malformed(b"Cx\n").expects_reply());
        assert!(malformed(b"Dx\n").expects_reply());
        assert!(!malformed(b"Sx\n").expects_reply());
        assert!(!malformed(b"Bx\n").expects_reply());
        assert!(!malformed(b"\n").expects_reply());
        assert!(!malformed(b"Z\n").expects_reply());
        assert!(!DecodeError::LineTooLong.expects_reply());
    }

    #[test]
    fn line_at_the_limit_is_accepted_and_one_byte_more_is_not() {
        let max = 64;
        let key = "k".repeat(max - 1); // `L` + key = max bytes
        for end in ["\n", "\r\n"] {
            let line = format!("L{key}{end}");
            let mut buf = BytesMut::from(line.as_bytes());
            let got = Codec::with_max_line(max).decode(&mut buf);
            assert_eq!(
                got,
                Ok(Some(Command::Lookup {
                    key: key.clone(),
                    user: None
                }))
            );

            let line = format!("Lx{key}{end}");
            let mut buf = BytesMut::from(line.as_bytes());
            assert_eq!(
                Codec::with_max_line(max).decode(&mut buf),
                Err(DecodeError::LineTooLong)
            );
        }
    }

    #[test]
    fn over_long_line_without_lf_is_refused_before_it_ends() {
        let max = 64;
        let mut codec = Codec::with_max_line(max);
        let mut buf = BytesMut::new();
        // max bytes, then a CR that may still be part of CRLF: keep waiting.
        buf.extend_from_slice(&[b'L'; 64]);
        assert_eq!(codec.decode(&mut buf), Ok(None));
        buf.extend_from_slice(b"\r");
        assert_eq!(codec.decode(&mut buf), Ok(None));
        buf.extend_from_slice(b"x");
        assert_eq!(codec.decode(&mut buf), Err(DecodeError::LineTooLong));
        assert_eq!(buf.len(), 66, "nothing consumed");

        let mut buf = BytesMut::from(vec![b'L'; MAX_LINE + 1].as_slice());
        assert_eq!(Codec::new().decode(&mut buf), Err(DecodeError::LineTooLong));
        let mut buf = BytesMut::from(vec![b'L'; MAX_LINE].as_slice());
        assert_eq!(Codec::new().decode(&mut buf), Ok(None));
        buf.extend_from_slice(b"\n");
        assert!(matches!(
            Codec::new().decode(&mut buf),
            Ok(Some(Command::Lookup { .. }))
        ));
    }

    #[test]
    fn random_garbage_never_panics_and_the_next_good_line_decodes() {
        const ALPHABET: &[u8] = b"HLIBSUACDRTV\t\n\r\x010123456789-x\xff";
        let mut rng = XorShift(0x2545_f491_4f6c_dd1d);
        for round in 0..2000 {
            let len = (rng.next() % 120) as usize;
            let mut garbage: Vec<u8> = (0..len)
                .map(|_| {
                    let r = rng.next();
                    if r % 5 == 0 {
                        (r >> 8) as u8
                    } else {
                        ALPHABET[(r >> 8) as usize % ALPHABET.len()]
                    }
                })
                .collect();
            garbage.extend_from_slice(b"\nC42\n");
            let chunk = 1 + (rng.next() % 16) as usize;
            let (got, consumed) = in_chunks(Codec::new(), &garbage, chunk);
            assert_eq!(
                got.last(),
                Some(&Ok(Command::Commit {
                    id: 42,
                    is_async: false
                })),
                "round {round}: {garbage:?}"
            );
            assert!(consumed);
        }
    }
}
