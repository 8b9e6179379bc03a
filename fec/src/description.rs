//! The stream description: caps and codec parameters, repeated in-band so that a receiver
//! joining at any moment needs no SDP. Long descriptions are cut into fragments.

use crate::packet::{self, MAX_DESCRIPTION_FRAGMENT};
use crate::Codec;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(u8)]
pub enum Mode {
    #[default]
    Stream = 0,
    Carousel = 1,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Description {
    pub codec: Codec,
    pub mode: Mode,
    /// The input's segment was in time (timestamps are meaningful), not bytes.
    pub time_segment: bool,
    pub symbol_size: u16,
    pub max_k: u16,
    pub repair_percent: u16,
    /// Carousel: the oldest block still being sent; a late joiner starts there.
    pub first_block: u64,
    /// Chosen at random at each start of the sender: a restarted sender (numbering its
    /// blocks from 0 again) is a new stream, not old blocks of the one followed.
    pub stream: u64,
    /// The caps of the original stream, serialized.
    pub caps: String,
}

const FIXED: usize = 26;
/// Caps longer than this are refused by the sender (255 fragments of about 1.4 KB).
pub const MAX_CAPS_LEN: usize = 255 * MAX_DESCRIPTION_FRAGMENT - FIXED;

impl Description {
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(FIXED + self.caps.len());
        out.push(self.codec as u8);
        out.push(self.mode as u8);
        out.push(u8::from(self.time_segment));
        out.push(0);
        out.extend_from_slice(&self.symbol_size.to_be_bytes());
        out.extend_from_slice(&self.max_k.to_be_bytes());
        out.extend_from_slice(&self.repair_percent.to_be_bytes());
        out.extend_from_slice(&self.first_block.to_be_bytes());
        out.extend_from_slice(&self.stream.to_be_bytes());
        out.extend_from_slice(self.caps.as_bytes());
        out
    }

    pub fn from_bytes(b: &[u8]) -> Option<Description> {
        if b.len() < FIXED {
            return None;
        }
        Some(Description {
            codec: Codec::from_u8(b[0])?,
            mode: match b[1] {
                0 => Mode::Stream,
                1 => Mode::Carousel,
                _ => return None,
            },
            time_segment: match b[2] {
                0 => false,
                1 => true,
                _ => return None,
            },
            symbol_size: u16::from_be_bytes([b[4], b[5]]),
            max_k: u16::from_be_bytes([b[6], b[7]]),
            repair_percent: u16::from_be_bytes([b[8], b[9]]),
            first_block: u64::from_be_bytes(b[10..18].try_into().ok()?),
            stream: u64::from_be_bytes(b[18..26].try_into().ok()?),
            caps: String::from_utf8(b[FIXED..].to_vec()).ok()?,
        })
    }

    /// The description as datagrams for `flow`, tagged with `version`.
    pub fn packets(&self, flow: u32, version: u32) -> Vec<Vec<u8>> {
        let bytes = self.to_bytes();
        let chunks: Vec<&[u8]> = bytes.chunks(MAX_DESCRIPTION_FRAGMENT).collect();
        let count = chunks.len() as u8;
        chunks
            .iter()
            .enumerate()
            .map(|(i, chunk)| {
                let mut out = Vec::new();
                packet::write_description(
                    &mut out,
                    flow,
                    version,
                    i as u8,
                    count,
                    bytes.len() as u16,
                    chunk,
                );
                out
            })
            .collect()
    }
}

/// Fragments that contradict each other, or a description that does not parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadDescription;

/// Reassembles description fragments; keeps only the newest version seen.
#[derive(Debug, Default)]
pub struct DescriptionAssembler {
    version: Option<u32>,
    total_len: u16,
    fragments: Vec<Option<Vec<u8>>>,
}

impl DescriptionAssembler {
    /// Adds a fragment; returns the description once all fragments of a version are in.
    /// `Err` for fragments contradicting the ones already held.
    pub fn add(
        &mut self,
        version: u32,
        index: u8,
        count: u8,
        total_len: u16,
        data: &[u8],
    ) -> Result<Option<Description>, BadDescription> {
        if self.version != Some(version) {
            self.version = Some(version);
            self.total_len = total_len;
            self.fragments = vec![None; usize::from(count)];
        }
        if self.fragments.len() != usize::from(count) || self.total_len != total_len {
            return Err(BadDescription);
        }
        self.fragments[usize::from(index)] = Some(data.to_vec());
        if self.fragments.iter().any(Option::is_none) {
            return Ok(None);
        }
        let bytes: Vec<u8> = self.fragments.iter().flatten().flatten().copied().collect();
        // Start over for the next repetition, so a damaged set is not kept forever.
        self.version = None;
        if bytes.len() != usize::from(total_len) {
            return Err(BadDescription);
        }
        Description::from_bytes(&bytes)
            .map(Some)
            .ok_or(BadDescription)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::{parse, Packet};

    fn assemble(desc: &Description, flow: u32) -> Description {
        let mut asm = DescriptionAssembler::default();
        let mut result = None;
        // Fragments in reverse order still assemble.
        for p in desc.packets(flow, 3).iter().rev() {
            match parse(p).unwrap() {
                Packet::Description {
                    flow: f,
                    version,
                    index,
                    count,
                    total_len,
                    data,
                } => {
                    assert_eq!(f, flow);
                    result = asm.add(version, index, count, total_len, data).unwrap();
                }
                other => panic!("{other:?}"),
            }
        }
        result.unwrap()
    }

    #[test]
    fn short_and_long_descriptions() {
        let mut desc = Description {
            codec: Codec::ReedSolomon,
            mode: Mode::Carousel,
            time_segment: true,
            symbol_size: 1400,
            max_k: 100,
            repair_percent: 25,
            first_block: 1 << 40,
            stream: 0x0123_4567_89ab_cdef,
            caps: "video/mpegts, systemstream=(boolean)true".into(),
        };
        assert_eq!(desc.packets(1, 0).len(), 1);
        assert_eq!(assemble(&desc, 1), desc);
        desc.caps = "x".repeat(5000);
        assert_eq!(desc.packets(1, 0).len(), 4);
        assert_eq!(assemble(&desc, 1), desc);
    }

    #[test]
    fn inconsistent_fragments_are_refused() {
        let mut asm = DescriptionAssembler::default();
        assert_eq!(asm.add(1, 0, 2, 30, &[0; 10]), Ok(None));
        assert_eq!(asm.add(1, 1, 3, 30, &[0; 10]), Err(BadDescription));
        assert!(Description::from_bytes(&[9; 20]).is_none());
    }
}
