// SPDX-License-Identifier: MPL-2.0

//! The stats structures the elements post, as time series: bitrates (input, disk writes,
//! each channel sent) and, per receiver, blocks rebuilt with repair and blocks lost.

use std::collections::{BTreeMap, HashMap};

/// Points (seconds, value) of one line.
pub type Line = Vec<(f64, f64)>;

#[derive(Debug, Default)]
pub struct Timeline {
    /// Mbit/s, per line name.
    pub bitrates: BTreeMap<String, Line>,
    /// Blocks (running totals), per line name.
    pub blocks: BTreeMap<String, Line>,
    /// Stats messages seen per element: their time when the caller has none.
    counts: HashMap<String, u32>,
    /// The last (time, byte count) of a cumulative counter, for its rate.
    last_bytes: HashMap<String, (f64, u64)>,
}

impl Timeline {
    pub fn is_empty(&self) -> bool {
        self.bitrates
            .values()
            .chain(self.blocks.values())
            .all(|l| l.is_empty())
    }

    /// Takes one stats structure posted by `element` at `at` seconds (`None`: the n-th
    /// message of that element is taken as posted at n seconds, as they come once a second).
    /// Structures that are not fanout stats are ignored.
    pub fn add(&mut self, element: &str, at: Option<f64>, s: &gst::StructureRef) {
        let name = s.name().as_str();
        if !(name.starts_with("fanout-") && name.ends_with("-stats")) {
            return;
        }
        let n = self.counts.entry(element.to_owned()).or_default();
        let t = at.unwrap_or(f64::from(*n));
        *n = n.saturating_add(1);
        let u64_of = |s: &gst::StructureRef, f: &str| s.get::<u64>(f).ok();
        if name.ends_with("recorder-stats") {
            for (field, what) in [("input-bitrate", "input"), ("write-bitrate", "disk write")] {
                if let Some(bps) = u64_of(s, field) {
                    push(
                        &mut self.bitrates,
                        format!("{element} {what}"),
                        t,
                        bps as f64 / 1e6,
                    );
                }
            }
        } else if name == "fanout-session-sink-stats" {
            let Ok(channels) = s.get::<gst::Array>("channels") else {
                return;
            };
            for c in channels
                .iter()
                .filter_map(|v| v.get::<gst::Structure>().ok())
            {
                let (Ok(ch), Some(bytes)) = (c.get::<String>("name"), u64_of(&c, "bytes")) else {
                    continue;
                };
                let line = format!("{element} channel {ch}");
                if let Some(mbps) = self.rate(&line, t, bytes) {
                    push(&mut self.bitrates, line, t, mbps);
                }
            }
        } else if name == "fanout-fec-depayloader-stats" {
            for (field, what) in [("blocks-recovered", "repaired"), ("blocks-lost", "lost")] {
                if let Some(v) = u64_of(s, field) {
                    push(&mut self.blocks, format!("{element} {what}"), t, v as f64);
                }
            }
        }
    }

    /// Mbit/s of a byte counter since its last sample; none for the first (or a reset).
    fn rate(&mut self, key: &str, t: f64, bytes: u64) -> Option<f64> {
        let last = self.last_bytes.insert(key.to_owned(), (t, bytes));
        let (t0, b0) = last?;
        let dt = t - t0;
        (dt > 0.0 && bytes >= b0).then(|| (bytes - b0) as f64 * 8.0 / dt / 1e6)
    }
}

fn push(map: &mut BTreeMap<String, Line>, line: String, t: f64, v: f64) {
    map.entry(line).or_default().push((t, v));
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn add(tl: &mut Timeline, element: &str, at: Option<f64>, s: &str) {
        tl.add(element, at, &gst::Structure::from_str(s).unwrap());
    }

    #[test]
    fn recorder_channel_and_receiver_stats_become_lines() {
        gst::init().unwrap();
        let mut tl = Timeline::default();
        add(&mut tl, "rec", None, "fanout-bitrate-recorder-stats, input-bitrate=(guint64)2000000, write-bitrate=(guint64)1000000");
        add(&mut tl, "rec", None, "fanout-bitrate-recorder-stats, input-bitrate=(guint64)3000000, write-bitrate=(guint64)3000000");
        let sink = |bytes: u64| {
            format!("fanout-session-sink-stats, channels=(structure)< \"channel\\,\\ name\\=\\(string\\)now\\,\\ bytes\\=\\(guint64\\){bytes}\\;\" >")
        };
        add(&mut tl, "s", Some(0.0), &sink(0));
        add(&mut tl, "s", Some(2.0), &sink(500_000));
        add(
            &mut tl,
            "rx",
            Some(2.0),
            "fanout-fec-depayloader-stats, blocks-recovered=(guint64)4, blocks-lost=(guint64)1",
        );
        add(&mut tl, "x", None, "something-else, a=(int)1");
        assert_eq!(tl.bitrates["rec input"], vec![(0.0, 2.0), (1.0, 3.0)]);
        assert_eq!(tl.bitrates["rec disk write"], vec![(0.0, 1.0), (1.0, 3.0)]);
        assert_eq!(tl.bitrates["s channel now"], vec![(2.0, 2.0)]);
        assert_eq!(tl.blocks["rx repaired"], vec![(2.0, 4.0)]);
        assert_eq!(tl.blocks["rx lost"], vec![(2.0, 1.0)]);
        assert!(!tl.is_empty());
    }

    #[test]
    fn a_counter_that_went_back_gives_no_rate() {
        let mut tl = Timeline::default();
        assert_eq!(tl.rate("a", 0.0, 100), None);
        assert_eq!(tl.rate("a", 1.0, 50), None);
        assert_eq!(tl.rate("a", 1.0, 60), None, "no time passed");
        assert_eq!(tl.rate("a", 2.0, 125_060), Some(1.0));
    }
}
