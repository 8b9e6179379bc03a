// SPDX-License-Identifier: MPL-2.0

//! offset-tee at the seams of a run: its start, a restart on the same store, its stop, and a
//! live change of offset. Nothing may be lost at any of them.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use gst::prelude::*;

fn pipeline(description: &str) -> gst::Pipeline {
    init();
    gst::parse::launch(description)
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap()
}

/// Counts the bytes the element `name` hands off (`identity` or `fakesink`).
fn count_bytes(pipeline: &gst::Pipeline, name: &str) -> Arc<AtomicU64> {
    let n = Arc::new(AtomicU64::new(0));
    let element = pipeline.by_name(name).unwrap();
    element.set_property("signal-handoffs", true);
    let c = n.clone();
    element.connect("handoff", false, move |args| {
        let buffer = args[1].get::<gst::Buffer>().unwrap();
        c.fetch_add(buffer.size() as u64, Ordering::SeqCst);
        None
    });
    n
}

/// Plays to EOS; panics on an error or after `timeout`.
fn run_to_eos(pipeline: &gst::Pipeline, timeout: Duration) {
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

/// Issue 15 (4): a non-live input pushed as fast as it goes, `sync=false`, one output looping
/// twice and one plain. Each run must deliver every byte: the plain output the input once,
/// the looping one three times. Repeated, since a startup race shows only now and then.
/// (An output task placed only after the input had sent some buffers started at the newest;
/// a buffer arriving while the pipeline went to PLAYING got the clock's absolute time as its
/// arrival, so store time jumped and retention removed what came before.)
#[test]
fn at_startup_no_output_misses_a_buffer_of_a_fast_non_live_input() {
    const RUNS: usize = 40;
    let mut short = Vec::new();
    for run in 0..RUNS {
        // Every other run timestamped (10 ms a buffer), as an encoder's output is.
        let timed = if run % 2 == 0 { "datarate=131600" } else { "" };
        let p = pipeline(&format!(
            "fakesrc num-buffers=60 sizetype=fixed sizemax=1316 filltype=pattern-span {timed} \
             ! identity name=in ! offset-tee name=t sync=false src_0::loop=2 \
             t.src_0 ! fakesink name=looped sync=false t.src_1 ! fakesink name=plain sync=false",
        ));
        let input = count_bytes(&p, "in");
        let looped = count_bytes(&p, "looped");
        let plain = count_bytes(&p, "plain");
        run_to_eos(&p, Duration::from_secs(60));
        let (i, l, n) = (
            input.load(Ordering::SeqCst),
            looped.load(Ordering::SeqCst),
            plain.load(Ordering::SeqCst),
        );
        assert_eq!(i, 60 * 1316);
        if n != i || l != 3 * i {
            short.push(format!(
                "run {run}: plain {n}, looped {l} of {i} / {}",
                3 * i
            ));
        }
    }
    assert!(
        short.is_empty(),
        "{} of {RUNS} runs lost bytes: {short:#?}",
        short.len()
    );
}
