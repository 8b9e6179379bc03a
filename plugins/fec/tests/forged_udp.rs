// SPDX-License-Identifier: MPL-2.0

//! A bare `udpsrc ! fec-depayloader` on 127.0.0.1 while a plain UDP socket sends it forged
//! datagrams (built from docs/fec-format.md with the fanout-fec packet code): the honest
//! stream arrives whole, nothing ends the pipeline, every drop is counted.

mod common;

use std::net::UdpSocket;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use fanout_fec::block::put_piece_header;
use fanout_fec::packet::{self, SymbolHeader};
use fanout_fec::{BufferMeta, Codec, Description};
use gst::prelude::*;

const SECOND: Duration = Duration::from_secs(1);

fn symbol(flow: u32, codec: Codec, block: u64, content: &[u8]) -> Vec<u8> {
    let mut data = content.to_vec();
    data.resize(1400, 0);
    let h = SymbolHeader {
        flow,
        codec,
        flags: 0,
        pool: 0,
        block,
        esi: 0,
        transfer_length: 1400,
        symbol_size: 1400,
    };
    let mut out = Vec::new();
    packet::write_symbol(&mut out, &h, &data);
    out
}

/// A block of one buffer "EVIL": content that parses.
fn evil() -> Vec<u8> {
    let mut c = Vec::new();
    put_piece_header(&mut c, true, true, &BufferMeta::default(), 4);
    c.extend_from_slice(b"EVIL");
    c
}

fn description(flow: u32, caps: &str, version: u32) -> Vec<Vec<u8>> {
    Description {
        codec: Codec::RaptorQ,
        time_segment: true,
        symbol_size: 1400,
        max_k: 100,
        repair_percent: 25,
        caps: caps.into(),
        ..Description::default()
    }
    .packets(flow, version)
}

/// Sends `frames` frames of live H.264 in MPEG-TS (also written to `sent`) to `port`.
fn sender(sent: &Path, port: u16, frames: u32) -> gst::Pipeline {
    run(&format!(
        "videotestsrc is-live=true num-buffers={frames} pattern=ball ! video/x-raw,width=320,height=240,framerate=25/1 \
         ! x264enc tune=zerolatency bitrate=1500 key-int-max=25 speed-preset=ultrafast ! mpegtsmux alignment=7 \
         ! tee name=t t. ! queue ! filesink location={} \
         t. ! queue ! fec-payloader name=pay ! udpsink host=127.0.0.1 port={port}",
        sent.display()
    ))
}

/// Waits until the receiver has every block (or gave them up), ends it; its errors and
/// warnings.
fn finish(receiver: &gst::Pipeline, blocks: u64) -> (Vec<String>, Vec<String>) {
    let depay = receiver.by_name("depay").unwrap();
    let done = |s: gst::Structure| {
        s.get::<u64>("blocks-decoded").unwrap() + s.get::<u64>("blocks-lost").unwrap()
    };
    let start = Instant::now();
    while done(depay.property("stats")) < blocks && start.elapsed() < 30 * SECOND {
        std::thread::sleep(SECOND / 10);
    }
    assert!(receiver.send_event(gst::event::Eos::new()));
    let bus = receiver.bus().unwrap();
    let (mut errors, mut warnings) = (Vec::new(), Vec::new());
    while let Some(msg) = bus.timed_pop(gst::ClockTime::from_seconds(30)) {
        match msg.view() {
            gst::MessageView::Eos(_) => break,
            gst::MessageView::Error(e) => errors.push(e.error().to_string()),
            gst::MessageView::Warning(w) => warnings.push(w.error().to_string()),
            _ => (),
        }
    }
    receiver.set_state(gst::State::Null).unwrap();
    (errors, warnings)
}

/// Forges datagrams to `port` every 20 ms until told to stop: garbage, a symbol far ahead of
/// the stream, a codec-none block for the next blocks, and now and then a description.
fn forger(port: u16, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        let start = Instant::now();
        let (mut sent, mut rounds) = (0u64, 0u32);
        while !stop.load(Ordering::Relaxed) {
            rounds += 1;
            // About where the stream is: a block every 100 ms (max-block-time).
            let block = (start.elapsed().as_millis() / 100) as u64;
            let mut forged = vec![
                vec![0x46; 200],
                symbol(0, Codec::RaptorQ, block + 200, &[7; 1400]),
                symbol(0, Codec::None, block + 2, &evil()),
            ];
            // One-off descriptions (a new version each), less often than the sender's.
            if rounds % 100 == 0 {
                forged.extend(description(0, "not caps {{", 1_000_000 + sent as u32));
                forged.extend(description(
                    0,
                    "video/x-raw, forged=(int)1",
                    2_000_000 + sent as u32,
                ));
            }
            for p in forged {
                let _ = socket.send_to(&p, ("127.0.0.1", port));
                sent += 1;
            }
            std::thread::sleep(SECOND / 50);
        }
        sent
    })
}

#[test]
fn forged_datagrams_cost_the_honest_stream_nothing_and_are_said_once() {
    let tmp = tempfile::tempdir().unwrap();
    let (sent, received) = (tmp.path().join("sent.ts"), tmp.path().join("received.ts"));
    let (receiver, port) = udp_receiver(&received);
    let stop = Arc::new(AtomicBool::new(false));
    let forging = forger(port, stop.clone());
    // Eight seconds: longer than the five an attack takes to be said.
    let sender = sender(&sent, port, 200);
    let blocks = stat(&sender, "pay", "blocks");
    stop.store(true, Ordering::Relaxed);
    let forged = forging.join().unwrap();
    let (errors, warnings) = finish(&receiver, blocks);
    let stats = receiver
        .by_name("depay")
        .unwrap()
        .property::<gst::Structure>("stats");
    assert!(errors.is_empty(), "{errors:?}");
    assert_same_file(&sent, &received);
    let get = |f: &str| stats.get::<u64>(f).unwrap();
    assert_eq!(get("blocks-lost"), 0, "{stats}");
    assert!(get("malformed") > 0 && get("inconsistent") > 0, "{stats}");
    assert!(
        get("unconfirmed") > 0 && get("unconfirmed-descriptions") > 0,
        "{stats}"
    );
    assert!(forged > 1000, "{forged}");
    let said: Vec<_> = warnings
        .iter()
        .filter(|w| w.contains("look forged"))
        .collect();
    assert_eq!(said.len(), 1, "{warnings:?}");
    assert!(
        !warnings.iter().any(|w| w.contains("could not be rebuilt")),
        "{warnings:?}"
    );
}

#[test]
fn flow_minus_one_follows_the_stream_not_a_forged_first_flow() {
    let tmp = tempfile::tempdir().unwrap();
    let (sent, received) = (tmp.path().join("sent.ts"), tmp.path().join("received.ts"));
    let (receiver, port) = udp_receiver(&received);
    // A forged flow arrives first, and keeps coming at a packet a block.
    let stop = Arc::new(AtomicBool::new(false));
    let forging = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
            let mut first = description(9, "video/x-raw, forged=(int)1", 1);
            first.push(symbol(9, Codec::None, 0, &evil()));
            for p in &first {
                socket.send_to(p, ("127.0.0.1", port)).unwrap();
            }
            let mut n = 1;
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(SECOND / 10);
                let _ = socket.send_to(&symbol(9, Codec::None, n, &evil()), ("127.0.0.1", port));
                n += 1;
            }
        })
    };
    std::thread::sleep(SECOND / 5);
    let sender = sender(&sent, port, 75);
    let blocks = stat(&sender, "pay", "blocks");
    let (errors, _) = finish(&receiver, blocks);
    stop.store(true, Ordering::Relaxed);
    forging.join().unwrap();
    let stats = receiver
        .by_name("depay")
        .unwrap()
        .property::<gst::Structure>("stats");
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(stats.get::<u64>("flow-switches").unwrap(), 1, "{stats}");
    assert!(stats.get::<u64>("other-flow").unwrap() > 0, "{stats}");
    // Only the genuine packets before the switch (the first block at most) went by.
    let (x, y) = (
        std::fs::read(&sent).unwrap(),
        std::fs::read(&received).unwrap(),
    );
    assert!(
        y.len() * 10 >= x.len() * 9 && x.ends_with(&y),
        "{} of {} bytes; {stats}",
        y.len(),
        x.len()
    );
    assert!(!y.windows(4).any(|w| w == b"EVIL"));
}
