// SPDX-License-Identifier: MPL-2.0

use gst::glib;
use gst::prelude::*;

mod imp;
mod settings;

glib::wrapper! {
    pub struct BitratePlayer(ObjectSubclass<imp::BitratePlayer>) @extends gst_base::PushSrc, gst_base::BaseSrc, gst::Element, gst::Object;
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    gst::Element::register(
        Some(plugin),
        "bitrate-player",
        gst::Rank::NONE,
        BitratePlayer::static_type(),
    )
}
