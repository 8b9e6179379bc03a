// SPDX-License-Identifier: MPL-2.0

//! `fanout-offsets` (docs/offset-tee.md): the outputs' offsets set from upstream.

use gst::prelude::*;

use super::CAT;

/// `fanout-offsets`: the offsets of `src_0`, `src_1`, … of `tee` in order, from the content
/// provider. Entries that are not all non-negative integers change nothing; entries for
/// outputs that do not exist are left out, with a warning.
pub fn apply(tee: &gst::Element, s: &gst::StructureRef) {
    let offsets = match crate::offsets_from_structure(s) {
        Ok(offsets) => offsets,
        Err(why) => {
            gst::element_warning!(
                tee,
                gst::StreamError::Format,
                ("Ignoring a {} event: {}", crate::OFFSETS_EVENT, why),
                ["{s}"]
            );
            return;
        }
    };
    let mut missing = Vec::new();
    for (i, offset) in offsets.into_iter().enumerate() {
        let name = format!("src_{i}");
        match tee.static_pad(&name) {
            Some(pad) => pad.set_property("offset", offset),
            None => missing.push(name),
        }
    }
    gst::debug!(CAT, obj = tee, "offsets set from upstream: {s}");
    if !missing.is_empty() {
        gst::element_warning!(
            tee,
            gst::StreamError::Format,
            (
                "A {} event names outputs that do not exist: {}",
                crate::OFFSETS_EVENT,
                missing.join(", ")
            ),
            ["The outputs that exist took their offsets; none is created"]
        );
    }
}
