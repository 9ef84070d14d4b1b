//! Postfix policy delegation (`check_policy_service`), server side: bytes to
//! [`Request`]s, [`Reply`]s to bytes.
//!
//! Postfix sends one request as `name=value` lines ended by an empty line, and waits for
//! one `action=` line ended the same way; the connection is reused for the next request.
//! Values are raw text (no escaping). Only the attributes postern acts on are kept;
//! unknown names are skipped, so newer Postfix versions can add attributes.
//!
//! ```text
//! C: request=smtpd_access_policy
//! C: protocol_state=RCPT
//! C: client_address=127.0.0.1
//! C: sender=alice@example.org
//! C: recipient=full@example.org
//! C: instance=36ad.6b02057f.c1017.0
//! C: size=1234
//! C: sasl_username=alice@example.org
//! C: ...                              about 30 attributes in all
//! C:                                  an empty line ends the request
//! S: action=452 4.2.2 Mailbox full
//! S:                                  an empty line ends the reply
//! ```

use bytes::{Buf, BytesMut};

/// Most attribute lines in one request (Postfix 3.7 sends 29).
pub const MAX_ATTRIBUTES: usize = 100;
/// Longest attribute line, without its line end.
pub const MAX_LINE: usize = 4096;
/// Most bytes in one request, line ends and the closing empty line included.
pub const MAX_BLOCK: usize = 64 * 1024;

/// One policy request: the attributes postern uses. An attribute Postfix did not send
/// reads as empty (`size` as 0), as Postfix itself sends empty values for unknown facts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Request {
    /// The SMTP stage: `RCPT`, `END-OF-MESSAGE`, ...
    pub protocol_state: String,
    pub recipient: String,
    /// The SMTP AUTH login, empty for unauthenticated clients.
    pub sasl_username: String,
    /// The client's `MAIL FROM SIZE=` at RCPT, the real size at END-OF-MESSAGE.
    pub size: u64,
    /// Identifies one message transaction across its requests.
    pub instance: String,
    /// How many attribute lines the request had, unknown ones included.
    pub attributes: usize,
}

impl Request {
    /// Stores one `name=value` line if postern uses that name.
    fn set(&mut self, line: &[u8]) -> Result<(), &'static str> {
        let eq = line
            .iter()
            .position(|&b| b == b'=')
            .ok_or("attribute line without '='")?;
        let (name, value) = (&line[..eq], &line[eq + 1..]);
        let field = match name {
            b"" => return Err("attribute with an empty name"),
            b"protocol_state" => &mut self.protocol_state,
            b"recipient" => &mut self.recipient,
            b"sasl_username" => &mut self.sasl_username,
            b"instance" => &mut self.instance,
            b"size" => {
                self.size = match value {
                    b"" => 0,
                    digits => std::str::from_utf8(digits)
                        .ok()
                        .filter(|d| d.bytes().all(|b| b.is_ascii_digit()))
                        .and_then(|d| d.parse().ok())
                        .ok_or("size is not a number")?,
                };
                return Ok(());
            }
            _ => return Ok(()),
        };
        let value = std::str::from_utf8(value).map_err(|_| "attribute value is not UTF-8")?;
        field.clear();
        field.push_str(value);
        Ok(())
    }
}

/// Why bytes could not be read as a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// An attribute line grew past [`MAX_LINE`]. Close the connection.
    #[error("policy attribute line longer than {MAX_LINE} bytes")]
    LineTooLong,
    /// A request grew past [`MAX_BLOCK`] bytes. Close the connection.
    #[error("policy request longer than {MAX_BLOCK} bytes")]
    BlockTooLarge,
    /// A request had more than [`MAX_ATTRIBUTES`] lines. Close the connection.
    #[error("policy request with more than {MAX_ATTRIBUTES} attributes")]
    TooManyAttributes,
    /// A complete request with a bad line in it. The whole request was consumed, so the
    /// next decode starts at the next request.
    #[error("malformed policy request: {reason}")]
    Malformed { reason: &'static str },
}

impl DecodeError {
    /// Whether the connection closes after answering this error: a limit was broken
    /// and the stream cannot be resynchronised. A malformed request was consumed
    /// whole, so the next one decodes.
    pub fn ends_session(&self) -> bool {
        !matches!(self, DecodeError::Malformed { .. })
    }
}

/// Reads requests from a byte buffer that the session fills from the socket.
///
/// Lines stay in the buffer until their request is complete, and the codec remembers how
/// far it has parsed, so a request that trickles in is read once. Pass the same buffer
/// to every call; after a limit error, close the connection.
#[derive(Debug, Clone, Default)]
pub struct Codec {
    /// Offset of the first line not yet parsed.
    parsed: usize,
    /// How far the line starting at `parsed` was already searched for LF.
    scanned: usize,
    /// The request built from the lines before `parsed`.
    partial: Request,
    /// The first problem seen in the request so far.
    malformed: Option<&'static str>,
}

impl Codec {
    /// A codec at the start of a request, with the limits above.
    pub fn new() -> Self {
        Self::default()
    }

    /// The next request in `buf`: `Ok(None)` if the request is not complete yet (nothing
    /// consumed); otherwise the request and its closing empty line are consumed, whether
    /// every line in it was valid or not.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Request>, DecodeError> {
        if self.parsed > buf.len() {
            // Not the buffer we were reading: start over.
            *self = Self::default();
        }
        loop {
            let start = self.scanned.max(self.parsed);
            // A line of MAX_LINE bytes needs at most 2 more for CRLF: never look further.
            let window = buf.len().min(self.parsed + MAX_LINE + 2);
            let found = buf
                .get(start..window)
                .and_then(|w| memchr::memchr(b'\n', w));
            let Some(lf) = found.map(|i| start + i) else {
                let pending = buf.len()
                    - self.parsed
                    - usize::from(buf.len() > self.parsed && buf.last() == Some(&b'\r'));
                if pending > MAX_LINE {
                    return Err(self.fail(DecodeError::LineTooLong));
                }
                if buf.len() > MAX_BLOCK {
                    return Err(self.fail(DecodeError::BlockTooLarge));
                }
                self.scanned = window;
                return Ok(None);
            };
            let len = lf - self.parsed - usize::from(lf > self.parsed && buf[lf - 1] == b'\r');
            if len > MAX_LINE {
                return Err(self.fail(DecodeError::LineTooLong));
            }
            if lf + 1 > MAX_BLOCK {
                return Err(self.fail(DecodeError::BlockTooLarge));
            }
            if len == 0 {
                buf.advance(lf + 1);
                let done = std::mem::take(self);
                return match done.malformed {
                    Some(reason) => Err(DecodeError::Malformed { reason }),
                    None => Ok(Some(done.partial)),
                };
            }
            self.partial.attributes += 1;
            if self.partial.attributes > MAX_ATTRIBUTES {
                return Err(self.fail(DecodeError::TooManyAttributes));
            }
            if let Err(reason) = self.partial.set(&buf[self.parsed..self.parsed + len]) {
                self.malformed.get_or_insert(reason);
            }
            self.parsed = lf + 1;
            self.scanned = self.parsed;
        }
    }

    /// Forgets the request in progress and hands back `error`.
    fn fail(&mut self, error: DecodeError) -> DecodeError {
        *self = Self::default();
        error
    }
}

/// The answer to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reply<'a> {
    /// An access(5) action: `DUNNO`, `DEFER_IF_PERMIT <text>`, `452 4.2.2 Mailbox full`, ...
    pub action: &'a str,
}

/// Appends `action=<action>` and the closing empty line to `out`. CR and LF in the action
/// become spaces: they would end the reply early.
pub fn encode(reply: &Reply<'_>, out: &mut Vec<u8>) {
    out.extend_from_slice(b"action=");
    out.extend(reply.action.bytes().map(|b| match b {
        b'\r' | b'\n' => b' ',
        other => other,
    }));
    out.extend_from_slice(b"\n\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec_tests::{drain, in_chunks, Decode, XorShift};

    /// The block Postfix 3.7 sent at RCPT after SMTP AUTH (reference/PROTOCOLS.md §3).
    const CAPTURED: &str = "request=smtpd_access_policy
protocol_state=RCPT
protocol_name=ESMTP
client_address=127.0.0.1
client_name=localhost
client_port=57920
reverse_client_name=localhost
server_address=127.0.0.1
server_port=2626
helo_name=client.test
sender=alice@example.org
recipient=full@example.org
recipient_count=0
queue_id=C2E5498C0F4
instance=36ad.6b02057f.c1017.0
size=1234
etrn_domain=
stress=
sasl_method=PLAIN
sasl_username=alice@example.org
sasl_sender=
ccert_subject=
ccert_issuer=
ccert_fingerprint=
ccert_pubkey_fingerprint=
encryption_protocol=
encryption_cipher=
encryption_keysize=0
policy_context=

";

    fn s(text: &str) -> String {
        text.to_owned()
    }

    fn captured_request() -> Request {
        Request {
            protocol_state: s("RCPT"),
            recipient: s("full@example.org"),
            sasl_username: s("alice@example.org"),
            size: 1234,
            instance: s("36ad.6b02057f.c1017.0"),
            attributes: 29,
        }
    }

    /// The same transaction at END-OF-MESSAGE, as newer Postfix sends it: more attributes,
    /// the real size, no SASL login.
    fn end_of_message() -> (String, Request) {
        let block = CAPTURED
            .replace("protocol_state=RCPT", "protocol_state=END-OF-MESSAGE")
            .replace("size=1234", "size=987654321")
            .replace("sasl_username=alice@example.org", "sasl_username=")
            .replace(
                "policy_context=\n",
                "policy_context=\ncompatibility_level=3.6\nmail_version=3.8.6\n",
            );
        let request = Request {
            protocol_state: s("END-OF-MESSAGE"),
            size: 987_654_321,
            sasl_username: s(""),
            attributes: 31,
            ..captured_request()
        };
        (block, request)
    }

    impl Decode for Codec {
        type Item = Request;
        type Error = DecodeError;

        fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Request>, DecodeError> {
            Codec::decode(self, buf)
        }

        fn ends_session(e: &DecodeError) -> bool {
            e.ends_session()
        }
    }

    fn decode_all(bytes: &[u8]) -> Vec<Result<Request, DecodeError>> {
        drain(&mut Codec::new(), &mut BytesMut::from(bytes))
    }

    fn encoded(action: &str) -> Vec<u8> {
        let mut out = Vec::new();
        encode(&Reply { action }, &mut out);
        out
    }

    #[test]
    fn the_captured_block_decodes() {
        let mut buf = BytesMut::from(CAPTURED.as_bytes());
        assert_eq!(Codec::new().decode(&mut buf), Ok(Some(captured_request())));
        assert!(buf.is_empty());
    }

    #[test]
    fn nothing_is_consumed_until_the_empty_line() {
        let without_end = &CAPTURED.as_bytes()[..CAPTURED.len() - 1];
        let mut codec = Codec::new();
        let mut buf = BytesMut::from(without_end);
        assert_eq!(codec.decode(&mut buf), Ok(None));
        assert_eq!(buf.len(), without_end.len());
        buf.extend_from_slice(b"\n");
        assert_eq!(codec.decode(&mut buf), Ok(Some(captured_request())));
    }

    #[test]
    fn corpus_replayed_in_chunks_of_every_size_gives_the_same_requests() {
        let (eom, eom_request) = end_of_message();
        let corpus = [CAPTURED, eom.as_str(), CAPTURED].concat().into_bytes();
        let expected = vec![
            Ok(captured_request()),
            Ok(eom_request),
            Ok(captured_request()),
        ];
        for size in 1..=corpus.len() {
            let (got, consumed) = in_chunks(Codec::new(), &corpus, size);
            assert_eq!(got, expected, "chunk size {size}");
            assert!(consumed, "chunk size {size}");
        }
    }

    #[test]
    fn crlf_line_ends_are_accepted() {
        let crlf = CAPTURED.replace('\n', "\r\n");
        for size in [1, 2, 5, crlf.len()] {
            let (got, _) = in_chunks(Codec::new(), crlf.as_bytes(), size);
            assert_eq!(got, vec![Ok(captured_request())], "chunk size {size}");
        }
    }

    #[test]
    fn every_documented_action_is_encoded_byte_for_byte() {
        assert_eq!(
            encoded("452 4.2.2 Mailbox full"),
            b"action=452 4.2.2 Mailbox full\n\n"
        );
        assert_eq!(
            encoded("REJECT 5.7.1 Recipient blocked"),
            b"action=REJECT 5.7.1 Recipient blocked\n\n"
        );
        assert_eq!(
            encoded("DEFER_IF_PERMIT Service temporarily unavailable"),
            b"action=DEFER_IF_PERMIT Service temporarily unavailable\n\n"
        );
        assert_eq!(encoded("DUNNO"), b"action=DUNNO\n\n");
        assert_eq!(
            encoded("552 5.2.2 Mailbox is full"),
            b"action=552 5.2.2 Mailbox is full\n\n"
        );
    }

    #[test]
    fn a_line_break_in_an_action_cannot_end_the_reply_early() {
        assert_eq!(
            encoded("REJECT bad\r\naction=DUNNO"),
            b"action=REJECT bad  action=DUNNO\n\n"
        );
    }

    #[test]
    fn values_are_raw_and_may_hold_equals_signs_and_tabs() {
        let got = decode_all(b"instance=a=b\tc.0\nrecipient=\x01x@y\nsize=\n\n");
        assert_eq!(
            got,
            vec![Ok(Request {
                instance: s("a=b\tc.0"),
                recipient: s("\u{1}x@y"),
                size: 0,
                attributes: 3,
                ..Request::default()
            })]
        );
    }

    #[test]
    fn unknown_names_and_their_bytes_are_ignored() {
        let got = decode_all(b"tls_sni=\xff\xfe\nx-future=1\nrecipient=bob@example.org\n\n");
        assert_eq!(
            got,
            vec![Ok(Request {
                recipient: s("bob@example.org"),
                attributes: 3,
                ..Request::default()
            })]
        );
        // An empty request is still a request.
        assert_eq!(decode_all(b"\n"), vec![Ok(Request::default())]);
    }

    #[test]
    fn a_malformed_request_is_consumed_whole_and_the_next_one_decodes() {
        let bad_lines: &[&[u8]] = &[
            b"no equals sign",
            b"=value",
            b"size=12x",
            b"size=-1",
            b"size=+5",
            b"size=99999999999999999999999",
            b"recipient=\xc3\x28",
            b"\x00\x01\xff",
        ];
        for bad in bad_lines {
            let mut bytes = b"request=smtpd_access_policy\n".to_vec();
            bytes.extend_from_slice(bad);
            bytes.extend_from_slice(b"\nrecipient=a@b\n\n");
            bytes.extend_from_slice(CAPTURED.as_bytes());
            let got = decode_all(&bytes);
            assert_eq!(got.len(), 2, "{:?}", String::from_utf8_lossy(bad));
            assert!(
                matches!(got[0], Err(DecodeError::Malformed { .. })),
                "{:?}: {:?}",
                String::from_utf8_lossy(bad),
                got[0]
            );
            assert_eq!(got[1], Ok(captured_request()));
        }
        assert_eq!(
            decode_all(b"junk\n\n"),
            vec![Err(DecodeError::Malformed {
                reason: "attribute line without '='"
            })]
        );
    }

    fn block_of_attributes(count: usize) -> Vec<u8> {
        let mut block: Vec<u8> = (0..count)
            .flat_map(|i| format!("a{i}=x\n").into_bytes())
            .collect();
        block.push(b'\n');
        block
    }

    #[test]
    fn attribute_count_limit() {
        let got = decode_all(&block_of_attributes(MAX_ATTRIBUTES));
        assert_eq!(
            got,
            vec![Ok(Request {
                attributes: MAX_ATTRIBUTES,
                ..Request::default()
            })]
        );
        assert_eq!(
            decode_all(&block_of_attributes(MAX_ATTRIBUTES + 1)),
            vec![Err(DecodeError::TooManyAttributes)]
        );
    }

    #[test]
    fn line_length_limit() {
        let at_limit = format!("recipient={}", "r".repeat(MAX_LINE - "recipient=".len()));
        let got = decode_all(format!("{at_limit}\n\n").as_bytes());
        assert_eq!(
            got,
            vec![Ok(Request {
                recipient: s(&at_limit["recipient=".len()..]),
                attributes: 1,
                ..Request::default()
            })]
        );
        let crlf = decode_all(format!("{at_limit}\r\n\r\n").as_bytes());
        assert_eq!(crlf, got);
        assert_eq!(
            decode_all(format!("{at_limit}s\n\n").as_bytes()),
            vec![Err(DecodeError::LineTooLong)]
        );
        // Refused before the line ends; nothing consumed.
        let mut buf = BytesMut::from(format!("request=x\n{at_limit}s").as_bytes());
        let len = buf.len();
        assert_eq!(Codec::new().decode(&mut buf), Err(DecodeError::LineTooLong));
        assert_eq!(buf.len(), len);
    }

    /// A request of exactly `total` bytes made of lines no longer than MAX_LINE.
    fn block_of_size(total: usize) -> Vec<u8> {
        let mut block = Vec::new();
        let mut i = 0;
        while total - 1 - block.len() > 0 {
            let room = (total - 1 - block.len()).min(MAX_LINE + 1);
            let name = format!("n{i:02}=");
            assert!(room > name.len(), "cannot fill the block exactly");
            block.extend_from_slice(name.as_bytes());
            block.resize(block.len() + room - name.len() - 1, b'v');
            block.push(b'\n');
            i += 1;
        }
        block.push(b'\n');
        assert_eq!(block.len(), total);
        block
    }

    #[test]
    fn block_size_limit() {
        let got = decode_all(&block_of_size(MAX_BLOCK));
        assert!(
            matches!(got.as_slice(), [Ok(Request { attributes: 16, .. })]),
            "{got:?}"
        );
        assert_eq!(
            decode_all(&block_of_size(MAX_BLOCK + 1)),
            vec![Err(DecodeError::BlockTooLarge)]
        );
        // Refused as soon as the buffered request passes the limit.
        let mut block = block_of_size(MAX_BLOCK + 1);
        block.truncate(MAX_BLOCK + 1 - 2);
        block.extend_from_slice(b"vv");
        let mut buf = BytesMut::from(block.as_slice());
        assert_eq!(
            Codec::new().decode(&mut buf),
            Err(DecodeError::BlockTooLarge)
        );
    }

    #[test]
    fn after_a_limit_error_the_codec_starts_over() {
        let mut codec = Codec::new();
        let mut buf = BytesMut::from(block_of_attributes(MAX_ATTRIBUTES + 1).as_slice());
        assert_eq!(codec.decode(&mut buf), Err(DecodeError::TooManyAttributes));
        let mut fresh = BytesMut::from(CAPTURED.as_bytes());
        assert_eq!(codec.decode(&mut fresh), Ok(Some(captured_request())));
    }

    #[test]
    fn random_garbage_never_panics_and_the_next_good_request_decodes() {
        const WORDS: &[&[u8]] = &[
            b"size", b"sender", b"request", b"=", b"\n", b"\n", b"\r", b"x", b"1", b"\xff",
            b"\x00", b"\t",
        ];
        let mut rng = XorShift(0xda94_2042_e4dd_58b5);
        for round in 0..2000 {
            let mut garbage = Vec::new();
            for _ in 0..rng.next() % 50 {
                let r = rng.next();
                if r % 6 == 0 {
                    garbage.push((r >> 8) as u8);
                } else {
                    garbage.extend_from_slice(WORDS[(r >> 8) as usize % WORDS.len()]);
                }
            }
            garbage.extend_from_slice(b"\n\n");
            garbage.extend_from_slice(CAPTURED.as_bytes());
            let chunk = 1 + (rng.next() % 16) as usize;
            let (got, consumed) = in_chunks(Codec::new(), &garbage, chunk);
            assert_eq!(
                got.last(),
                Some(&Ok(captured_request())),
                "round {round}: {garbage:?}"
            );
            assert!(consumed);
        }
    }
}
