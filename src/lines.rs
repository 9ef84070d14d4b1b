//! LF-line framing with a length limit, shared by the dict and auth-client codecs
//! (both Dovecot protocols are TAB-separated lines). Pure: bytes in, lines out.
//!
//! ```text
//! "Lshared/userdb/alice\tal" -> Ok(None)           (nothing consumed)
//! "...ice\n"                 -> Ok(Some(line))     (line and its LF or CRLF consumed)
//! over the limit, no LF yet  -> Err(LineTooLong)   (nothing consumed: close the stream)
//! ```

use bytes::BytesMut;

/// A line longer than the limit: the stream cannot be resynchronised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineTooLong;

/// Cuts lines out of a buffer that a session keeps filling from its socket.
#[derive(Debug, Clone)]
pub struct LineFramer {
    max_line: usize,
    /// How far the buffer was already searched for LF, so a line that trickles in is
    /// scanned once. Only valid while the caller keeps passing the same buffer.
    scanned: usize,
}

impl LineFramer {
    /// Refuses lines longer than `max_line` bytes (line end excluded).
    pub fn new(max_line: usize) -> Self {
        LineFramer {
            max_line,
            scanned: 0,
        }
    }

    /// The next complete line, without its LF or CRLF.
    pub fn take_line(&mut self, buf: &mut BytesMut) -> Result<Option<BytesMut>, LineTooLong> {
        if self.scanned > buf.len() {
            // Not the buffer we were reading: search it from the start.
            self.scanned = 0;
        }
        // A line of max_line bytes needs at most 2 more for CRLF: never look further.
        let window = buf.len().min(self.max_line.saturating_add(2));
        let start = self.scanned.min(window);
        let Some(lf) = memchr::memchr(b'\n', &buf[start..window]) else {
            let pending = buf.len() - usize::from(buf.last() == Some(&b'\r'));
            if pending > self.max_line {
                self.scanned = 0;
                return Err(LineTooLong);
            }
            self.scanned = window;
            return Ok(None);
        };
        let lf = start + lf;
        self.scanned = 0;
        let len = lf - usize::from(lf > 0 && buf[lf - 1] == b'\r');
        if len > self.max_line {
            return Err(LineTooLong);
        }
        let mut line = buf.split_to(lf + 1);
        line.truncate(len);
        Ok(Some(line))
    }
}
