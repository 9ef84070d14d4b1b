//! Test support shared by the protocol codecs and the escaping: feeding a byte stream to
//! a decoder as it may arrive (in chunks of any size), and a small deterministic
//! generator for garbage input without a property-testing crate.

use bytes::BytesMut;

/// A codec's decoder, as the replay helpers drive it.
pub trait Decode {
    type Item;
    type Error;

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Self::Item>, Self::Error>;

    /// Whether the session ends at this error (a limit), rather than answering it and
    /// decoding on (a malformed line).
    fn ends_session(e: &Self::Error) -> bool;
}

/// What a decoder gave, in order.
pub type Decoded<D> = Vec<Result<<D as Decode>::Item, <D as Decode>::Error>>;

/// Everything decodable in `buf`, errors kept in the sequence, up to a session-ending one.
pub fn drain<D: Decode>(codec: &mut D, buf: &mut BytesMut) -> Decoded<D> {
    let mut out = Vec::new();
    loop {
        match codec.decode(buf) {
            Ok(None) => return out,
            Ok(Some(item)) => out.push(Ok(item)),
            Err(e) => {
                let ends = D::ends_session(&e);
                out.push(Err(e));
                if ends {
                    return out;
                }
            }
        }
    }
}

/// Feeds `input` to `codec` `size` bytes at a time, draining after each chunk: what was
/// decoded, and whether nothing was left over.
pub fn in_chunks<D: Decode>(mut codec: D, input: &[u8], size: usize) -> (Decoded<D>, bool) {
    let mut buf = BytesMut::new();
    let mut got = Vec::new();
    for chunk in input.chunks(size) {
        buf.extend_from_slice(chunk);
        got.extend(drain(&mut codec, &mut buf));
    }
    (got, buf.is_empty())
}

/// xorshift64: the same sequence for the same seed.
pub struct XorShift(pub u64);

impl XorShift {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}
