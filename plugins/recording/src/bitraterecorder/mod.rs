// SPDX-License-Identifier: MPL-2.0

use gst::glib;
use gst::prelude::*;

mod imp;

glib::wrapper! {
    pub struct BitrateRecorder(ObjectSubclass<imp::BitrateRecorder>) @extends gst::Element, gst::Object;
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    gst::Element::register(
        Some(plugin),
        "bitrate-recorder",
        gst::Rank::NONE,
        BitrateRecorder::static_type(),
    )
}
