// SPDX-License-Identifier: MPL-2.0

//! The protocol over TCP: every message (the bytes a UDP datagram would carry) is one frame,
//! a 2-byte big-endian length and then the message.

use crate::message::MAX_CONTROL_LEN;

pub const LEN_BYTES: usize = 2;
/// The largest message a frame holds.
pub const MAX_FRAME: usize = u16::MAX as usize;

/// `parts` concatenated, as one frame; `None` if they are longer than a frame holds.
pub fn frame(parts: &[&[u8]]) -> Option<Vec<u8>> {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    if len > MAX_FRAME {
        return None;
    }
    let mut out = Vec::with_capacity(LEN_BYTES + len);
    out.extend_from_slice(&(len as u16).to_be_bytes());
    for p in parts {
        out.extend_from_slice(p);
    }
    Some(out)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// Longer than the reading side takes.
    TooLong(usize),
    Empty,
}

/// Cuts a byte stream into frames. Bytes come in any pieces; a frame that is not complete
/// yet waits for the rest.
pub struct Deframer {
    buf: Vec<u8>,
    start: usize,
    max: usize,
}

impl Deframer {
    /// Takes frames of at most `max` bytes: a server takes control messages only
    /// ([`Deframer::control`]), a receiver DATA too ([`MAX_FRAME`]).
    pub fn new(max: usize) -> Deframer {
        Deframer {
            buf: Vec::new(),
            start: 0,
            max: max.min(MAX_FRAME),
        }
    }

    pub fn control() -> Deframer {
        Deframer::new(MAX_CONTROL_LEN)
    }

    pub fn push(&mut self, bytes: &[u8]) {
        if self.start > 0 && self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete frame's message. After an error the stream cannot be trusted:
    /// close it.
    pub fn next_frame(&mut self) -> Option<Result<&[u8], FrameError>> {
        let rest = &self.buf[self.start..];
        if rest.len() < LEN_BYTES {
            self.compact();
            return None;
        }
        let len = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
        if len == 0 {
            return Some(Err(FrameError::Empty));
        }
        if len > self.max {
            return Some(Err(FrameError::TooLong(len)));
        }
        if rest.len() < LEN_BYTES + len {
            self.compact();
            return None;
        }
        let at = self.start + LEN_BYTES;
        self.start = at + len;
        Some(Ok(&self.buf[at..at + len]))
    }

    /// Bytes of a frame not complete yet.
    pub fn pending(&self) -> usize {
        self.buf.len() - self.start
    }

    fn compact(&mut self) {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_come_out_whatever_the_pieces() {
        let mut stream = frame(&[b"FS", b"\x01\x06abc"]).unwrap();
        stream.extend(frame(&[b"second"]).unwrap());
        for cut in 0..stream.len() {
            let mut d = Deframer::new(100);
            let mut got: Vec<Vec<u8>> = Vec::new();
            for piece in [&stream[..cut], &stream[cut..]] {
                d.push(piece);
                while let Some(f) = d.next_frame() {
                    got.push(f.unwrap().to_vec());
                }
            }
            assert_eq!(got, vec![b"FS\x01\x06abc".to_vec(), b"second".to_vec()]);
            assert_eq!(d.pending(), 0);
        }
    }

    #[test]
    fn a_frame_too_long_or_empty_is_an_error_and_half_a_frame_waits() {
        let mut d = Deframer::control();
        d.push(&[0x05, 0x79]);
        assert_eq!(d.next_frame(), Some(Err(FrameError::TooLong(0x579))));
        let mut d = Deframer::control();
        d.push(&[0, 0]);
        assert_eq!(d.next_frame(), Some(Err(FrameError::Empty)));
        let mut d = Deframer::control();
        d.push(&[0, 4, b'F']);
        assert_eq!(d.next_frame(), None);
        assert_eq!(d.pending(), 3);
        assert!(frame(&[&[0; MAX_FRAME], b"x"]).is_none());
    }
}
