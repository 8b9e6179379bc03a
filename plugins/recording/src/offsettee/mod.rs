// SPDX-License-Identifier: MPL-2.0

use std::sync::LazyLock;

use gst::glib;
use gst::prelude::*;

mod eos;
mod imp;
mod input;
mod offsets;
mod output;
mod pad;
mod settings;

pub use eos::EosMode;
pub use pad::OffsetTeeSrcPad;

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "offset-tee",
        gst::DebugColorFlags::empty(),
        Some("fanout tee whose outputs each run their own offset behind the input"),
    )
});

glib::wrapper! {
    pub struct OffsetTee(ObjectSubclass<imp::OffsetTee>) @extends gst::Element, gst::Object, @implements gst::ChildProxy;
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    OffsetTeeSrcPad::static_type().mark_as_plugin_api(gst::PluginAPIFlags::empty());
    EosMode::static_type().mark_as_plugin_api(gst::PluginAPIFlags::empty());
    gst::Element::register(
        Some(plugin),
        "offset-tee",
        gst::Rank::NONE,
        OffsetTee::static_type(),
    )
}
