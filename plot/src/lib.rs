// SPDX-License-Identifier: MPL-2.0

//! Plots what fanout elements say on the bus: each posts its stats (`fanout-<element>-stats`)
//! about once a second. Feed [`Timeline`] from a live pipeline's bus ([`Timeline::message`])
//! or from a `gst-launch-1.0 -m` log ([`from_launch_log`]), then [`render`] a PNG.

mod render;
mod timeline;

use std::str::FromStr;

use gst::prelude::*;

pub use render::render;
pub use timeline::{Line, Timeline};

impl Timeline {
    /// Takes a bus message posted `at` seconds into the run: element messages carrying
    /// fanout stats count, everything else is ignored.
    pub fn message(&mut self, msg: &gst::MessageRef, at: f64) {
        if let (gst::MessageView::Element(e), Some(src)) = (msg.view(), msg.src()) {
            if let Some(s) = e.structure() {
                self.add(src.name().as_str(), Some(at), s);
            }
        }
    }
}

/// The stats in the output of `gst-launch-1.0 -m`: lines such as
/// `Got message #12 from element "rec" (element): fanout-bitrate-recorder-stats, …`.
/// The log has no times: each element's n-th stats message is taken as posted at n s.
pub fn from_launch_log(log: &str) -> Timeline {
    let mut tl = Timeline::default();
    for line in log.lines() {
        let Some(rest) = line.split_once(" from element \"").map(|(_, r)| r) else {
            continue;
        };
        let Some((element, structure)) = rest.split_once("\" (element): ") else {
            continue;
        };
        if let Ok(s) = gst::Structure::from_str(structure.trim_end()) {
            tl.add(element, None, &s);
        }
    }
    tl
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_launch_log_gives_its_stats_lines_and_a_png() {
        gst::init().unwrap();
        let mut log = String::from("Setting pipeline to PLAYING ...\n");
        for i in 0..5u64 {
            log += &format!(
                "Got message #{i} from element \"rec\" (element): fanout-bitrate-recorder-stats, input-bitrate=(guint64){}, write-bitrate=(guint64)900000;\n",
                1_000_000 + i * 100_000
            );
            log += &format!(
                "Got message #{i} from element \"rx\" (element): fanout-fec-depayloader-stats, blocks-recovered=(guint64){i}, blocks-lost=(guint64)0;\n"
            );
            log += "Got message #9 from element \"x\" (state-changed): GstMessageStateChanged, old-state=(GstState)GST_STATE_NULL;\n";
        }
        let tl = from_launch_log(&log);
        assert_eq!(tl.bitrates["rec input"].len(), 5);
        assert_eq!(tl.bitrates["rec input"][4], (4.0, 1.4));
        assert_eq!(tl.blocks["rx repaired"][3], (3.0, 3.0));
        let dir = std::env::temp_dir().join(format!("fanout-plot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let png = dir.join("stats.png");
        render(&tl, &png).unwrap();
        let bytes = std::fs::read(&png).unwrap();
        assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
