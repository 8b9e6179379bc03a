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
    let src = pipeline
        .by_name("in")
        .unwrap()
        .downcast::<gst_app::AppSrc>()
        .unwrap();
    let sink = pipeline
        .by_name("out")
        .unwrap()
        .downcast::<gst_app::AppSink>()
        .unwrap();
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
    let src = pipeline
        .by_name("in")
        .unwrap()
        .downcast::<gst_app::AppSrc>()
        .unwrap();
    let sink = pipeline
        .by_name("out")
        .unwrap()
        .downcast::<gst_app::AppSink>()
        .unwrap();
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
