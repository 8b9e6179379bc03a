// SPDX-License-Identifier: MPL-2.0

//! The properties every element that records has: where, how often durable, segments,
//! retention, backlog and the disk-error policy.

use std::path::PathBuf;

use fanout_element_kit::settings::{put, unknown, Properties, PropertyError};
use fanout_store::WriterConfig;
use gst::glib;
use gst::prelude::*;

use super::{OnDiskError, RecordingConfig, DEFAULT_FLUSH_INTERVAL, DEFAULT_MAX_BACKLOG_BYTES};

pub const PROP_LOCATION: &str = "location";
pub const PROP_FLUSH_INTERVAL: &str = "flush-interval";
pub const PROP_MAX_SEGMENT_TIME: &str = "max-segment-time";
pub const PROP_MAX_SIZE_TIME: &str = "max-size-time";
pub const PROP_MAX_SIZE_BYTES: &str = "max-size-bytes";
pub const PROP_MAX_BACKLOG_BYTES: &str = "max-backlog-bytes";
pub const PROP_ON_DISK_ERROR: &str = "on-disk-error";

pub const DEFAULT_MAX_SEGMENT_TIME: u64 = 10_000_000_000;
pub const DEFAULT_ON_DISK_ERROR: OnDiskError = OnDiskError::StopRecording;

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
            on_disk_error: DEFAULT_ON_DISK_ERROR,
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
            glib::ParamSpecString::builder(PROP_LOCATION)
                .nick("Location")
                .blurb(blurbs.location)
                .mutable_ready()
                .build(),
            glib::ParamSpecUInt64::builder(PROP_FLUSH_INTERVAL)
                .nick("Flush interval")
                .blurb(
                    "Make written data durable (fdatasync) at least this often, in ns; \
                     bounds what a power cut can lose",
                )
                .minimum(1_000_000)
                .default_value(DEFAULT_FLUSH_INTERVAL)
                .mutable_ready()
                .build(),
            glib::ParamSpecUInt64::builder(PROP_MAX_SEGMENT_TIME)
                .nick("Max segment time")
                .blurb(
                    "Start a new segment file at the first keyframe after this much time, \
                     in ns (0 = one segment). Retention removes whole segments",
                )
                .default_value(DEFAULT_MAX_SEGMENT_TIME)
                .mutable_ready()
                .build(),
            glib::ParamSpecUInt64::builder(PROP_MAX_SIZE_TIME)
                .nick("Max size time")
                .blurb(blurbs.retention)
                .default_value(0)
                .mutable_ready()
                .build(),
            glib::ParamSpecUInt64::builder(PROP_MAX_SIZE_BYTES)
                .nick("Max size bytes")
                .blurb("Keep at most this many bytes of the recording (0 = no byte limit)")
                .default_value(0)
                .mutable_ready()
                .build(),
            glib::ParamSpecUInt64::builder(PROP_MAX_BACKLOG_BYTES)
                .nick("Max backlog bytes")
                .blurb(
                    "Bytes allowed to wait for a slow disk before on-disk-error applies \
                     (0 = unlimited)",
                )
                .default_value(DEFAULT_MAX_BACKLOG_BYTES)
                .mutable_ready()
                .build(),
            glib::ParamSpecEnum::builder_with_default(PROP_ON_DISK_ERROR, DEFAULT_ON_DISK_ERROR)
                .nick("On disk error")
                .blurb(blurbs.on_disk_error)
                .mutable_ready()
                .build(),
        ]
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

impl Properties for RecordingSettings {
    fn set(&mut self, name: &str, v: &glib::Value) -> Result<(), PropertyError> {
        match name {
            PROP_LOCATION => self.location = crate::location_from_value(name, v)?,
            PROP_FLUSH_INTERVAL => put(&mut self.flush_interval, name, v)?,
            PROP_MAX_SEGMENT_TIME => put(&mut self.max_segment_time, name, v)?,
            PROP_MAX_SIZE_TIME => put(&mut self.max_size_time, name, v)?,
            PROP_MAX_SIZE_BYTES => put(&mut self.max_size_bytes, name, v)?,
            PROP_MAX_BACKLOG_BYTES => put(&mut self.max_backlog_bytes, name, v)?,
            PROP_ON_DISK_ERROR => put(&mut self.on_disk_error, name, v)?,
            _ => return unknown(name),
        }
        Ok(())
    }

    fn get(&self, name: &str) -> Result<glib::Value, PropertyError> {
        Ok(match name {
            PROP_LOCATION => crate::location_value(&self.location),
            PROP_FLUSH_INTERVAL => self.flush_interval.to_value(),
            PROP_MAX_SEGMENT_TIME => self.max_segment_time.to_value(),
            PROP_MAX_SIZE_TIME => self.max_size_time.to_value(),
            PROP_MAX_SIZE_BYTES => self.max_size_bytes.to_value(),
            PROP_MAX_BACKLOG_BYTES => self.max_backlog_bytes.to_value(),
            PROP_ON_DISK_ERROR => self.on_disk_error.to_value(),
            _ => return unknown(name),
        })
    }
}
