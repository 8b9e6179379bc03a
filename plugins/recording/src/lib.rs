// SPDX-License-Identifier: MPL-2.0
#![allow(clippy::non_send_fields_in_send_ty)]

//! fanout recording plugin: `bitrate-recorder` writes a stream to a fanout
//! store at the rate it arrives while passing it on; `bitrate-player` reads a
//! store back at its recorded rate, also while it is still being written; `offset-tee`
//! serves one input to many outputs, each its own offset behind, from the same store.

use gst::glib;
use gst::prelude::*;

mod bitrateplayer;
mod bitraterecorder;
mod offsettee;
pub mod playout;
mod recording;
pub mod window;

pub use bitrateplayer::BitratePlayer;
pub use bitraterecorder::BitrateRecorder;
pub use offsettee::{OffsetTee, OffsetTeeSrcPad};
pub use recording::OnDiskError;

/// A `location` property value: an empty string means unset.
fn location_from_value(value: &glib::Value) -> Option<std::path::PathBuf> {
    value
        .get::<Option<String>>()
        .expect("type checked upstream")
        .filter(|l| !l.is_empty())
        .map(std::path::PathBuf::from)
}

/// Tags as the store keeps them (`gst_tag_list_to_string`), read back.
fn tags_from_string(tags: &str) -> Option<gst::TagList> {
    glib::Value::deserialize(tags, gst::TagList::static_type())
        .ok()
        .and_then(|v| v.get::<gst::TagList>().ok())
}

fn plugin_init(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    bitraterecorder::register(plugin)?;
    bitrateplayer::register(plugin)?;
    offsettee::register(plugin)?;
    Ok(())
}

gst::plugin_define!(
    fanoutrecording,
    env!("CARGO_PKG_DESCRIPTION"),
    plugin_init,
    env!("CARGO_PKG_VERSION"),
    // GStreamer's name for MPL-2.0.
    "MPL",
    env!("CARGO_PKG_NAME"),
    "fanout",
    env!("CARGO_PKG_REPOSITORY"),
    "2026-11-23"
);
