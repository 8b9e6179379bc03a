// SPDX-License-Identifier: MPL-2.0
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Once, OnceLock};
use std::time::Duration;

use gst::prelude::*;

pub fn init() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        gst::init().unwrap();
        gstfanoutfec::plugin_register_static().unwrap();
    });
}

/// A 10 s H.264 MPEG-TS clip made once per test run (about 5 MB: noise does not compress).
pub fn ts_file() -> &'static Path {
    static FILE: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &FILE
        .get_or_init(|| {
            init();
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("clip.ts");
            run(&format!(
                "videotestsrc num-buffers=250 pattern=snow ! video/x-raw,width=320,height=240,framerate=25/1 \
                 ! x264enc bitrate=4000 key-int-max=50 speed-preset=ultrafast ! mpegtsmux \
                 ! filesink location={}",
                path.display()
            ));
            (dir, path)
        })
        .1
}

pub fn pipeline(description: &str) -> gst::Pipeline {
    init();
    gst::parse::launch(description)
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap()
}

/// The element `name` of `pipeline` as `T` (an `appsrc` or `appsink`, say).
pub fn element<T: IsA<gst::Element>>(pipeline: &gst::Pipeline, name: &str) -> T {
    pipeline.by_name(name).unwrap().downcast::<T>().unwrap()
}

/// Runs a pipeline to EOS (at most two minutes); panics on an error message.
pub fn run(description: &str) -> gst::Pipeline {
    let pipeline = pipeline(description);
    run_pipeline(&pipeline);
    pipeline
}

pub fn run_pipeline(pipeline: &gst::Pipeline) -> Vec<String> {
    let bus = pipeline.bus().unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let mut warnings = Vec::new();
    let result = loop {
        let Some(msg) = bus.timed_pop(gst::ClockTime::from_seconds(120)) else {
            break Err("timed out".to_string());
        };
        match msg.view() {
            gst::MessageView::Eos(_) => break Ok(()),
            gst::MessageView::Error(e) => break Err(format!("{} ({:?})", e.error(), e.debug())),
            gst::MessageView::Warning(w) => {
                warnings.push(format!("{} ({:?})", w.error(), w.debug()))
            }
            _ => (),
        }
    };
    pipeline.set_state(gst::State::Null).unwrap();
    result.unwrap();
    warnings
}

pub fn stats(pipeline: &gst::Pipeline, name: &str) -> gst::Structure {
    pipeline
        .by_name(name)
        .unwrap()
        .property::<gst::Structure>("stats")
}

pub fn stat(pipeline: &gst::Pipeline, name: &str, field: &str) -> u64 {
    stats(pipeline, name).get::<u64>(field).unwrap()
}

/// Drops the packets leaving element `name` for which `drop(n)` is true (n counts from 0).
pub fn drop_packets(
    pipeline: &gst::Pipeline,
    name: &str,
    drop: impl Fn(u64) -> bool + Send + Sync + 'static,
) -> Arc<Mutex<u64>> {
    let seen = Arc::new(Mutex::new(0u64));
    let counter = seen.clone();
    let pad = pipeline.by_name(name).unwrap().static_pad("src").unwrap();
    pad.add_probe(
        gst::PadProbeType::BUFFER | gst::PadProbeType::BUFFER_LIST,
        move |_, info| {
            let mut n = counter.lock().unwrap();
            match info.data.as_mut() {
                Some(gst::PadProbeData::Buffer(_)) => {
                    let d = drop(*n);
                    *n += 1;
                    if d {
                        return gst::PadProbeReturn::Drop;
                    }
                }
                Some(gst::PadProbeData::BufferList(list)) => {
                    let mut kept = gst::BufferList::new();
                    for b in list.iter_owned() {
                        if !drop(*n) {
                            kept.get_mut().unwrap().add(b);
                        }
                        *n += 1;
                    }
                    *list = kept;
                }
                _ => (),
            }
            gst::PadProbeReturn::Ok
        },
    );
    seen
}

/// The header of a symbol packet, through the parser; `None` for other packets.
pub fn symbol_header(p: &gst::BufferRef) -> Option<fanout_fec::packet::SymbolHeader> {
    let map = p.map_readable().ok()?;
    match fanout_fec::packet::parse(&map) {
        Ok(fanout_fec::packet::Packet::Symbol { header, .. }) => Some(header),
        _ => None,
    }
}

pub fn assert_same_file(a: &Path, b: &Path) {
    let (x, y) = (std::fs::read(a).unwrap(), std::fs::read(b).unwrap());
    let first_diff = x.iter().zip(&y).position(|(p, q)| p != q);
    assert!(
        x == y,
        "{} ({} bytes) and {} ({} bytes) differ, first at {first_diff:?}",
        a.display(),
        x.len(),
        b.display(),
        y.len()
    );
}

pub const SECOND: Duration = Duration::from_secs(1);

/// The receiver on a port of its own, writing what it rebuilds to `received`.
pub fn udp_receiver(received: &Path) -> (gst::Pipeline, u16) {
    let receiver = pipeline(&format!(
        "udpsrc port=0 name=src caps=application/x-fanout-fec buffer-size=4194304 \
         ! fec-depayloader name=depay ! filesink location={} async=false",
        received.display()
    ));
    receiver.set_state(gst::State::Playing).unwrap();
    let port = receiver.by_name("src").unwrap().property::<i32>("port");
    (receiver, u16::try_from(port).unwrap())
}
