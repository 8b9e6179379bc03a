// SPDX-License-Identifier: MPL-2.0

use gst::glib;
use gst::prelude::*;

mod control;
mod hold;
mod imp;
mod pad;
mod tcp;
mod wire;

pub use imp::DEFAULT_PORT;
pub use pad::SessionSinkPad;

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
