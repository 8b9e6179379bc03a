// SPDX-License-Identifier: MPL-2.0

//! The properties every element that records has: where, how often durable, segments,
//! retention, backlog and the disk-error policy.

use std::path::PathBuf;

use fanout_store::WriterConfig;
use gst::glib;
use gst::prelude::*;

use super::{OnDiskError, RecordingConfig, DEFAULT_FLUSH_INTERVAL, DEFAULT_MAX_BACKLOG_BYTES};

pub const DEFAULT_MAX_SEGMENT_TIME: u64 = 10_000_000_000;

#[derive(Debug, Clone)]
pub struct RecordingSettings {
    pub location: Option<PathBuf>,
    pub flush_interval: u64,
    pub max_segment_time: u64,
    pub max_size_time: u64,
    pub max_size_bytes: u64,
    pub max_backlog_bytes: u64,
    pub on_disk_error: OnDiskError,
}

impl Default for RecordingSettings {
    fn default() -> Self {
        RecordingSettings {
            location: None,
            flush_interval: DEFAULT_FLUSH_INTERVAL,
            max_segment_time: DEFAULT_MAX_SEGMENT_TIME,
            max_size_time: 0,
            max_size_bytes: 0,
            max_backlog_bytes: DEFAULT_MAX_BACKLOG_BYTES,
            on_disk_error: OnDiskError::StopRecording,
        }
    }
}

/// What the properties say that differs between elements.
pub struct Blurbs {
    pub location: &'static str,
    pub retention: &'static str,
    pub on_disk_error: &'static str,
}

impl RecordingSettings {
    pub fn param_specs(blurbs: Blurbs) -> Vec<glib::ParamSpec> {
        vec![
            glib::ParamSpecString::builder("location")
                .nick("Location")
                .blurb(blurbs.location)
                .mutable_ready()
                .build(),
            glib::ParamSpecUInt64::builder("flush-interval")
                .nick("Flush interval")
                .blurb(
                    "Make written data durable (fdatasync) at least this often, in ns; \
                     bounds what a power cut can lose",
                )
                .minimum(1_000_000)
                .default_value(DEFAULT_FLUSH_INTERVAL)
                .mutable_ready()
                .build(),
            glib::ParamSpecUInt64::builder("max-segment-time")
                .nick("Max segment time")
                .blurb(
                    "Start a new segment file at the first keyframe after this much time, \
                     in ns (0 = one segment). Retention removes whole segments",
                )
                .default_value(DEFAULT_MAX_SEGMENT_TIME)
                .mutable_ready()
                .build(),
            glib::ParamSpecUInt64::builder("max-size-time")
                .nick("Max size time")
                .blurb(blurbs.retention)
                .default_value(0)
                .mutable_ready()
                .build(),
            glib::ParamSpecUInt64::builder("max-size-bytes")
                .nick("Max size bytes")
                .blurb("Keep at most this many bytes of the recording (0 = no byte limit)")
                .default_value(0)
                .mutable_ready()
                .build(),
            glib::ParamSpecUInt64::builder("max-backlog-bytes")
                .nick("Max backlog bytes")
                .blurb(
                    "Bytes allowed to wait for a slow disk before on-disk-error applies \
                     (0 = unlimited)",
                )
                .default_value(DEFAULT_MAX_BACKLOG_BYTES)
                .mutable_ready()
                .build(),
            glib::ParamSpecEnum::builder_with_default("on-disk-error", OnDiskError::StopRecording)
                .nick("On disk error")
                .blurb(blurbs.on_disk_error)
                .mutable_ready()
                .build(),
        ]
    }

    /// Sets a property of [`Self::param_specs`]; false for another one.
    pub fn set(&mut self, name: &str, value: &glib::Value) -> bool {
        match name {
            "location" => self.location = crate::location_from_value(value),
            "flush-interval" => self.flush_interval = value.get().unwrap(),
            "max-segment-time" => self.max_segment_time = value.get().unwrap(),
            "max-size-time" => self.max_size_time = value.get().unwrap(),
            "max-size-bytes" => self.max_size_bytes = value.get().unwrap(),
            "max-backlog-bytes" => self.max_backlog_bytes = value.get().unwrap(),
            "on-disk-error" => self.on_disk_error = value.get().unwrap(),
            _ => return false,
        }
        true
    }

    /// A property of [`Self::param_specs`]; `None` for another one.
    pub fn get(&self, name: &str) -> Option<glib::Value> {
        Some(match name {
            "location" => self
                .location
                .as_ref()
                .map(|l| l.display().to_string())
                .to_value(),
            "flush-interval" => self.flush_interval.to_value(),
            "max-segment-time" => self.max_segment_time.to_value(),
            "max-size-time" => self.max_size_time.to_value(),
            "max-size-bytes" => self.max_size_bytes.to_value(),
            "max-backlog-bytes" => self.max_backlog_bytes.to_value(),
            "on-disk-error" => self.on_disk_error.to_value(),
            _ => return None,
        })
    }

    /// The recording to start in `location`, keeping at most `max_size_time` and
    /// `max_size_bytes`.
    pub fn config(
        &self,
        location: PathBuf,
        max_size_time: u64,
        max_size_bytes: u64,
    ) -> RecordingConfig {
        RecordingConfig {
            location,
            flush_interval: self.flush_interval,
            store: WriterConfig {
                max_segment_time: self.max_segment_time,
                max_size_time,
                max_size_bytes,
                keep_existing: false,
            },
            max_backlog_bytes: self.max_backlog_bytes,
            on_disk_error: self.on_disk_error,
        }
    }
}
