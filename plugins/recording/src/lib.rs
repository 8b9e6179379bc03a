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

pub use bitrateplayer::BitratePlayer;
pub use bitraterecorder::BitrateRecorder;
pub use offsettee::{OffsetTee, OffsetTeeSrcPad};
pub use recording::OnDiskError;

/// A `location` property value: an empty string means unset.
fn location_from_value(
    name: &str,
    value: &glib::Value,
) -> Result<Option<std::path::PathBuf>, fanout_element_kit::settings::PropertyError> {
    Ok(
        fanout_element_kit::settings::value::<Option<String>>(name, value)?
            .filter(|l| !l.is_empty())
            .map(std::path::PathBuf::from),
    )
}

/// A location as its property reads.
fn location_value(location: &Option<std::path::PathBuf>) -> glib::Value {
    location
        .as_ref()
        .map(|l| l.display().to_string())
        .to_value()
}

/// Name of the serialized custom downstream event that sets `offset-tee`'s offsets.
pub const OFFSETS_EVENT: &str = "fanout-offsets";

/// Builds a `fanout-offsets` event: the offsets (ns) of `offset-tee`'s `src_0`, `src_1`, … in
/// order, sent from upstream (an application's `appsrc`, a content provider's element).
pub fn offsets_event(offsets: &[u64]) -> gst::Event {
    let array = gst::Array::new(offsets.iter().map(|o| o.to_send_value()));
    let s = gst::Structure::builder(OFFSETS_EVENT)
        .field("offsets", array)
        .build();
    gst::event::CustomDownstream::new(s)
}

/// The offsets a `fanout-offsets` structure carries: an array or list of non-negative
/// integers (any integer type).
fn offsets_from_structure(s: &gst::StructureRef) -> Result<Vec<u64>, String> {
    let value = s
        .value("offsets")
        .map_err(|_| "it has no offsets field".to_string())?;
    let values: Vec<glib::SendValue> = if let Ok(a) = value.get::<gst::Array>() {
        a.iter().cloned().collect()
    } else if let Ok(l) = value.get::<gst::List>() {
        l.iter().cloned().collect()
    } else {
        return Err(format!("offsets is a {}, not a list of ns", value.type_()));
    };
    values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let n = if let Ok(n) = v.get::<u64>() {
                Some(i128::from(n))
            } else if let Ok(n) = v.get::<i64>() {
                Some(i128::from(n))
            } else if let Ok(n) = v.get::<u32>() {
                Some(i128::from(n))
            } else if let Ok(n) = v.get::<i32>() {
                Some(i128::from(n))
            } else {
                None
            };
            match n {
                Some(n) if (0..=i128::from(gst::ClockTime::MAX.nseconds())).contains(&n) => {
                    Ok(n as u64)
                }
                Some(n) => Err(format!("offset {i} is {n}, out of range")),
                None => Err(format!("offset {i} is a {}, not an integer", v.type_())),
            }
        })
        .collect()
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
