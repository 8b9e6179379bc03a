// SPDX-License-Identifier: MPL-2.0

use gst::glib;
use gst::prelude::*;

mod imp;

glib::wrapper! {
    pub struct FecPayloader(ObjectSubclass<imp::FecPayloader>) @extends gst::Element, gst::Object;
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    gst::Element::register(
        Some(plugin),
        "fec-payloader",
        gst::Rank::NONE,
        FecPayloader::static_type(),
    )
}
