// SPDX-License-Identifier: MPL-2.0

//! A block left waiting for more input goes out `max-block-time` later on the pipeline
//! clock: a live source that stalls loses nothing to the wait for its next buffer.

mod common;

use std::time::{Duration, Instant};

use common::*;
use gst::prelude::*;
use gst_check::Harness;

const CAPS: &str = "video/mpegts, systemstream=(boolean)true, packetsize=(int)188";

/// `n` small buffers 20 ms apart, from `first` on.
fn input(first: u64, n: u64) -> Vec<gst::Buffer> {
    (first..first + n)
        .map(|i| {
            let data: Vec<u8> = (0..188 * 3).map(|b| (b ^ (i * 31)) as u8).collect();
            let mut b = gst::Buffer::from_mut_slice(data);
            let m = b.get_mut().unwrap();
            m.set_pts(gst::ClockTime::from_mseconds(i * 20));
            m.set_duration(gst::ClockTime::from_mseconds(20));
            b
        })
        .collect()
}

fn harness(element: &str) -> Harness {
    init();
    let mut h = Harness::with_element(
        &gst::parse::launch(element).unwrap(),
        Some("sink"),
        Some("src"),
    );
    h.set_src_caps_str(if element.starts_with("fec-payloader") {
        CAPS
    } else {
        "application/x-fanout-fec"
    });
    h.play();
    h
}

/// The time of the alarm the element waits on (a regression fails here rather than hangs).
fn next_alarm(clock: &gst_check::TestClock) -> gst::ClockTime {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(20) {
        if let Some(id) = clock.peek_next_pending_id() {
            return id.time();
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    panic!("no alarm was set");
}

fn blocks(h: &Harness) -> u64 {
    let stats = h.element().unwrap().property::<gst::Structure>("stats");
    stats.get::<u64>("blocks").unwrap()
}

#[test]
fn a_waiting_block_goes_out_max_block_time_later_on_the_clock_and_the_next_goes_on() {
    let mut pay = harness("fec-payloader max-block-time=100000000");
    let clock = pay.testclock().unwrap();
    clock.set_time(gst::ClockTime::from_seconds(10));
    let sent = input(0, 6);

    // Three buffers span 60 ms: the block waits for more, with its alarm at exactly +100 ms.
    for b in &sent[..3] {
        pay.push(b.clone()).unwrap();
    }
    assert!(pay.try_pull().is_none(), "the block waits for more input");
    assert_eq!(next_alarm(&clock), gst::ClockTime::from_mseconds(10_100));
    assert_eq!(blocks(&pay), 0);
    pay.crank_single_clock_wait().unwrap();
    let first = pay.pull().expect("the block went out without more input");
    assert_eq!(blocks(&pay), 1);

    // The next input opens the next block, which has an alarm of its own.
    clock.set_time(gst::ClockTime::from_seconds(11));
    for b in &sent[3..] {
        pay.push(b.clone()).unwrap();
    }
    assert_eq!(next_alarm(&clock), gst::ClockTime::from_mseconds(11_100));
    pay.crank_single_clock_wait().unwrap();
    // EOS waits for the timer's push (same lock) and finds nothing left to close.
    pay.push_event(gst::event::Eos::new());
    let mut packets = vec![first];
    packets.extend(std::iter::from_fn(|| pay.try_pull()));
    assert_eq!(blocks(&pay), 2, "two blocks, none made at EOS");

    let mut depay = harness("fec-depayloader");
    for p in packets {
        depay.push(p).unwrap();
    }
    depay.push_event(gst::event::Eos::new());
    let got: Vec<_> = std::iter::from_fn(|| depay.try_pull()).collect();
    assert_eq!(got.len(), sent.len());
    for (g, w) in got.iter().zip(&sent) {
        assert_eq!(*g.map_readable().unwrap(), *w.map_readable().unwrap());
        assert_eq!(g.pts(), w.pts());
    }
}

#[test]
fn input_that_keeps_coming_moves_the_alarm_later() {
    let mut pay = harness("fec-payloader max-block-time=100000000");
    let clock = pay.testclock().unwrap();
    clock.set_time(gst::ClockTime::from_seconds(10));
    let sent = input(0, 3);
    pay.push(sent[0].clone()).unwrap();
    assert_eq!(next_alarm(&clock), gst::ClockTime::from_mseconds(10_100));
    // More input 60 ms later: the block may wait 100 ms from then.
    clock.set_time(gst::ClockTime::from_mseconds(10_060));
    pay.push(sent[1].clone()).unwrap();
    pay.crank_single_clock_wait().unwrap();
    assert_eq!(next_alarm(&clock), gst::ClockTime::from_mseconds(10_160));
    assert_eq!(blocks(&pay), 0, "nothing went out at 10.100 s");
    assert!(pay.try_pull().is_none());
    pay.crank_single_clock_wait().unwrap();
    pay.pull().expect("the block went out at 10.160 s");
    assert_eq!(blocks(&pay), 1);
}

#[test]
fn no_alarm_with_max_block_time_0_or_before_playing() {
    let mut pay = harness("fec-payloader max-block-time=0");
    for b in input(0, 3) {
        pay.push(b).unwrap();
    }
    let clock = pay.testclock().unwrap();
    assert!(clock.peek_next_pending_id().is_none());

    let mut pay = harness("fec-payloader max-block-time=100000000");
    pay.element()
        .unwrap()
        .set_state(gst::State::Paused)
        .unwrap();
    for b in input(0, 3) {
        pay.push(b).unwrap();
    }
    let clock = pay.testclock().unwrap();
    assert!(clock.peek_next_pending_id().is_none(), "paused: no alarm");
    // Back to PLAYING, the block waits from then.
    clock.set_time(gst::ClockTime::from_seconds(5));
    pay.play();
    assert_eq!(next_alarm(&clock), gst::ClockTime::from_mseconds(5_100));
    pay.crank_single_clock_wait().unwrap();
    assert!(pay.pull().is_ok());
}

#[test]
fn a_live_source_that_stalls_still_gets_its_last_buffer_through() {
    init();
    let pipeline = pipeline(
        "appsrc name=in is-live=true format=time do-timestamp=true \
           caps=video/mpegts,systemstream=true,packetsize=188 \
         ! fec-payloader ! fec-depayloader ! appsink name=out",
    );
    let src = element::<gst_app::AppSrc>(&pipeline, "in");
    let sink = element::<gst_app::AppSink>(&pipeline, "out");
    pipeline.set_state(gst::State::Playing).unwrap();
    let data: Vec<u8> = (0..188 * 7).map(|b| b as u8).collect();
    src.push_buffer(gst::Buffer::from_slice(data.clone()))
        .unwrap();
    // Nothing more comes, and no EOS: the block goes out after max-block-time all the same.
    let start = Instant::now();
    let mut got = None;
    while got.is_none() && start.elapsed() < Duration::from_secs(20) {
        got = sink.try_pull_sample(gst::ClockTime::from_mseconds(100));
    }
    let sample = got.expect("the buffer came through without more input");
    let buffer = sample.buffer().unwrap();
    assert_eq!(*buffer.map_readable().unwrap(), data[..]);
    pipeline.set_state(gst::State::Null).unwrap();
}

#[test]
fn input_at_file_speed_makes_its_blocks_by_content_alone() {
    init();
    // Payloaders fed the same file make the same blocks (their repair merges): no timer.
    let pipeline = pipeline(
        "appsrc name=in format=time caps=video/mpegts,systemstream=true,packetsize=188 \
         ! fec-payloader max-block-time=50000000 ! appsink name=out async=false",
    );
    let src = element::<gst_app::AppSrc>(&pipeline, "in");
    let sink = element::<gst_app::AppSink>(&pipeline, "out");
    pipeline.set_state(gst::State::Playing).unwrap();
    for b in input(0, 2) {
        src.push_buffer(b).unwrap();
    }
    // Ten times max-block-time without more input: the block (20 ms of input) still waits.
    assert!(sink
        .try_pull_sample(gst::ClockTime::from_mseconds(500))
        .is_none());
    src.end_of_stream().unwrap();
    assert!(sink
        .try_pull_sample(gst::ClockTime::from_seconds(20))
        .is_some());
    pipeline.set_state(gst::State::Null).unwrap();
}

#[test]
fn a_live_test_source_that_stops_gets_every_byte_through() {
    init();
    // videotestsrc says it is live only once its caps are set, after the payloader went
    // to PLAYING: asked with the first input, not at the state change.
    let pipeline = pipeline(
        "videotestsrc is-live=true ! video/x-raw,width=64,height=48,framerate=25/1 \
         ! valve name=v ! fec-payloader name=pay ! fec-depayloader ! appsink name=out",
    );
    let sink = element::<gst_app::AppSink>(&pipeline, "out");
    pipeline.set_state(gst::State::Playing).unwrap();
    let mut out = 0;
    for _ in 0..5 {
        let sample = sink.try_pull_sample(gst::ClockTime::from_seconds(10));
        out += sample
            .expect("frames come through")
            .buffer()
            .unwrap()
            .size() as u64;
    }
    // The source goes quiet mid-block; no EOS.
    pipeline.by_name("v").unwrap().set_property("drop", true);
    let mut pull = |timeout| {
        while let Some(s) = sink.try_pull_sample(timeout) {
            out += s.buffer().unwrap().size() as u64;
        }
        out
    };
    let start = Instant::now();
    let mut got = 0;
    let mut bytes_in = 1;
    while start.elapsed() < Duration::from_secs(20) {
        got = pull(gst::ClockTime::from_mseconds(200));
        bytes_in = stat(&pipeline, "pay", "bytes-in");
        if got == bytes_in {
            break;
        }
    }
    assert_eq!(got, bytes_in, "every byte the payloader took came out");
    pipeline.set_state(gst::State::Null).unwrap();
}

#[test]
fn the_longest_max_block_time_waits_for_ever_without_a_panic() {
    let mut pay = harness(&format!("fec-payloader max-block-time={}", u64::MAX));
    let clock = pay.testclock().unwrap();
    for b in input(0, 2) {
        pay.push(b).unwrap();
    }
    assert_eq!(next_alarm(&clock), gst::ClockTime::MAX);
    pay.push_event(gst::event::Eos::new());
    assert!(pay.pull().is_ok(), "the block goes out at EOS");
}

/// Pushes one small buffer into `fec-payloader` with downstream failing every packet (then
/// EOS unless live) and gives the error the bus got.
fn error_of_a_block_downstream_fails(live: bool) -> String {
    init();
    let pipeline = pipeline(&format!(
        "appsrc name=in is-live={live} format=time do-timestamp=true \
           caps=video/mpegts,systemstream=true,packetsize=188 \
         ! fec-payloader name=pay ! appsink name=out async=false"
    ));
    let sink = element::<gst_app::AppSink>(&pipeline, "out");
    sink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(|_| Err(gst::FlowError::Error))
            .build(),
    );
    let src = element::<gst_app::AppSrc>(&pipeline, "in");
    pipeline.set_state(gst::State::Playing).unwrap();
    src.push_buffer(gst::Buffer::from_slice(vec![0x47u8; 188]))
        .unwrap();
    if !live {
        src.end_of_stream().unwrap();
    }
    let bus = pipeline.bus().unwrap();
    let msg = bus
        .timed_pop_filtered(gst::ClockTime::from_seconds(20), &[gst::MessageType::Error])
        .expect("an error on the bus");
    let gst::MessageView::Error(e) = msg.view() else {
        unreachable!()
    };
    assert_eq!(msg.src().unwrap().name(), "pay");
    pipeline.set_state(gst::State::Null).unwrap();
    e.error().to_string()
}

#[test]
fn a_block_that_cannot_be_pushed_off_the_input_flow_is_an_error_on_the_bus() {
    // The only push is the timer's, or the one at EOS: no return to upstream carries it.
    let e = error_of_a_block_downstream_fails(true);
    assert!(e.contains("max-block-time"), "{e}");
    let e = error_of_a_block_downstream_fails(false);
    assert!(e.contains("at EOS"), "{e}");
}

#[test]
fn stopping_while_the_timer_waits_on_a_moved_alarm_returns_at_once() {
    // The alarm of 10 s moves with the second input; the thread still waits on the first.
    let mut pay = harness("fec-payloader max-block-time=10000000000");
    let clock = pay.testclock().unwrap();
    let sent = input(0, 2);
    pay.push(sent[0].clone()).unwrap();
    next_alarm(&clock);
    clock.advance_time(gst::ClockTime::from_mseconds(5).nseconds() as i64);
    pay.push(sent[1].clone()).unwrap();
    let element = pay.element().unwrap();
    let (done, stopped) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = element.set_state(gst::State::Null);
        let _ = done.send(());
    });
    let ok = stopped.recv_timeout(Duration::from_secs(20)).is_ok();
    if !ok {
        // Its drop would wait for the stuck state change.
        std::mem::forget(pay);
    }
    assert!(ok, "the payloader stopped without waiting for its alarm");
}
