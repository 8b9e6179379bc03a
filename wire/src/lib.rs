//! Coding shared by fanout's formats (docs/store-format.md, docs/fec-format.md), so that every
//! reader takes exactly what every writer writes, and nothing else; and the one monotonic
//! time the sans-IO cores (`fanout-session`, `fanout-fec`) are fed ([`time::Mono`]).

pub mod time;

/// Unsigned LEB128: 7 bits a byte, least significant first, high bit set when more follow.
pub mod varint {
    /// Longest encoding of a `u64`.
    pub const MAX_LEN: usize = 10;

    /// A varint that is truncated, overlong (a needless trailing zero byte), longer than
    /// [`MAX_LEN`] bytes or above `u64::MAX`.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct BadVarint;

    pub fn put(out: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            out.push(v as u8 | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }

    /// Bytes [`put`] writes for `v`.
    pub fn len(v: u64) -> usize {
        (64 - v.leading_zeros() as usize).max(1).div_ceil(7)
    }

    /// Reads one varint from the front of `b` and advances it. Every value has exactly one
    /// accepted encoding, the one [`put`] writes.
    pub fn get(b: &mut &[u8]) -> Result<u64, BadVarint> {
        let mut v = 0u64;
        for i in 0..MAX_LEN {
            let (&byte, rest) = b.split_first().ok_or(BadVarint)?;
            *b = rest;
            let bits = u64::from(byte & 0x7f);
            // The tenth byte holds bit 63 alone.
            if i == MAX_LEN - 1 && bits > 1 {
                return Err(BadVarint);
            }
            v |= bits << (7 * i);
            if byte & 0x80 == 0 {
                if byte == 0 && i > 0 {
                    return Err(BadVarint);
                }
                return Ok(v);
            }
        }
        Err(BadVarint)
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn round_trip_and_length() {
            for v in [
                0,
                1,
                127,
                128,
                16_383,
                16_384,
                u64::from(u32::MAX),
                u64::MAX - 1,
                u64::MAX,
            ] {
                let mut out = Vec::new();
                put(&mut out, v);
                assert_eq!(out.len(), len(v), "{v}");
                let mut b = &out[..];
                assert_eq!(get(&mut b), Ok(v));
                assert!(b.is_empty());
            }
        }

        #[test]
        fn only_the_shortest_encoding_is_taken() {
            // Overlong zero and one, a value above 2^64 - 1, eleven bytes, truncated.
            for bad in [
                &[0x80, 0x00][..],
                &[0x81, 0x80, 0x00],
                &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02],
                &[0x80; 11],
                &[0x80],
                &[],
            ] {
                assert_eq!(get(&mut &bad[..]), Err(BadVarint), "{bad:?}");
            }
        }
    }
}
