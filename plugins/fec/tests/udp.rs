// SPDX-License-Identifier: MPL-2.0

//! The README's pair of pipelines on 127.0.0.1: a live stream sent as FEC packets with
//! udpsink, rebuilt from udpsrc with no SDP, byte for byte.

mod common;

use common::*;
use gst::prelude::*;

#[test]
fn a_live_stream_crosses_udp_and_is_rebuilt_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let (sent, received) = (tmp.path().join("sent.ts"), tmp.path().join("received.ts"));
    let (receiver, port) = udp_receiver(&received);
    assert!(port > 0);

    // The sender joins a receiver that is already there; it could as well join late.
    let sender = run(&format!(
        "videotestsrc is-live=true num-buffers=75 pattern=ball ! video/x-raw,width=320,height=240,framerate=25/1 \
         ! x264enc tune=zerolatency bitrate=1500 key-int-max=25 speed-preset=ultrafast ! mpegtsmux alignment=7 \
         ! tee name=t t. ! queue ! filesink location={} \
         t. ! queue ! fec-payloader name=pay ! udpsink host=127.0.0.1 port={port}",
        sent.display()
    ));
    let blocks = stat(&sender, "pay", "blocks");
    // Wait until every block is in (or given up), then stop the receiver.
    let start = std::time::Instant::now();
    let depay = receiver.by_name("depay").unwrap();
    let done = |s: gst::Structure| {
        s.get::<u64>("blocks-decoded").unwrap() + s.get::<u64>("blocks-lost").unwrap()
    };
    while done(depay.property("stats")) < blocks && start.elapsed() < 30 * SECOND {
        std::thread::sleep(SECOND / 10);
    }
    // EOS through the receiver: once the filesink has it, every rebuilt byte is in the file.
    assert!(receiver.send_event(gst::event::Eos::new()));
    let eos = receiver
        .bus()
        .unwrap()
        .timed_pop_filtered(30 * gst::ClockTime::SECOND, &[gst::MessageType::Eos]);
    receiver.set_state(gst::State::Null).unwrap();
    assert!(eos.is_some(), "the receiver did not end");
    let stats = depay.property::<gst::Structure>("stats");
    assert_eq!(stats.get::<u64>("blocks-lost").unwrap(), 0, "{stats}");
    assert_same_file(&sent, &received);
}
