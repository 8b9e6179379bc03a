// SPDX-License-Identifier: MPL-2.0

//! Request pads numbered `<prefix><n>`, exposed as the element's children (`ChildProxy`) so
//! that `gst-launch-1.0 … name::property=value` works before the pad is linked: a child asked
//! for by a name that is not there yet is requested on the spot.

use gst::glib;
use gst::prelude::*;

/// The pad a request for `name` gets, with its number: `name` as asked (it must be
/// `<prefix><n>` with `n` below `limit` and free), or, with no name, the first free number.
pub fn request_name(
    element: &gst::Element,
    prefix: &str,
    name: Option<&str>,
    limit: u32,
) -> Option<(String, u32)> {
    let name = match name {
        Some(n) => n.to_owned(),
        None => (0..limit)
            .map(|i| format!("{prefix}{i}"))
            .find(|n| element.static_pad(n).is_none())?,
    };
    let index: u32 = name.strip_prefix(prefix)?.parse().ok()?;
    // `sink_01` would be a second name for `sink_1`.
    if index >= limit || name != format!("{prefix}{index}") || element.static_pad(&name).is_some() {
        return None;
    }
    Some((name, index))
}

/// Adds a requested pad, active if the element is (or is going) past READY, and says so to
/// `ChildProxy` watchers.
pub fn add_requested(element: &gst::Element, pad: &impl IsA<gst::Pad>) -> bool {
    let pad = pad.as_ref();
    if element.current_state() >= gst::State::Paused
        || element.pending_state() >= gst::State::Paused
    {
        let _ = pad.set_active(true);
    }
    if element.add_pad(pad).is_err() {
        return false;
    }
    if let Some(proxy) = element.dynamic_cast_ref::<gst::ChildProxy>() {
        proxy.child_added(pad, &pad.name());
    }
    true
}

/// Takes a requested pad out again.
pub fn remove_requested(element: &gst::Element, pad: &gst::Pad) {
    let _ = pad.set_active(false);
    let _ = element.remove_pad(pad);
    if let Some(proxy) = element.dynamic_cast_ref::<gst::ChildProxy>() {
        proxy.child_removed(pad, &pad.name());
    }
}

/// `ChildProxy::child_by_index` over the pads of `direction`.
pub fn child_by_index(
    element: &gst::Element,
    direction: gst::PadDirection,
    index: u32,
) -> Option<glib::Object> {
    pads(element, direction)
        .into_iter()
        .nth(index as usize)
        .map(|p| p.upcast())
}

/// `ChildProxy::children_count` over the pads of `direction`.
pub fn children_count(element: &gst::Element, direction: gst::PadDirection) -> u32 {
    pads(element, direction).len() as u32
}

/// `ChildProxy::child_by_name`: the pad, requested now if it is not there yet
/// (`gst-launch-1.0` sets pad properties before it links).
pub fn child_by_name(element: &gst::Element, name: &str) -> Option<glib::Object> {
    element
        .static_pad(name)
        .or_else(|| element.request_pad_simple(name))
        .map(|p| p.upcast())
}

fn pads(element: &gst::Element, direction: gst::PadDirection) -> Vec<gst::Pad> {
    match direction {
        gst::PadDirection::Src => element.src_pads(),
        _ => element.sink_pads(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_taken_as_asked_or_the_first_free_number() {
        gst::init().unwrap();
        let tee = gst::ElementFactory::make("tee").build().unwrap();
        let e = tee.upcast_ref::<gst::Element>();
        assert_eq!(request_name(e, "src_", None, 8), Some(("src_0".into(), 0)));
        let _p0 = tee.request_pad_simple("src_0").unwrap();
        assert_eq!(request_name(e, "src_", None, 8), Some(("src_1".into(), 1)));
        assert_eq!(request_name(e, "src_", Some("src_0"), 8), None, "taken");
        assert_eq!(
            request_name(e, "src_", Some("src_5"), 8),
            Some(("src_5".into(), 5))
        );
        assert_eq!(
            request_name(e, "src_", Some("src_8"), 8),
            None,
            "over the limit"
        );
        assert_eq!(
            request_name(e, "src_", Some("src_05"), 8),
            None,
            "a second name"
        );
        assert_eq!(request_name(e, "src_", Some("sink_1"), 8), None);
        assert_eq!(request_name(e, "src_", Some("src_x"), 8), None);
        let _p1 = tee.request_pad_simple("src_1").unwrap();
        assert_eq!(request_name(e, "src_", None, 2), None, "all taken");
        assert_eq!(children_count(e, gst::PadDirection::Src), 2);
        assert!(child_by_index(e, gst::PadDirection::Src, 1).is_some());
        assert!(child_by_index(e, gst::PadDirection::Src, 2).is_none());
        assert!(child_by_name(e, "src_1").is_some());
    }
}
