// SPDX-License-Identifier: MPL-2.0

use std::sync::LazyLock;

use gst::glib;
use gst::prelude::*;

mod control;
mod hold;
mod imp;
mod pad;
mod send;
mod settings;
mod shared;
mod stats;
mod tcp;
mod wire;

pub use pad::SessionSinkPad;
pub use settings::DEFAULT_PORT;

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "session-sink",
        gst::DebugColorFlags::empty(),
        Some("fanout session sink: independent receiver sessions, UDP GSO fan-out"),
    )
});

glib::wrapper! {
    pub struct SessionSink(ObjectSubclass<imp::SessionSink>) @extends gst::Element, gst::Object, @implements gst::ChildProxy;
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    SessionSinkPad::static_type().mark_as_plugin_api(gst::PluginAPIFlags::empty());
    gst::Element::register(
        Some(plugin),
        "session-sink",
        gst::Rank::NONE,
        SessionSink::static_type(),
    )
}
