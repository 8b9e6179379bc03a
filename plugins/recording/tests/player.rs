// SPDX-License-Identifier: MPL-2.0

mod common;

use std::time::{Duration, Instant};

use common::*;
use gst::prelude::*;

fn pts_ms(b: &gst::Buffer) -> u64 {
    b.pts().unwrap().mseconds()
}

#[test]
fn plays_back_identical_buffers_with_caps_and_rebased_timestamps() {
    init();
    let dir = tempfile::tempdir().unwrap();
    record(dir.path(), 60, 40);
    let mut h = player(dir.path(), "is-live=false");
    h.play();
    let out = pull_all(&mut h);
    assert_eq!(out.len(), 60);
    for (i, b) in out.iter().enumerate() {
        assert_eq!(bytes(b), payload(i as u64), "buffer {i}");
        assert_eq!(pts_ms(b), i as u64 * 40);
        assert_eq!(b.duration().unwrap().mseconds(), 40);
        assert_eq!(
            b.flags().contains(gst::BufferFlags::DELTA_UNIT),
            i % 10 != 0
        );
    }
    assert!(out[0].flags().contains(gst::BufferFlags::DISCONT));
    let caps = h.sinkpad().unwrap().current_caps().unwrap();
    assert_eq!(caps, TS_CAPS.parse::<gst::Caps>().unwrap());
}

#[test]
fn loop_plays_again_with_continuous_timestamps() {
    init();
    let dir = tempfile::tempdir().unwrap();
    record(dir.path(), 10, 40);
    let mut h = player(dir.path(), "is-live=false loop=2");
    h.play();
    let out = pull_all(&mut h);
    assert_eq!(out.len(), 30);
    for (i, b) in out.iter().enumerate() {
        assert_eq!(bytes(b), payload(i as u64 % 10));
        assert_eq!(pts_ms(b), i as u64 * 40, "buffer {i}");
    }
    let stats = h.element().unwrap().property::<gst::Structure>("stats");
    assert_eq!(stats.get::<u64>("loops-done").unwrap(), 2);
}

#[test]
fn live_playback_is_paced_at_the_recorded_rate() {
    init();
    let dir = tempfile::tempdir().unwrap();
    // 25 buffers 40 ms apart: one second of recording.
    record(dir.path(), 25, 40);
    let mut h = player(dir.path(), "");
    h.use_systemclock();
    let start = Instant::now();
    h.play();
    let out = pull_all(&mut h);
    let elapsed = start.elapsed();
    assert_eq!(out.len(), 25);
    // A lower bound only: a loaded machine can be slower, never faster.
    assert!(elapsed >= Duration::from_millis(900), "{elapsed:?}");
    let first = pts_ms(&out[0]);
    for (i, b) in out.iter().enumerate() {
        assert_eq!(pts_ms(b) - first, i as u64 * 40);
    }
}

#[test]
fn seek_starts_at_the_keyframe_before_the_target() {
    init();
    let dir = tempfile::tempdir().unwrap();
    record(dir.path(), 100, 40);
    let pipeline = gst::parse::launch(&format!(
        "bitrate-player location={} is-live=false ! appsink name=sink sync=false",
        dir.path().display()
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let sink = pipeline.by_name("sink").unwrap();
    pipeline.set_state(gst::State::Paused).unwrap();
    pipeline.state(gst::ClockTime::from_seconds(10)).0.unwrap();
    // 2.3 s: buffer 57 is there; the keyframe before it is buffer 50 at 2 s.
    pipeline
        .seek_simple(gst::SeekFlags::FLUSH, gst::ClockTime::from_mseconds(2_300))
        .unwrap();
    pipeline.state(gst::ClockTime::from_seconds(10)).0.unwrap();
    let sample = sink
        .emit_by_name::<Option<gst::Sample>>("pull-preroll", &[])
        .unwrap();
    let buf = sample.buffer_owned().unwrap();
    assert_eq!(bytes(&buf), payload(50));
    let segment = sample
        .segment()
        .unwrap()
        .downcast_ref::<gst::ClockTime>()
        .unwrap()
        .clone();
    assert_eq!(
        segment.to_running_time(buf.pts().unwrap()),
        Some(gst::ClockTime::ZERO)
    );
    let duration = pipeline.query_duration::<gst::ClockTime>().unwrap();
    assert_eq!(duration.mseconds(), 4_000);
    pipeline.set_state(gst::State::Null).unwrap();
}

#[test]
fn follows_a_recording_while_it_is_written_and_ends_with_it() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let mut rec = recorder(dir.path(), "max-segment-time=200000000");
    rec.play();
    let mut play = player(dir.path(), "follow=true is-live=false");
    play.play();
    let mut got = Vec::new();
    for i in 0..30 {
        rec.push(buffer(i, 40)).unwrap();
        // Each buffer reaches the player before the next is recorded.
        got.push(play.pull().unwrap());
    }
    rec.push_event(gst::event::Eos::new());
    got.extend(pull_all(&mut play));
    assert_eq!(got.len(), 30);
    for (i, b) in got.iter().enumerate() {
        assert_eq!(bytes(b), payload(i as u64));
    }
    stop(rec);
}

#[test]
fn damaged_recording_plays_its_intact_part_and_warns() {
    init();
    let dir = tempfile::tempdir().unwrap();
    record(dir.path(), 40, 40);
    // Flip a byte in the data of the first segment: that buffer is skipped.
    let data = dir.path().join("0000000000.ts");
    let mut b = std::fs::read(&data).unwrap();
    b[200] ^= 0xff;
    std::fs::write(&data, &b).unwrap();
    let mut h = player(dir.path(), "is-live=false");
    h.play();
    let out = pull_all(&mut h);
    assert_eq!(out.len(), 39);
    assert_eq!(bytes(&out[0]), payload(0));
    assert_eq!(bytes(&out[1]), payload(2));
    assert!(out[1].flags().contains(gst::BufferFlags::DISCONT));
    let text = bus_text(&h, gst::MessageType::Warning);
    assert!(text.contains("checksum mismatch"), "{text}");
    let stats = h.element().unwrap().property::<gst::Structure>("stats");
    assert_eq!(stats.get::<u64>("buffers-skipped").unwrap(), 1);
}

#[test]
fn missing_recording_fails_the_state_change_with_a_clear_error() {
    init();
    let dir = tempfile::tempdir().unwrap();
    for location in [dir.path().join("nothing-here"), dir.path().to_owned()] {
        let e = element(&format!("bitrate-player location={}", location.display()));
        assert!(
            e.set_state(gst::State::Playing).is_err(),
            "{}",
            location.display()
        );
        let text = element_text(&e, gst::MessageType::Error);
        assert!(text.contains("Could not open recording"), "{text}");
        e.set_state(gst::State::Null).unwrap();
    }
}

#[test]
fn live_seek_continues_on_the_running_time_from_the_keyframe_before() {
    init();
    let dir = tempfile::tempdir().unwrap();
    record(dir.path(), 100, 40);
    let mut h = player(dir.path(), "");
    h.use_systemclock();
    h.play();
    let mut last_pts = gst::ClockTime::ZERO;
    for _ in 0..3 {
        last_pts = h.pull().unwrap().pts().unwrap();
    }
    assert!(h.push_upstream_event(gst::event::Seek::new(
        1.0,
        gst::SeekFlags::FLUSH,
        gst::SeekType::Set,
        gst::ClockTime::from_mseconds(2_300),
        gst::SeekType::None,
        gst::ClockTime::NONE,
    )));
    // Buffers queued before the flush may still be waiting: skip to the
    // first one after the seek (flagged DISCONT), a bounded number of pulls.
    let after = (0..10)
        .map(|_| h.pull().unwrap())
        .find(|b| b.flags().contains(gst::BufferFlags::DISCONT))
        .expect("a buffer after the seek");
    assert_eq!(bytes(&after), payload(50));
    // Live: it leaves at the running time now, never before the last one.
    assert!(after.pts().unwrap() >= last_pts);
    let event = h
        .sinkpad()
        .unwrap()
        .sticky_event::<gst::event::Segment>(0)
        .unwrap();
    let segment = event.segment().downcast_ref::<gst::ClockTime>().unwrap();
    assert_eq!(segment.start(), Some(gst::ClockTime::ZERO));
    assert_eq!(segment.time(), Some(gst::ClockTime::from_seconds(2)));
}

#[test]
fn live_playback_posts_its_stats_on_the_bus_every_second() {
    init();
    let dir = tempfile::tempdir().unwrap();
    // 50 buffers 40 ms apart: two seconds of recording.
    record(dir.path(), 50, 40);
    let mut h = player(dir.path(), "");
    let bus = gst::Bus::new();
    h.element().unwrap().set_bus(Some(&bus));
    h.use_systemclock();
    h.play();
    assert_eq!(pull_all(&mut h).len(), 50);
    let posted: Vec<gst::Structure> = std::iter::from_fn(|| bus.pop())
        .filter_map(|m| m.structure().map(|s| s.to_owned()))
        .filter(|s| s.name() == "fanout-bitrate-player-stats")
        .collect();
    // About one a second after the first buffer: one or two in two seconds.
    assert!(!posted.is_empty() && posted.len() <= 3, "{posted:?}");
    assert!(posted[0].get::<u64>("buffers-out").unwrap() > 0);
}
