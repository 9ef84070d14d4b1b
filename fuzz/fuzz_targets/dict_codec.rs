//! Dovecot dict proxy codec: the same commands and errors whole and in any chunking;
//! every decoded command written back as a client would decodes to itself; every reply
//! is one line whose fields unescape to what was encoded.

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use postern::dovecot_dict::codec::{encode, Codec, Command, DecodeError, Reply, MAX_LINE};
use postern::tabescape;
use postern_fuzz::{same_in_any_chunking, Decoder, Plan};

struct Dict(Codec);

impl Decoder for Dict {
    type Item = Command;
    type Error = DecodeError;

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Command>, DecodeError> {
        self.0.decode(buf)
    }

    fn ends_session(e: &DecodeError) -> bool {
        *e == DecodeError::LineTooLong
    }
}

/// The line a Dovecot client would send for `command`.
fn client_line(command: &Command) -> Vec<u8> {
    let mut out = Vec::new();
    let mut fields = |first: u8, fields: &[String]| {
        out.push(first);
        for (i, f) in fields.iter().enumerate() {
            if i > 0 {
                out.push(b'\t');
            }
            tabescape::escape(f.as_bytes(), &mut out);
        }
        out.push(b'\n');
    };
    let user = |u: &Option<String>| u.iter().cloned().collect::<Vec<_>>();
    match command {
        Command::Hello {
            major,
            minor,
            value_type,
            user,
            dict_name,
        } => fields(
            b'H',
            &[
                major.to_string(),
                minor.to_string(),
                value_type.clone(),
                user.clone(),
                dict_name.clone(),
            ],
        ),
        Command::Lookup { key, user: u } => {
            fields(b'L', &[vec![key.clone()], user(u)].concat());
        }
        Command::Iterate {
            flags,
            max_rows,
            path,
            user: u,
        } => fields(
            b'I',
            &[
                vec![flags.to_string(), max_rows.to_string(), path.clone()],
                user(u),
            ]
            .concat(),
        ),
        Command::Begin { id, user: u } => fields(b'B', &[vec![id.to_string()], user(u)].concat()),
        Command::Set { id, key, value } => {
            fields(b'S', &[id.to_string(), key.clone(), value.clone()]);
        }
        Command::Unset { id, key } => fields(b'U', &[id.to_string(), key.clone()]),
        Command::AtomicInc { id, key, delta } => {
            fields(b'A', &[id.to_string(), key.clone(), delta.to_string()]);
        }
        Command::Commit { id, is_async } => {
            fields(if *is_async { b'D' } else { b'C' }, &[id.to_string()]);
        }
        Command::Rollback { id } => fields(b'R', &[id.to_string()]),
        Command::Timestamp { id, secs, nsecs } => {
            fields(b'T', &[id.to_string(), secs.to_string(), nsecs.to_string()]);
        }
        Command::HideLogValues { id, hide } => fields(
            b'V',
            &[id.to_string(), if *hide { "yes" } else { "no" }.to_owned()],
        ),
    }
    out
}

/// The fields of one encoded reply line, unescaped; asserts it is exactly one line.
fn reply_fields(reply: &Reply<'_>) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    encode(reply, &mut out);
    assert_eq!(out.last(), Some(&b'\n'), "{reply:?}");
    let line = &out[..out.len() - 1];
    assert!(
        !line.contains(&b'\n') && !line.contains(&b'\r'),
        "{reply:?}"
    );
    line.split(|&b| b == b'\t')
        .map(|f| tabescape::unescape(f).expect("an encoded field unescapes"))
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let plan = Plan::read(data);
    let max_line = plan.max_line.unwrap_or(MAX_LINE);
    let decoded = same_in_any_chunking(|| Dict(Codec::with_max_line(max_line)), &plan);

    for command in decoded.into_iter().flatten() {
        let line = client_line(&command);
        let mut buf = BytesMut::from(&line[..]);
        let again = Codec::with_max_line(usize::MAX).decode(&mut buf);
        assert_eq!(again, Ok(Some(command)), "re-encoded as {line:?}");
        assert!(buf.is_empty());
    }

    let text = String::from_utf8_lossy(plan.stream);
    let found = reply_fields(&Reply::Found(&text));
    assert_eq!(found.len(), 1);
    assert_eq!(found[0], [&b"O"[..], text.as_bytes()].concat());
    let row = reply_fields(&Reply::IterRow {
        key: &text,
        value: &text,
    });
    assert_eq!(
        row,
        [
            [&b"O"[..], text.as_bytes()].concat(),
            text.as_bytes().to_vec()
        ]
    );
    assert_eq!(
        reply_fields(&Reply::Fail(&text)),
        [[&b"F"[..], text.as_bytes()].concat()]
    );
});
