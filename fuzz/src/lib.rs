//! What the fuzz targets share: a fuzz input read as a chunking plan plus a byte stream,
//! and a decoder driven over that stream whole and in the planned chunks, so a target can
//! assert that both give the same frames and the same errors.
//!
//! ```text
//! input   = [h] [max_line]? [n chunk sizes] [stream ...]
//! h & 7   = n, how many chunk sizes follow (each byte + 1; none: one byte at a time)
//! h & 0x80: a byte follows with a small line limit (targets whose codec has one)
//! ```

use std::fmt::Debug;

use bytes::BytesMut;

/// A protocol decoder as a session drives it.
pub trait Decoder {
    type Item: Debug + PartialEq;
    type Error: Debug + PartialEq;

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Self::Item>, Self::Error>;

    /// Whether the session closes the connection at this error (a limit); after any
    /// other error it answers and decodes on.
    fn ends_session(e: &Self::Error) -> bool;
}

/// What a decoder gave, in order, up to and including a session-ending error.
pub type Decoded<D> = Vec<Result<<D as Decoder>::Item, <D as Decoder>::Error>>;

/// A fuzz input cut into its parts.
#[derive(Debug)]
pub struct Plan<'a> {
    /// A line limit for the codec, when the input asks for a small one.
    pub max_line: Option<usize>,
    /// Chunk sizes, used in turn and then again from the first.
    pub sizes: Vec<usize>,
    /// The bytes as they would arrive on the socket.
    pub stream: &'a [u8],
}

impl<'a> Plan<'a> {
    /// Reads the header described in the module documentation; a short input is all header.
    pub fn read(data: &'a [u8]) -> Plan<'a> {
        let Some((&h, mut rest)) = data.split_first() else {
            return Plan {
                max_line: None,
                sizes: vec![1],
                stream: &[],
            };
        };
        let mut max_line = None;
        if h & 0x80 != 0 {
            if let Some((&m, tail)) = rest.split_first() {
                max_line = Some(usize::from(m));
                rest = tail;
            }
        }
        let n = usize::from(h & 7).min(rest.len());
        let (sizes, stream) = rest.split_at(n);
        let mut sizes: Vec<usize> = sizes.iter().map(|&s| usize::from(s) + 1).collect();
        if sizes.is_empty() {
            sizes.push(1);
        }
        Plan {
            max_line,
            sizes,
            stream,
        }
    }
}

/// Decodes everything in `buf`; true when a session-ending error stopped it.
fn drain<D: Decoder>(codec: &mut D, buf: &mut BytesMut, out: &mut Decoded<D>) -> bool {
    loop {
        match codec.decode(buf) {
            Ok(None) => return false,
            Ok(Some(item)) => out.push(Ok(item)),
            Err(e) => {
                let ends = D::ends_session(&e);
                out.push(Err(e));
                if ends {
                    return true;
                }
            }
        }
    }
}

/// `stream` decoded from one buffer holding all of it.
pub fn whole<D: Decoder>(mut codec: D, stream: &[u8]) -> Decoded<D> {
    let mut out = Vec::new();
    let mut buf = BytesMut::from(stream);
    drain(&mut codec, &mut buf, &mut out);
    out
}

/// `stream` decoded as it arrives in chunks of `sizes`, draining after every chunk.
pub fn chunked<D: Decoder>(mut codec: D, stream: &[u8], sizes: &[usize]) -> Decoded<D> {
    let mut out = Vec::new();
    let mut buf = BytesMut::new();
    let mut rest = stream;
    for &size in sizes.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (chunk, tail) = rest.split_at(size.min(rest.len()));
        rest = tail;
        buf.extend_from_slice(chunk);
        if drain(&mut codec, &mut buf, &mut out) {
            break;
        }
    }
    out
}

/// Asserts that the stream decodes the same whole and in the plan's chunks; returns what
/// it decoded.
pub fn same_in_any_chunking<D: Decoder>(new: impl Fn() -> D, plan: &Plan<'_>) -> Decoded<D> {
    let all = whole(new(), plan.stream);
    let parts = chunked(new(), plan.stream, &plan.sizes);
    assert_eq!(all, parts, "chunks {:?}", plan.sizes);
    all
}
