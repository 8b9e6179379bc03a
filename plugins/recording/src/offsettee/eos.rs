// SPDX-License-Identifier: MPL-2.0

//! What `offset-tee`'s outputs do once the input has ended (`eos-mode`).

use gst::glib;

#[derive(Debug, Eq, PartialEq, Hash, Clone, Copy, Default, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstFanoutOffsetTeeEosMode")]
pub enum EosMode {
    /// Stopping (`gst-launch-1.0 -e`) must not wait an hour behind a delayed output.
    #[default]
    #[enum_value(
        name = "End at once: once the store is complete, each output sends what was due by \
                then (what the input sent up to its end less the offset) and EOS; no loops",
        nick = "end"
    )]
    End = 0,
    #[enum_value(
        name = "Play out: each output plays what is stored after the input's end, at its \
                offset, then its loops, then EOS (file-based NVOD)",
        nick = "play-out"
    )]
    PlayOut = 1,
}

/// In `end` mode, whether an output `offset` behind stops before the buffer at store time
/// `st`: it only had to reach the input's last buffer (`last_st`) less its offset.
pub fn ends_before(mode: EosMode, last_st: Option<u64>, st: u64, offset: u64) -> bool {
    mode == EosMode::End && last_st.is_some_and(|last| st.saturating_add(offset) > last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn end_mode_cuts_after_the_input_end_less_the_offset() {
        let s = 1_000_000_000;
        // Without offset, everything the input sent goes out.
        assert!(!ends_before(EosMode::End, Some(10 * s), 10 * s, 0));
        // An hour behind: nothing more.
        assert!(ends_before(EosMode::End, Some(10 * s), 0, 3600 * s));
        assert!(ends_before(EosMode::End, Some(0), 0, 1));
        assert!(ends_before(EosMode::End, Some(10 * s), 8 * s + 1, 2 * s));
        assert!(
            !ends_before(EosMode::End, None, 20 * s, 0),
            "input going on"
        );
        assert!(!ends_before(EosMode::PlayOut, Some(0), 20 * s, 0));
    }
}
