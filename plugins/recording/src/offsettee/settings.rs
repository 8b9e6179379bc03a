// SPDX-License-Identifier: MPL-2.0

//! `offset-tee`'s properties, and those of its output pads: names, defaults, specs and
//! values.

use fanout_element_kit::settings::{put, unknown, Properties, PropertyError};
use gst::glib;
use gst::prelude::*;

use super::eos::EosMode;
use crate::recording::{Blurbs, RecordingSettings};

pub const PROP_SYNC: &str = "sync";
pub const PROP_EOS_MODE: &str = "eos-mode";
pub const PROP_OFFSET: &str = "offset";
pub const PROP_LOOP: &str = "loop";

pub const DEFAULT_SYNC: bool = true;
pub const DEFAULT_EOS_MODE: EosMode = EosMode::End;
pub const DEFAULT_OFFSET: u64 = 0;
pub const DEFAULT_LOOP: i32 = 0;

#[derive(Debug, Clone)]
pub struct Settings {
    pub recording: RecordingSettings,
    pub sync: bool,
    pub eos_mode: EosMode,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            recording: RecordingSettings::default(),
            sync: DEFAULT_SYNC,
            eos_mode: DEFAULT_EOS_MODE,
        }
    }
}

impl Settings {
    pub fn param_specs() -> Vec<glib::ParamSpec> {
        let mut specs = RecordingSettings::param_specs(Blurbs {
            location: "Directory of the store behind the outputs (a fanout recording: bitrate-player plays it); unset: a private temporary directory, removed on stop. With a location, a restarted pipeline resumes with what was stored",
            retention: "Keep at most this much store time (ns); 0 (with max-size-bytes 0) = the largest offset plus 10 s, following the offsets",
            on_disk_error: "What a write error or a full disk does: stop-recording keeps the outputs served from memory flowing",
        });
        specs.push(
            glib::ParamSpecBoolean::builder(PROP_SYNC)
                .nick("Sync")
                .blurb("Release each buffer on the pipeline clock at its time (input arrival + offset), whatever the sink does; false: as fast as downstream takes them, timestamps still shifted")
                .default_value(DEFAULT_SYNC)
                .mutable_playing()
                .build(),
        );
        specs.push(
            glib::ParamSpecEnum::builder_with_default(PROP_EOS_MODE, DEFAULT_EOS_MODE)
                .nick("EOS mode")
                .blurb("What the outputs do when the input ends. end: once the store is complete on disk, each output sends what was due by then (up to the input's end less its offset) and EOS, without loops, so gst-launch-1.0 -e stops within seconds whatever the offsets; play-out: each output plays what is stored after the input's end at its offset, then its loop plays, then EOS (file-based NVOD)")
                .mutable_playing()
                .build(),
        );
        specs
    }
}

impl Properties for Settings {
    fn set(&mut self, name: &str, v: &glib::Value) -> Result<(), PropertyError> {
        match name {
            PROP_SYNC => put(&mut self.sync, name, v),
            PROP_EOS_MODE => put(&mut self.eos_mode, name, v),
            _ => self.recording.set(name, v),
        }
    }

    fn get(&self, name: &str) -> Result<glib::Value, PropertyError> {
        match name {
            PROP_SYNC => Ok(self.sync.to_value()),
            PROP_EOS_MODE => Ok(self.eos_mode.to_value()),
            _ => self.recording.get(name),
        }
    }
}

/// An output pad's own settings.
#[derive(Debug, Clone, Copy)]
pub struct PadSettings {
    /// ns behind the input.
    pub offset: u64,
    /// Plays of the stored content after the input's end: 0 none, -1 forever.
    pub loops: i32,
}

impl Default for PadSettings {
    fn default() -> Self {
        PadSettings {
            offset: DEFAULT_OFFSET,
            loops: DEFAULT_LOOP,
        }
    }
}

impl PadSettings {
    pub fn param_specs() -> Vec<glib::ParamSpec> {
        vec![
            glib::ParamSpecUInt64::builder(PROP_OFFSET)
                .nick("Offset")
                .blurb("How far this output runs behind the input (ns); changed while playing, the output jumps to the input position now - offset (the keyframe at or before it, when the stream marks keyframes), with DISCONT, its running time going on")
                .maximum(gst::ClockTime::MAX.nseconds())
                .default_value(DEFAULT_OFFSET)
                .mutable_playing()
                .build(),
            glib::ParamSpecInt::builder(PROP_LOOP)
                .nick("Loop")
                .blurb("After the input ends, play the stored content this many more times (-1 = forever), timestamps going on; only with the element's eos-mode=play-out")
                .minimum(-1)
                .default_value(DEFAULT_LOOP)
                .mutable_playing()
                .build(),
        ]
    }
}

impl Properties for PadSettings {
    fn set(&mut self, name: &str, v: &glib::Value) -> Result<(), PropertyError> {
        match name {
            PROP_OFFSET => put(&mut self.offset, name, v),
            PROP_LOOP => put(&mut self.loops, name, v),
            _ => unknown(name),
        }
    }

    fn get(&self, name: &str) -> Result<glib::Value, PropertyError> {
        match name {
            PROP_OFFSET => Ok(self.offset.to_value()),
            PROP_LOOP => Ok(self.loops.to_value()),
            _ => unknown(name),
        }
    }
}
