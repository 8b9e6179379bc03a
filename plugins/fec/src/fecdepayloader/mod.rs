// SPDX-License-Identifier: MPL-2.0

use gst::glib;
use gst::prelude::*;

mod imp;

glib::wrapper! {
    pub struct FecDepayloader(ObjectSubclass<imp::FecDepayloader>) @extends gst::Element, gst::Object;
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    gst::Element::register(
        Some(plugin),
        "fec-depayloader",
        gst::Rank::NONE,
        FecDepayloader::static_type(),
    )
}
