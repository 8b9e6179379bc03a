// SPDX-License-Identifier: MPL-2.0

mod common;

use common::*;
use fanout_store::{Entry, Next, Reader};
use gst::prelude::*;

#[test]
fn passes_buffers_through_unchanged_and_records_them() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let mut h = recorder(dir.path(), "");
    h.play();
    for i in 0..50 {
        let input = buffer(i, 40);
        let ptr = input.as_ptr();
        h.push(input).unwrap();
        let out = h.pull().unwrap();
        assert_eq!(
            out.as_ptr(),
            ptr,
            "the same buffer goes downstream, not a copy"
        );
        assert_eq!(bytes(&out), payload(i));
    }
    h.push_event(gst::event::Eos::new());
    stop(h);

    let mut r = Reader::open(dir.path()).unwrap();
    let mut caps = None;
    let mut got = Vec::new();
    while let Next::Entry(e) = r.read_next().unwrap() {
        match e {
            Entry::Caps(c) => caps = Some(c),
            Entry::Buffer(b) => {
                let mut data = vec![0; b.size as usize];
                assert!(r.read_data(&b, &mut data).unwrap());
                got.push((b.pts, data));
            }
            Entry::Tags(_) => {}
        }
    }
    let caps: gst::Caps = caps.unwrap().parse().unwrap();
    assert_eq!(caps, TS_CAPS.parse::<gst::Caps>().unwrap());
    let want: Vec<_> = (0..50).map(|i| (Some(i * 40 * MS), payload(i))).collect();
    assert_eq!(got, want);
}

#[test]
fn stats_count_what_was_recorded_and_are_posted_every_second() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let mut h = recorder(dir.path(), "");
    h.play();
    let mut total = 0;
    for i in 0..20 {
        total += payload(i).len() as u64;
        h.push(buffer(i, 40)).unwrap();
    }
    // Wait (bounded) for the writer thread and its one-second report.
    let element = h.element().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let stats = loop {
        let s = element.property::<gst::Structure>("stats");
        if s.get::<u64>("bytes-written").unwrap() == total
            && !bus_messages(&h, gst::MessageType::Element).is_empty()
        {
            break s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "stats never caught up: {s}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert_eq!(stats.get::<u64>("bytes-in").unwrap(), total);
    assert_eq!(stats.get::<u64>("buffers-written").unwrap(), 20);
    assert_eq!(stats.get::<u64>("backlog-bytes").unwrap(), 0);
    assert_eq!(stats.get::<u64>("segments").unwrap(), 1);
    assert!(stats.get::<bool>("recording").unwrap());
    assert!(stats.has_field("input-bitrate") && stats.has_field("write-bitrate"));
    stop(h);
}

#[test]
fn missing_location_fails_the_state_change_with_a_clear_error() {
    init();
    let e = element("bitrate-recorder");
    assert!(e.set_state(gst::State::Playing).is_err());
    let text = element_text(&e, gst::MessageType::Error);
    assert!(text.contains("No location set"), "{text}");
    e.set_state(gst::State::Null).unwrap();
}

#[test]
fn unwritable_location_fails_the_state_change_with_a_clear_error() {
    init();
    let e = element("bitrate-recorder location=/proc/fanout-cannot-be-here");
    assert!(e.set_state(gst::State::Playing).is_err());
    let text = element_text(&e, gst::MessageType::Error);
    assert!(text.contains("Could not open recording"), "{text}");
    e.set_state(gst::State::Null).unwrap();
}

#[test]
fn a_second_recorder_on_the_same_location_is_refused() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let mut first = recorder(dir.path(), "");
    first.play();
    let second = element(&format!(
        "bitrate-recorder location={}",
        dir.path().display()
    ));
    assert!(second.set_state(gst::State::Playing).is_err());
    let text = element_text(&second, gst::MessageType::Error);
    assert!(text.contains("another recorder"), "{text}");
    second.set_state(gst::State::Null).unwrap();
    stop(first);
}

#[test]
fn retention_keeps_the_newest_part() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let mut h = recorder(
        dir.path(),
        "max-segment-time=400000000 max-size-time=1000000000",
    );
    h.play();
    for i in 0..200 {
        h.push(buffer(i, 40)).unwrap();
    }
    h.push_event(gst::event::Eos::new());
    stop(h);
    let r = Reader::open(dir.path()).unwrap();
    let (first, end) = r.range().unwrap().unwrap();
    assert_eq!(end, 200 * 40 * MS);
    assert!(end - first <= 1_000 * MS, "{first} {end}");
}

#[test]
fn a_backlog_overflow_stops_the_recording_but_not_the_stream() {
    init();
    let dir = tempfile::tempdir().unwrap();
    // Any buffer exceeds a one-byte backlog: as if the disk had stalled.
    let mut h = recorder(dir.path(), "max-backlog-bytes=1");
    h.play();
    for i in 0..5 {
        h.push(buffer(i, 40)).unwrap();
        assert_eq!(bytes(&h.pull().unwrap()), payload(i));
    }
    let text = bus_text(&h, gst::MessageType::Warning);
    assert!(text.contains("cannot keep up"), "{text}");
    let stats = h.element().unwrap().property::<gst::Structure>("stats");
    assert!(!stats.get::<bool>("recording").unwrap());
    let total: u64 = (0..5).map(|i| payload(i).len() as u64).sum();
    assert_eq!(stats.get::<u64>("bytes-not-recorded").unwrap(), total);
    stop(h);
}

#[test]
fn a_backlog_overflow_with_on_disk_error_error_fails_the_stream() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let mut h = recorder(dir.path(), "max-backlog-bytes=1 on-disk-error=error");
    h.play();
    assert_eq!(h.push(buffer(0, 40)), Err(gst::FlowError::Error));
    let text = bus_text(&h, gst::MessageType::Error);
    assert!(text.contains("cannot keep up"), "{text}");
    stop(h);
}

#[test]
fn input_without_caps_or_timestamps_is_recorded_with_one_warning() {
    init();
    let dir = tempfile::tempdir().unwrap();
    // As a plain filesrc gives it: no caps, no timestamps.
    let mut h = harness(&format!(
        "bitrate-recorder location={}",
        dir.path().display()
    ));
    h.play();
    for i in 0..5 {
        h.push(gst::Buffer::from_mut_slice(payload(i))).unwrap();
    }
    h.push_event(gst::event::Eos::new());
    let warnings = bus_messages(&h, gst::MessageType::Warning);
    assert_eq!(warnings.len(), 1);
    let gst::MessageView::Warning(w) = warnings[0].view() else {
        unreachable!()
    };
    assert!(format!("{:?}", w.debug()).contains("tsparse set-timestamps=true"));
    stop(h);
    let bins = std::fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().extension() == Some("bin".as_ref()))
        .count();
    assert_eq!(bins, 1);
}

#[test]
fn timestamped_input_gets_no_such_warning() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let mut h = recorder(dir.path(), "");
    h.play();
    for i in 0..5 {
        h.push(buffer(i, 40)).unwrap();
    }
    h.push_event(gst::event::Eos::new());
    assert!(bus_messages(&h, gst::MessageType::Warning).is_empty());
    stop(h);
}
