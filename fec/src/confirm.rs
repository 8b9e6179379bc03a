//! Which stream description is the sender's: anyone can send one to a bare receiver, so a new
//! one takes effect only once confirmed, by coming again (as the sender repeats it) more often
//! than the one in force, with symbols that fit it in between.

use crate::codec::BlockParams;
use crate::description::Description;

/// New descriptions weighed at once; a newcomer takes the place of the least seen.
const MAX_CANDIDATES: usize = 3;
/// A candidate the one in force outnumbers by this much since it first came is dropped.
const OUTNUMBERED: u32 = 4;

/// Whether a block's parameters can be the sender's, by what its description says.
pub fn fits(desc: Option<&Description>, p: &BlockParams) -> bool {
    let Some(d) = desc else { return true };
    let max_k = match d.max_k {
        0 => u32::from(crate::MAX_SOURCE_SYMBOLS),
        k => u32::from(k),
    };
    p.codec == d.codec && p.symbol_size == d.symbol_size && p.source_symbols() <= max_k
}

/// Whether two descriptions differ at most in their window (first block).
pub fn same_but_window(a: &Description, b: &Description) -> bool {
    let a = Description {
        first_block: b.first_block,
        ..a.clone()
    };
    a == *b
}

struct Candidate {
    desc: Description,
    arrivals: u32,
    /// Arrivals of the one in force since this one first came.
    current_since: u32,
    /// Symbols that fit it since it first came.
    fitting: u32,
}

#[derive(Default)]
pub struct Candidates {
    list: Vec<Candidate>,
}

impl Candidates {
    /// The one in force came again; returns how many candidates it outnumbered (dropped).
    pub fn current_arrived(&mut self) -> u64 {
        let before = self.list.len();
        for c in &mut self.list {
            c.current_since = c.current_since.saturating_add(1);
        }
        self.list
            .retain(|c| c.current_since < c.arrivals.saturating_add(OUTNUMBERED));
        (before - self.list.len()) as u64
    }

    /// A new one came; returns it if it takes effect now, and how many candidates were
    /// dropped. With one in force a candidate needs two arrivals, a fitting symbol and more
    /// arrivals than the one in force since; without, also more than any other candidate.
    /// One of another stream than `current`'s (a restarted sender) never takes effect here:
    /// see [`Self::take_new_stream`].
    pub fn arrived(
        &mut self,
        desc: Description,
        current: Option<&Description>,
    ) -> (Option<Description>, u64) {
        let mut dropped = 0;
        match self
            .list
            .iter_mut()
            .find(|c| same_but_window(&c.desc, &desc))
        {
            Some(_) => {
                // Moved last: the latest to come.
                let i = self
                    .list
                    .iter()
                    .position(|c| same_but_window(&c.desc, &desc));
                let mut c = self.list.remove(i.expect("found"));
                c.arrivals = c.arrivals.saturating_add(1);
                c.desc = desc;
                self.list.push(c);
            }
            None => {
                if self.list.len() >= MAX_CANDIDATES {
                    let weakest = (0..self.list.len()).min_by_key(|&i| self.list[i].arrivals);
                    if let Some(i) = weakest {
                        self.list.remove(i);
                        dropped += 1;
                    }
                }
                self.list.push(Candidate {
                    desc,
                    arrivals: 1,
                    current_since: 0,
                    fitting: 0,
                });
            }
        }
        (self.decide(current.map(|d| d.stream)), dropped)
    }

    /// Whether a description of another stream than `stream` is being weighed.
    pub fn other_stream(&self, stream: u64) -> bool {
        self.list.iter().any(|c| c.desc.stream != stream)
    }

    /// A description of another stream than `stream`, confirmed as a change is (two
    /// arrivals, a fitting symbol since, more arrivals than the one in force since), taken
    /// out. The caller decides whether the stream in force has stopped.
    pub fn take_new_stream(&mut self, stream: u64) -> Option<Description> {
        let i = self.list.iter().position(|c| {
            c.desc.stream != stream
                && c.arrivals >= 2
                && c.fitting >= 1
                && c.arrivals > c.current_since
        })?;
        Some(self.list.remove(i).desc)
    }

    /// A symbol came: it counts for the candidates it fits.
    pub fn symbol(&mut self, p: &BlockParams) {
        for c in &mut self.list {
            if fits(Some(&c.desc), p) {
                c.fitting = c.fitting.saturating_add(1);
            }
        }
    }

    /// The only candidate, if it fits `p`: the first description, confirmed by a block of
    /// the stream (taken out).
    pub fn take_only_fitting(&mut self, p: &BlockParams) -> Option<Description> {
        match self.list.as_slice() {
            [c] if fits(Some(&c.desc), p) => self.list.pop().map(|c| c.desc),
            _ => None,
        }
    }

    /// The candidate that came last, if it fits `p`: the first description, confirmed by a
    /// block of the stream (the sender sends it just before its first symbols; taken out).
    pub fn take_latest_fitting(&mut self, p: &BlockParams) -> Option<Description> {
        let i = self.list.iter().rposition(|c| fits(Some(&c.desc), p))?;
        (i + 1 == self.list.len()).then(|| self.list.remove(i).desc)
    }

    /// Drops every candidate; returns how many there were.
    pub fn clear(&mut self) -> u64 {
        let n = self.list.len() as u64;
        self.list.clear();
        n
    }

    fn decide(&mut self, stream: Option<u64>) -> Option<Description> {
        let current = stream.is_some();
        // Another stream's (a restart) is weighed apart, by `take_new_stream`.
        let ours = |c: &Candidate| stream.is_none_or(|s| s == c.desc.stream);
        let most = self
            .list
            .iter()
            .filter(|c| ours(c))
            .map(|c| c.arrivals)
            .max()?;
        let tied = self
            .list
            .iter()
            .filter(|c| ours(c) && c.arrivals == most)
            .count()
            > 1;
        let i = self.list.iter().position(|c| {
            ours(c)
                && c.arrivals == most
                && c.arrivals >= 2
                && c.fitting >= 1
                && c.arrivals > c.current_since
                && (current || !tied)
        })?;
        Some(self.list.remove(i).desc)
    }
}
