// SPDX-License-Identifier: MPL-2.0

//! `fec-payloader mode=carousel` after EOS: the rounds run on the source pad's task, so
//! upstream's thread comes back at once, and stopping or flushing ends them promptly.

mod common;

use std::time::{Duration, Instant};

use common::*;
use gst::prelude::*;
use gst_check::Harness;

fn carousel(props: &str) -> Harness {
    init();
    let mut h = Harness::with_element(
        &gst::parse::launch(&format!(
            "fec-payloader mode=carousel max-block-time=0 {props}"
        ))
        .unwrap(),
        Some("sink"),
        Some("src"),
    );
    h.set_src_caps_str("application/octet-stream");
    h.play();
    for i in 0..30u8 {
        h.push(gst::Buffer::from_mut_slice(vec![i; 10_000]))
            .unwrap();
    }
    h
}

/// Pulls until a buffer comes, at most `wait`.
fn next_packet(h: &mut Harness, wait: Duration) -> Option<gst::Buffer> {
    let until = Instant::now() + wait;
    loop {
        if let Some(b) = h.try_pull() {
            return Some(b);
        }
        if Instant::now() >= until {
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn drain(h: &mut Harness) -> usize {
    std::iter::from_fn(|| h.try_pull()).count()
}

fn rounds(h: &Harness) -> u64 {
    h.element()
        .unwrap()
        .property::<gst::Structure>("stats")
        .get::<u64>("carousel-rounds")
        .unwrap()
}

#[test]
fn endless_rounds_leave_upstreams_thread_free_and_stop_promptly() {
    // 400 kbit/s: each block's round of ~150 KB is due seconds after the one before.
    let mut h = carousel("carousel-bitrate=400000");
    assert!(h.push_event(gst::event::Eos::new()));
    // Back already: the rounds go on from the task.
    drain(&mut h);
    assert!(
        next_packet(&mut h, Duration::from_secs(30)).is_some(),
        "no carousel packet"
    );
    let started = Instant::now();
    h.element().unwrap().set_state(gst::State::Null).unwrap();
    // Well below the pacing wait the task was in.
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert!(h
        .try_pull_event()
        .into_iter()
        .all(|e| e.type_() != gst::EventType::Eos));
}

#[test]
fn a_flush_ends_the_rounds_and_a_new_stream_is_sent() {
    let mut h = carousel("carousel-bitrate=400000");
    h.push_event(gst::event::Eos::new());
    assert!(next_packet(&mut h, Duration::from_secs(30)).is_some());
    let started = Instant::now();
    assert!(h.push_event(gst::event::FlushStart::new()));
    assert!(h.push_event(gst::event::FlushStop::new(true)));
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    drain(&mut h);
    // Nothing more from the old rounds.
    assert!(next_packet(&mut h, Duration::from_millis(300)).is_none());
    h.push_event(gst::event::Segment::new(&gst::FormattedSegment::<
        gst::format::Bytes,
    >::new()));
    h.push(gst::Buffer::from_mut_slice(vec![7u8; 5000]))
        .unwrap();
    h.push_event(gst::event::Eos::new());
    assert!(next_packet(&mut h, Duration::from_secs(10)).is_some());
}

#[test]
fn counted_rounds_end_with_eos_downstream() {
    let mut h = carousel("carousel-rounds=2 carousel-bitrate=0");
    let blocks = h
        .element()
        .unwrap()
        .property::<gst::Structure>("stats")
        .get::<u64>("blocks")
        .unwrap();
    h.push_event(gst::event::Eos::new());
    let until = Instant::now() + Duration::from_secs(60);
    let eos = loop {
        match h.try_pull_event() {
            Some(e) if e.type_() == gst::EventType::Eos => break true,
            Some(_) => continue,
            None if Instant::now() > until => break false,
            None => std::thread::sleep(Duration::from_millis(10)),
        }
    };
    assert!(eos, "no EOS after the rounds");
    assert_eq!(rounds(&h), 2);
    // Each round went over every kept block, besides what went out before EOS.
    assert!(drain(&mut h) as u64 > 2 * blocks);
}

#[test]
fn repair_linger_holds_eos_while_the_last_blocks_are_still_repaired() {
    init();
    let mut h = Harness::with_element(
        &gst::parse::launch(
            "fec-payloader max-block-time=0 repair-percent=0 repair-linger=400000000",
        )
        .unwrap(),
        Some("sink"),
        Some("src"),
    );
    h.set_src_caps_str("application/octet-stream");
    h.play();
    for i in 0..5u8 {
        h.push(gst::Buffer::from_mut_slice(vec![i; 10_000]))
            .unwrap();
    }
    let start = Instant::now();
    assert!(
        h.push_event(gst::event::Eos::new()),
        "upstream's thread returns at once"
    );
    assert!(start.elapsed() < Duration::from_millis(300));
    drain(&mut h);
    // During the linger a repair request is still answered, tagged for its receiver.
    let block = 0;
    assert!(h.push_upstream_event(gstfanoutfec::repair_request(0, block, 3, 77u64)));
    let repairs: Vec<gst::Buffer> = (0..3)
        .map(|_| next_packet(&mut h, Duration::from_secs(2)).expect("a repair packet"))
        .collect();
    for r in &repairs {
        let dest = gstfanoutfec::packet_destination(r).unwrap();
        assert_eq!(dest.get::<u64>().unwrap(), 77);
    }
    // Then EOS, after the linger and not before.
    let eos = loop {
        match h.pull_event() {
            Ok(e) if e.type_() == gst::EventType::Eos => break start.elapsed(),
            Ok(_) => continue,
            Err(_) => panic!("no EOS"),
        }
    };
    assert!(eos >= Duration::from_millis(390), "{eos:?}");
}
