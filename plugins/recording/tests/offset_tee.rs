// SPDX-License-Identifier: MPL-2.0

//! offset-tee in live pipelines, measured from the application's side: each output's buffers
//! arrive their offset after the input's, with the same bytes; offsets change while playing;
//! outputs loop, come and go while playing.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use gst::prelude::*;

/// What one output's sink got: each buffer with the moment it arrived.
#[derive(Default)]
struct Got {
    buffers: Vec<(Duration, gst::Buffer)>,
    caps: Option<gst::Caps>,
}

impl Got {
    fn bytes(&self) -> Vec<u8> {
        self.buffers
            .iter()
            .flat_map(|(_, b)| b.map_readable().unwrap().to_vec())
            .collect()
    }

    fn first_arrival(&self) -> Duration {
        self.buffers.first().expect("no buffer").0
    }
}

/// Collects what the fakesink called `name` gets, timed from `start`.
fn collect(pipeline: &gst::Pipeline, name: &str, start: Instant) -> Arc<Mutex<Got>> {
    let got = Arc::new(Mutex::new(Got::default()));
    let sink = pipeline.by_name(name).unwrap();
    sink.set_property("signal-handoffs", true);
    let g = got.clone();
    sink.connect("handoff", false, move |args| {
        let buffer = args[1].get::<gst::Buffer>().unwrap();
        let pad = args[2].get::<gst::Pad>().unwrap();
        let mut g = g.lock().unwrap();
        g.caps = pad.current_caps();
        g.buffers.push((start.elapsed(), buffer));
        None
    });
    got
}

/// A live H.264/MPEG-TS signal of `frames` frames at 25 fps.
fn live_ts(frames: u32) -> String {
    format!(
        "videotestsrc is-live=true num-buffers={frames} pattern=ball ! video/x-raw,width=320,height=240,framerate=25/1 \
         ! x264enc tune=zerolatency bitrate=500 key-int-max=25 speed-preset=ultrafast ! mpegtsmux alignment=7"
    )
}

const SECOND: Duration = Duration::from_secs(1);
/// Two frames at 25 fps.
const TWO_FRAMES: Duration = Duration::from_millis(80);

#[test]
fn each_output_arrives_its_offset_later_with_the_same_bytes() {
    let p = pipeline(&format!(
        "{} ! offset-tee name=t eos-mode=play-out src_0::offset=0 src_1::offset=1000000000 src_2::offset=2000000000 \
         t.src_0 ! fakesink name=a sync=false t.src_1 ! fakesink name=b sync=false \
         t.src_2 ! fakesink name=c sync=false",
        live_ts(75)
    ));
    let start = Instant::now();
    let got: Vec<_> = ["a", "b", "c"]
        .iter()
        .map(|n| collect(&p, n, start))
        .collect();
    run_to_eos(&p, 60 * SECOND);
    let got: Vec<_> = got.iter().map(|g| g.lock().unwrap()).collect();
    let first = got[0].first_arrival();
    for (k, g) in got.iter().enumerate() {
        let late = g.first_arrival().saturating_sub(first);
        let want = k as u32 * SECOND;
        let off = late.abs_diff(want);
        assert!(
            off <= TWO_FRAMES,
            "output {k}: first buffer {late:?} after output 0's, want {want:?}"
        );
        assert_eq!(g.bytes(), got[0].bytes(), "output {k} carries other bytes");
        assert!(g
            .caps
            .as_ref()
            .unwrap()
            .to_string()
            .starts_with("video/mpegts"));
        // Running time = the input's + the offset.
        let pts = g.buffers[0].1.pts().unwrap();
        let pts0 = got[0].buffers[0].1.pts().unwrap();
        assert_eq!(pts - pts0, gst::ClockTime::from_seconds(k as u64));
    }
    assert!(got[0].buffers.len() > 50);
}

#[test]
fn loop_two_delivers_three_copies_with_increasing_timestamps() {
    let p = pipeline(&format!(
        "{} ! offset-tee name=t eos-mode=play-out src_0::loop=2 sync=false t.src_0 ! fakesink name=a sync=false",
        live_ts(25)
    ));
    let got = collect(&p, "a", Instant::now());
    run_to_eos(&p, 60 * SECOND);
    let got = got.lock().unwrap();
    let n = got.buffers.len();
    assert_eq!(n % 3, 0, "{n} buffers");
    let once = &got.buffers[..n / 3];
    let bytes = |bs: &[(Duration, gst::Buffer)]| -> Vec<u8> {
        bs.iter()
            .flat_map(|(_, b)| b.map_readable().unwrap().to_vec())
            .collect()
    };
    assert_eq!(bytes(&got.buffers[n / 3..2 * n / 3]), bytes(once));
    assert_eq!(bytes(&got.buffers[2 * n / 3..]), bytes(once));
    let pts: Vec<_> = got.buffers.iter().filter_map(|(_, b)| b.pts()).collect();
    assert!(pts.windows(2).all(|w| w[0] <= w[1]), "timestamps go back");
    let stats = p.by_name("t").unwrap().property::<gst::Structure>("stats");
    let out = stats.get::<gst::Structure>("src_0").unwrap();
    assert_eq!(out.get::<u64>("loops").unwrap(), 2, "{stats}");
}

#[test]
fn a_changed_offset_jumps_back_with_discont_and_running_time_going_on() {
    let p = pipeline(&format!(
        "{} ! offset-tee name=t eos-mode=play-out src_0::offset=0 t.src_0 ! fakesink name=a sync=false",
        live_ts(100)
    ));
    let start = Instant::now();
    let got = collect(&p, "a", start);
    let tee = p.by_name("t").unwrap();
    let pad = tee.static_pad("src_0").unwrap();
    let bus = p.bus().unwrap();
    p.set_state(gst::State::Playing).unwrap();
    std::thread::sleep(2 * SECOND);
    let before = got.lock().unwrap().buffers.len();
    pad.set_property("offset", 1_000_000_000u64);
    let msg = bus.timed_pop_filtered(
        60 * gst::ClockTime::SECOND,
        &[gst::MessageType::Eos, gst::MessageType::Error],
    );
    p.set_state(gst::State::Null).unwrap();
    assert!(matches!(msg.unwrap().view(), gst::MessageView::Eos(_)));
    let got = got.lock().unwrap();
    let discont: Vec<usize> = got
        .buffers
        .iter()
        .enumerate()
        .filter(|(i, (_, b))| *i > 0 && b.flags().contains(gst::BufferFlags::DISCONT))
        .map(|(i, _)| i)
        .collect();
    assert_eq!(discont.len(), 1, "one jump: {discont:?}");
    let j = discont[0];
    assert!(j >= before, "the jump comes after the change");
    // One second back: what follows the jump is content already sent, about a second's
    // worth of buffers before.
    let jumped = got.buffers[j].1.map_readable().unwrap().to_vec();
    let replayed = got.buffers[..j]
        .iter()
        .rposition(|(_, b)| *b.map_readable().unwrap() == jumped[..])
        .expect("the jump lands on content sent before");
    let back = got.buffers[j - 1].1.pts().unwrap() - got.buffers[replayed].1.pts().unwrap();
    // It lands on the keyframe at or before: up to a group of pictures (1 s) further back.
    assert!(
        (800_000_000..2_200_000_000).contains(&back.nseconds()),
        "jumped back {back}"
    );
    let pts: Vec<_> = got.buffers.iter().filter_map(|(_, b)| b.pts()).collect();
    assert!(
        pts.windows(2).all(|w| w[0] <= w[1]),
        "running time goes back"
    );
    // Ends a second later than the input: the last second is played from the store.
    let stats = tee.property::<gst::Structure>("stats");
    assert_eq!(
        stats
            .get::<gst::Structure>("src_0")
            .unwrap()
            .get::<u64>("disconts")
            .unwrap(),
        1
    );
}

#[test]
fn an_output_requested_and_released_while_playing() {
    let p = pipeline(&format!(
        "{} ! offset-tee name=t t.src_0 ! fakesink name=a sync=false",
        live_ts(100)
    ));
    let tee = p.by_name("t").unwrap();
    let a = collect(&p, "a", Instant::now());
    let bus = p.bus().unwrap();
    p.set_state(gst::State::Playing).unwrap();
    std::thread::sleep(SECOND);
    // A late output, half a second behind, to a sink added now.
    let late = tee.request_pad_simple("src_%u").unwrap();
    late.set_property("offset", 500_000_000u64);
    let sink = gst::ElementFactory::make("fakesink")
        .name("b")
        .property("sync", false)
        .build()
        .unwrap();
    p.add(&sink).unwrap();
    let b = collect(&p, "b", Instant::now());
    late.link(&sink.static_pad("sink").unwrap()).unwrap();
    // Linked to a sink not started yet: pushes meet a flushing pad for a while, and the
    // output must carry on once the sink runs.
    std::thread::sleep(SECOND / 5);
    sink.sync_state_with_parent().unwrap();
    std::thread::sleep(SECOND);
    // Released while playing: the tee goes on.
    let taken = b.lock().unwrap().buffers.len();
    late.unlink(&sink.static_pad("sink").unwrap()).unwrap();
    tee.release_request_pad(&late);
    sink.set_state(gst::State::Null).unwrap();
    p.remove(&sink).unwrap();
    let msg = bus.timed_pop_filtered(
        60 * gst::ClockTime::SECOND,
        &[gst::MessageType::Eos, gst::MessageType::Error],
    );
    p.set_state(gst::State::Null).unwrap();
    let msg = msg.expect("no EOS within a minute");
    assert!(matches!(msg.view(), gst::MessageView::Eos(_)), "{msg:?}");
    assert!(taken > 10, "the late output got {taken} buffers");
    let b = b.lock().unwrap();
    assert!(b
        .caps
        .as_ref()
        .unwrap()
        .to_string()
        .starts_with("video/mpegts"));
    // The first output went on, undisturbed, to the end.
    assert!(a.lock().unwrap().buffers.len() > 50);
}

fn warnings(pipeline: &gst::Pipeline) -> Vec<String> {
    let bus = pipeline.bus().unwrap();
    std::iter::from_fn(|| bus.pop_filtered(&[gst::MessageType::Warning]))
        .map(|m| match m.view() {
            gst::MessageView::Warning(w) => format!("{} | {:?}", w.error(), w.debug()),
            _ => unreachable!(),
        })
        .collect()
}

fn offset_of(tee: &gst::Element, pad: &str) -> u64 {
    tee.static_pad(pad).unwrap().property::<u64>("offset")
}

#[test]
fn offsets_from_upstream_set_the_outputs_and_bad_ones_change_nothing() {
    let p = pipeline(&format!(
        "{} ! identity name=up ! offset-tee name=t t.src_0 ! fakesink sync=false t.src_1 ! fakesink sync=false",
        live_ts(1000)
    ));
    let tee = p.by_name("t").unwrap();
    let up = p.by_name("up").unwrap().static_pad("src").unwrap();
    p.set_state(gst::State::Playing).unwrap();
    std::thread::sleep(SECOND / 2);
    // More entries than outputs: the outputs there take theirs, none is made.
    assert!(up.push_event(gstfanoutrecording::offsets_event(&[0, 500_000_000, 7])));
    assert_eq!(
        (offset_of(&tee, "src_0"), offset_of(&tee, "src_1")),
        (0, 500_000_000)
    );
    assert!(tee.static_pad("src_2").is_none());
    let w = warnings(&p);
    assert!(w.len() == 1 && w[0].contains("src_2"), "{w:?}");
    // Negative, wrongly typed, missing: a warning each, nothing changes.
    let bad = |field: Option<gst::glib::SendValue>| {
        let mut s = gst::Structure::builder(gstfanoutrecording::OFFSETS_EVENT);
        if let Some(v) = field {
            s = s.field("offsets", v);
        }
        gst::event::CustomDownstream::new(s.build())
    };
    let negative = gst::Array::new([1_000i64.to_send_value(), (-5i64).to_send_value()]);
    let strings = gst::Array::new(["one".to_send_value()]);
    for event in [
        bad(Some(negative.to_send_value())),
        bad(Some(strings.to_send_value())),
        bad(Some(3u64.to_send_value())),
        bad(None),
    ] {
        assert!(up.push_event(event));
    }
    assert_eq!(
        (offset_of(&tee, "src_0"), offset_of(&tee, "src_1")),
        (0, 500_000_000)
    );
    let w = warnings(&p);
    p.set_state(gst::State::Null).unwrap();
    assert_eq!(w.len(), 4, "{w:?}");
    assert!(w[0].contains("-5"), "{w:?}");
}

#[test]
fn a_blocked_or_unlinked_output_holds_up_neither_the_input_nor_the_others() {
    let p = pipeline(&format!(
        // src_2 is requested (its offset set) but never linked.
        "{} ! offset-tee name=t src_2::offset=0 t.src_0 ! fakesink name=a sync=false \
         t.src_1 ! fakesink name=blocked sync=false",
        live_ts(125)
    ));
    let start = Instant::now();
    let a = collect(&p, "a", start);
    // The second output's sink takes 3 s over its 10th buffer.
    let blocked = p.by_name("blocked").unwrap();
    blocked.set_property("signal-handoffs", true);
    let seen = Arc::new(Mutex::new(0u32));
    let s = seen.clone();
    blocked.connect("handoff", false, move |_| {
        let mut n = s.lock().unwrap();
        *n += 1;
        if *n == 10 {
            std::thread::sleep(3 * SECOND);
        }
        None
    });
    let tee = p.by_name("t").unwrap();
    let written_at = |t: &gst::Element| {
        t.property::<gst::Structure>("stats")
            .get::<u64>("bytes-written")
            .unwrap()
    };
    p.set_state(gst::State::Playing).unwrap();
    std::thread::sleep(SECOND);
    let before = written_at(&tee);
    std::thread::sleep(2 * SECOND);
    let during = written_at(&tee);
    let bus = p.bus().unwrap();
    let msg = bus.timed_pop_filtered(
        60 * gst::ClockTime::SECOND,
        &[gst::MessageType::Eos, gst::MessageType::Error],
    );
    p.set_state(gst::State::Null).unwrap();
    assert!(matches!(msg.unwrap().view(), gst::MessageView::Eos(_)));
    assert!(during > before, "the store kept writing");
    // The other output kept its schedule: no stall anywhere near the 3 s block.
    let a = a.lock().unwrap();
    let worst = a.buffers.windows(2).map(|w| w[1].0 - w[0].0).max().unwrap();
    assert!(worst < SECOND / 2, "output 0 stalled for {worst:?}");
    // The blocked one caught up and got everything too.
    assert!(*seen.lock().unwrap() as usize >= a.buffers.len());
}

#[test]
fn an_offset_beyond_what_is_stored_starts_at_the_oldest_and_says_so_once() {
    let p = pipeline(&format!(
        "{} ! offset-tee name=t max-size-time=1000000000 max-segment-time=250000000 \
         t.src_0 ! fakesink name=a sync=false",
        live_ts(100)
    ));
    let tee = p.by_name("t").unwrap();
    let a = collect(&p, "a", Instant::now());
    let bus = p.bus().unwrap();
    p.set_state(gst::State::Playing).unwrap();
    std::thread::sleep(3 * SECOND);
    // 2.6 s back: further than the in-memory window (2 s) and the store (about 1 s) reach.
    tee.static_pad("src_0")
        .unwrap()
        .set_property("offset", 2_600_000_000u64);
    let mut w = Vec::new();
    let ended = loop {
        let Some(msg) = bus.timed_pop_filtered(
            60 * gst::ClockTime::SECOND,
            &[
                gst::MessageType::Eos,
                gst::MessageType::Error,
                gst::MessageType::Warning,
            ],
        ) else {
            break false;
        };
        match msg.view() {
            gst::MessageView::Warning(m) => w.push(format!("{} | {:?}", m.error(), m.debug())),
            gst::MessageView::Eos(_) => break true,
            _ => break false,
        }
    };
    p.set_state(gst::State::Null).unwrap();
    assert!(ended, "{w:?}");
    let told: Vec<_> = w.iter().filter(|w| w.contains("further back")).collect();
    assert_eq!(told.len(), 1, "{w:?}");
    assert!(a.lock().unwrap().buffers.len() > 50);
}

#[test]
fn retention_follows_the_largest_offset() {
    // 16 s of a 1 MB/s stream, outputs 0 and 1 s behind: the store keeps about 11 s
    // (the largest offset plus 10 s), in 1 s segments.
    let p = pipeline(
        "fakesrc is-live=true sync=true num-buffers=160 sizetype=fixed sizemax=100000 \
         filltype=pattern-span datarate=1000000 \
         ! offset-tee name=t max-segment-time=1000000000 src_1::offset=1000000000 \
         t.src_0 ! fakesink sync=false t.src_1 ! fakesink sync=false",
    );
    let tee = p.by_name("t").unwrap();
    p.set_state(gst::State::Playing).unwrap();
    std::thread::sleep(15 * SECOND);
    let span = tee
        .property::<gst::Structure>("stats")
        .get::<u64>("store-time")
        .unwrap();
    p.set_state(gst::State::Null).unwrap();
    assert!(
        (10_000_000_000..=13_000_000_000).contains(&span),
        "the store spans {span} ns"
    );
}
