// SPDX-License-Identifier: MPL-2.0

//! A sender restarted while its receiver keeps running, as users run them:
//! `appsrc ! fec-payloader ! udpsink`, stopped and started again (a new pipeline, blocks
//! from 0 again), to `udpsrc ! fec-depayloader ! appsink` that never stops. The second
//! run arrives whole soon after, its first buffer marked DISCONT, the restart said on the
//! bus.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use gst::prelude::*;

const BUFFERS: u64 = 48;
/// 25 ms a buffer: each run lasts 1.2 s at the pace udpsink keeps (sync).
const BUFFER_TIME: u64 = 25_000_000;

/// What reached the appsink: each buffer's bytes, whether DISCONT, and the caps then.
#[derive(Default)]
struct Seen {
    buffers: Vec<(Vec<u8>, bool, String)>,
    caps: String,
}

fn content(run: u8, i: u64) -> Vec<u8> {
    (0..2000 + i * 13)
        .map(|b| (b as u8) ^ (i as u8).wrapping_mul(7) ^ run.wrapping_mul(101))
        .collect()
}

/// The receiver on a free port, recording what reaches its appsink.
fn receiver() -> (gst::Pipeline, u16, Arc<Mutex<Seen>>) {
    let receiver = pipeline(
        "udpsrc port=0 name=src caps=application/x-fanout-fec buffer-size=4194304 \
         ! fec-depayloader name=depay ! appsink name=sink sync=false drop=true max-buffers=1",
    );
    let seen = Arc::new(Mutex::new(Seen::default()));
    let pad = receiver
        .by_name("sink")
        .unwrap()
        .static_pad("sink")
        .unwrap();
    let record = seen.clone();
    pad.add_probe(
        gst::PadProbeType::BUFFER
            | gst::PadProbeType::BUFFER_LIST
            | gst::PadProbeType::EVENT_DOWNSTREAM,
        move |_, info| {
            let mut seen = record.lock().unwrap();
            let mut take = |b: &gst::BufferRef| {
                let caps = seen.caps.clone();
                let map = b.map_readable().unwrap();
                let discont = b.flags().contains(gst::BufferFlags::DISCONT);
                seen.buffers.push((map.to_vec(), discont, caps));
            };
            match info.data.as_ref() {
                Some(gst::PadProbeData::Buffer(b)) => take(b),
                Some(gst::PadProbeData::BufferList(l)) => l.iter().for_each(take),
                Some(gst::PadProbeData::Event(e)) => {
                    if let gst::EventView::Caps(c) = e.view() {
                        seen.caps = c.caps().to_string();
                    }
                }
                _ => (),
            }
            gst::PadProbeReturn::Ok
        },
    );
    receiver.set_state(gst::State::Playing).unwrap();
    let port = receiver.by_name("src").unwrap().property::<i32>("port");
    (receiver, u16::try_from(port).unwrap(), seen)
}

/// One run of the sender: a new pipeline, `BUFFERS` buffers at their pace, then EOS
/// (`eos`) or just stopped (NULL) as a crash or a restart would.
fn send_run(port: u16, run: u8, eos: bool) {
    let sender = pipeline(&format!(
        "appsrc name=src is-live=true format=time caps=application/x-test,run=(int){run} \
         ! fec-payloader ! udpsink host=127.0.0.1 port={port} sync=true"
    ));
    sender.set_state(gst::State::Playing).unwrap();
    let src = sender.by_name("src").unwrap();
    for i in 0..BUFFERS {
        let mut buffer = gst::Buffer::from_mut_slice(content(run, i));
        {
            let b = buffer.get_mut().unwrap();
            b.set_pts(gst::ClockTime::from_nseconds(i * BUFFER_TIME));
            b.set_duration(gst::ClockTime::from_nseconds(BUFFER_TIME));
        }
        let ret = src.emit_by_name::<gst::FlowReturn>("push-buffer", &[&buffer]);
        assert_eq!(ret, gst::FlowReturn::Ok);
    }
    if eos {
        let _ = src.emit_by_name::<gst::FlowReturn>("end-of-stream", &[]);
        let bus = sender.bus().unwrap();
        let msg = bus.timed_pop_filtered(
            gst::ClockTime::from_seconds(20),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        );
        assert!(
            matches!(
                msg.as_ref().map(|m| m.view()),
                Some(gst::MessageView::Eos(_))
            ),
            "{msg:?}"
        );
    } else {
        // Until the buffers went out at their pace.
        std::thread::sleep(Duration::from_nanos(BUFFERS * BUFFER_TIME + 300_000_000));
    }
    sender.set_state(gst::State::Null).unwrap();
}

/// Waits (at most `limit`) until `done` holds for what the receiver has.
fn wait_for(seen: &Mutex<Seen>, limit: Duration, done: impl Fn(&Seen) -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if done(&seen.lock().unwrap()) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    done(&seen.lock().unwrap())
}

#[test]
fn a_restarted_sender_is_followed_at_once_and_its_second_run_arrives_whole() {
    let (receiver, port, seen) = receiver();
    // The first run, which the receiver takes whole.
    send_run(port, 1, true);
    let first: Vec<Vec<u8>> = (0..BUFFERS).map(|i| content(1, i)).collect();
    assert!(
        wait_for(&seen, Duration::from_secs(20), |s| s.buffers.len()
            >= first.len()),
        "first run: {} buffers, {}",
        seen.lock().unwrap().buffers.len(),
        receiver
            .by_name("depay")
            .unwrap()
            .property::<gst::Structure>("stats")
    );
    // Restarted: a new pipeline, blocks from 0 again; the last block is cut off (stopped,
    // no EOS), as a crash would.
    send_run(port, 2, false);
    let second: Vec<Vec<u8>> = (0..BUFFERS).map(|i| content(2, i)).collect();
    // All but its last block (never sent) soon after.
    let whole = |s: &Seen| {
        s.buffers.len() >= first.len() + second.len() - 4
            && s.buffers[first.len()..]
                .iter()
                .map(|b| &b.0)
                .eq(second[..s.buffers.len() - first.len()].iter())
    };
    let arrived = wait_for(&seen, Duration::from_secs(10), whole);
    let depay = receiver.by_name("depay").unwrap();
    let stats = depay.property::<gst::Structure>("stats");
    let bus = receiver.bus().unwrap();
    let mut said = Vec::new();
    while let Some(msg) = bus.pop() {
        match msg.view() {
            gst::MessageView::Element(e) => {
                if let Some(s) = e
                    .structure()
                    .filter(|s| s.name() == "fanout-fec-sender-restarted")
                {
                    said.push(s.to_string());
                }
            }
            gst::MessageView::Info(i) if i.error().to_string().contains("restarted") => {
                said.push(i.error().to_string())
            }
            gst::MessageView::Warning(w) if w.error().to_string().contains("restarted") => {
                said.push(w.error().to_string())
            }
            gst::MessageView::Error(e) => panic!("{}", e.error()),
            _ => (),
        }
    }
    receiver.set_state(gst::State::Null).unwrap();
    let seen = seen.lock().unwrap();
    let got = &seen.buffers;
    assert!(
        got[..first.len()].iter().map(|b| &b.0).eq(first.iter()),
        "the first run changed"
    );
    let from_second = got.len() - first.len();
    assert!(
        arrived,
        "second run: {from_second} of {} buffers, matching {}: {stats}",
        second.len(),
        got[first.len()..]
            .iter()
            .zip(&second)
            .take_while(|(g, s)| &g.0 == *s)
            .count()
    );
    let restart = &got[first.len()];
    assert!(
        restart.1,
        "no DISCONT on the first buffer after the restart"
    );
    assert!(restart.2.contains("run=(int)2"), "caps {}", restart.2);
    assert!(got[first.len() + 1..].iter().all(|b| !b.1));
    assert_eq!(stats.get::<u64>("restarts").unwrap(), 1, "{stats}");
    assert_eq!(said.len(), 2, "{said:?}");
}
