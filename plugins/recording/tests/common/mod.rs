// SPDX-License-Identifier: MPL-2.0
#![allow(dead_code)]

use std::path::Path;
use std::sync::{Arc, Mutex, Once};
use std::time::Duration;

use gst::prelude::*;
use gst_check::Harness;

pub const MS: u64 = 1_000_000;
pub const TS_CAPS: &str = "video/mpegts, systemstream=(boolean)true, packetsize=(int)188";

pub fn init() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        gst::init().unwrap();
        gstfanoutrecording::plugin_register_static().unwrap();
    });
}

/// The bytes of buffer `i`: distinct per buffer and of varying size.
pub fn payload(i: u64) -> Vec<u8> {
    (0..(188 * (1 + i % 7)))
        .map(|b| (b as u8) ^ (i as u8).wrapping_mul(31))
        .collect()
}

pub fn buffer(i: u64, spacing_ms: u64) -> gst::Buffer {
    let mut b = gst::Buffer::from_mut_slice(payload(i));
    {
        let b = b.get_mut().unwrap();
        b.set_pts(gst::ClockTime::from_nseconds(i * spacing_ms * MS));
        b.set_duration(gst::ClockTime::from_nseconds(spacing_ms * MS));
        if !i.is_multiple_of(10) {
            b.set_flags(gst::BufferFlags::DELTA_UNIT);
        }
    }
    b
}

/// One element made from a gst-launch description, with a bus of its own so
/// tests can read its errors and warnings.
pub fn element(description: &str) -> gst::Element {
    let element = gst::parse::launch(description).unwrap();
    element.set_bus(Some(&gst::Bus::new()));
    element
}

/// A harness around [`element`].
pub fn harness(description: &str) -> Harness {
    let element = element(description);
    let has_sink = element.static_pad("sink").is_some();
    Harness::with_element(&element, has_sink.then_some("sink"), Some("src"))
}

pub fn recorder(dir: &Path, props: &str) -> Harness {
    let mut h = harness(&format!(
        "bitrate-recorder location={} {props}",
        dir.display()
    ));
    h.set_src_caps_str(TS_CAPS);
    h
}

/// Records `n` buffers `spacing_ms` apart through a recorder harness and
/// stops it, as a finished recording.
pub fn record(dir: &Path, n: u64, spacing_ms: u64) {
    let mut h = recorder(dir, "max-segment-time=500000000");
    h.play();
    for i in 0..n {
        h.push(buffer(i, spacing_ms)).unwrap();
    }
    h.push_event(gst::event::Eos::new());
    stop(h);
}

pub fn stop(h: Harness) {
    h.element().unwrap().set_state(gst::State::Null).unwrap();
}

pub fn player(dir: &Path, props: &str) -> Harness {
    harness(&format!(
        "bitrate-player location={} {props}",
        dir.display()
    ))
}

/// Pulls buffers until EOS.
pub fn pull_all(h: &mut Harness) -> Vec<gst::Buffer> {
    let mut out = Vec::new();
    loop {
        match h.pull_until_eos() {
            Ok(Some(b)) => out.push(b),
            Ok(None) => return out,
            Err(e) => panic!("pull failed: {e}"),
        }
    }
}

pub fn bytes(b: &gst::Buffer) -> Vec<u8> {
    b.map_readable().unwrap().to_vec()
}

/// Messages of `ty` posted on the harness element's bus so far.
pub fn bus_messages(h: &Harness, ty: gst::MessageType) -> Vec<gst::Message> {
    element_messages(&h.element().unwrap(), ty)
}

pub fn element_messages(e: &gst::Element, ty: gst::MessageType) -> Vec<gst::Message> {
    let bus = e.bus().unwrap();
    std::iter::from_fn(|| bus.pop_filtered(&[ty])).collect()
}

/// Text (message and debug details) of the errors or warnings posted so far.
pub fn bus_text(h: &Harness, ty: gst::MessageType) -> String {
    element_text(&h.element().unwrap(), ty)
}

pub fn element_text(e: &gst::Element, ty: gst::MessageType) -> String {
    let mut out = String::new();
    for m in element_messages(e, ty) {
        let (err, debug) = match m.view() {
            gst::MessageView::Error(e) => (e.error(), e.debug()),
            gst::MessageView::Warning(w) => (w.error(), w.debug()),
            _ => continue,
        };
        out += &format!("{err} | {}\n", debug.unwrap_or_default());
    }
    out
}

/// Plays to EOS; panics on an error or after `timeout`.
pub fn run_to_eos(pipeline: &gst::Pipeline, timeout: Duration) {
    let bus = pipeline.bus().unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let msg = bus.timed_pop_filtered(
        gst::ClockTime::from_nseconds(timeout.as_nanos() as u64),
        &[gst::MessageType::Eos, gst::MessageType::Error],
    );
    pipeline.set_state(gst::State::Null).unwrap();
    match msg.as_ref().map(|m| m.view()) {
        Some(gst::MessageView::Eos(_)) => (),
        Some(gst::MessageView::Error(e)) => panic!("{} {:?}", e.error(), e.debug()),
        _ => panic!("no EOS within {timeout:?}"),
    }
}

pub fn pipeline(description: &str) -> gst::Pipeline {
    init();
    gst::parse::launch(description)
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap()
}

/// What `f` makes of each buffer the element `name` (`identity`, `fakesink`) hands off.
pub fn on_handoff<T: Send + 'static>(
    pipeline: &gst::Pipeline,
    name: &str,
    f: impl Fn(&gst::Buffer) -> T + Send + Sync + 'static,
) -> Arc<Mutex<Vec<T>>> {
    let got = Arc::new(Mutex::new(Vec::new()));
    let element = pipeline.by_name(name).unwrap();
    element.set_property("signal-handoffs", true);
    let g = got.clone();
    element.connect("handoff", false, move |args| {
        let buffer = args[1].get::<gst::Buffer>().unwrap();
        g.lock().unwrap().push(f(&buffer));
        None
    });
    got
}
