// SPDX-License-Identifier: MPL-2.0

//! What a receiver got, as pieces of what was sent: one piece from the first byte to the
//! last when nothing was lost; an offset changed live makes a jump, a lost block a hole.

/// A run of the received bytes that is `len` bytes of the sent ones from `at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Piece {
    pub at: usize,
    pub len: usize,
}

/// How long a run must be to be found again after a jump (about 10 TS packets of 188).
const PROBE: usize = 1880;

/// `got` as pieces of `sent`, in order; `None` if some of it is not in `sent` at all.
pub fn pieces(got: &[u8], sent: &[u8]) -> Option<Vec<Piece>> {
    let mut out: Vec<Piece> = Vec::new();
    let mut i = 0;
    while i < got.len() {
        let probe = &got[i..got.len().min(i + PROBE)];
        // Where it goes on: right after the last piece if it can, else anywhere.
        let next = out.last().map_or(0, |p| p.at + p.len);
        let at = if sent[next.min(sent.len())..].starts_with(probe) {
            next
        } else {
            find(sent, probe)?
        };
        let len = got[i..]
            .iter()
            .zip(&sent[at..])
            .take_while(|(a, b)| a == b)
            .count();
        out.push(Piece { at, len });
        i += len;
    }
    Some(out)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(n: usize) -> Vec<u8> {
        let mut x = 7u64;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    #[test]
    fn whole_jumped_and_foreign() {
        let sent = data(100_000);
        assert_eq!(
            pieces(&sent, &sent),
            Some(vec![Piece {
                at: 0,
                len: 100_000
            }])
        );
        // Forward 10 000 bytes at 40 000, as a live offset change does.
        let jumped = [&sent[..40_000], &sent[50_000..]].concat();
        assert_eq!(
            pieces(&jumped, &sent),
            Some(vec![
                Piece { at: 0, len: 40_000 },
                Piece {
                    at: 50_000,
                    len: 50_000
                }
            ])
        );
        assert_eq!(pieces(&data(3000)[..0], &sent), Some(vec![]));
        let mut foreign = sent.clone();
        foreign[70_000..72_000].fill(0x47);
        assert_eq!(pieces(&foreign, &sent), None);
    }
}
