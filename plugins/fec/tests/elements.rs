// SPDX-License-Identifier: MPL-2.0

//! fec-payloader and fec-depayloader in harnesses: exact buffers, repair requests, bad input.

mod common;

use common::*;
use fanout_fec::packet;
use gst::prelude::*;
use gst_check::Harness;

const CAPS: &str = "video/mpegts, systemstream=(boolean)true, packetsize=(int)188";

fn input(n: u64) -> Vec<gst::Buffer> {
    init();
    (0..n)
        .map(|i| {
            let data: Vec<u8> = (0..(188 * (1 + i % 40)))
                .map(|b| (b ^ i.wrapping_mul(77)) as u8)
                .collect();
            let mut b = gst::Buffer::from_mut_slice(data);
            let m = b.get_mut().unwrap();
            m.set_pts(gst::ClockTime::from_mseconds(1000 + i * 40));
            if i % 3 == 0 {
                m.set_dts(gst::ClockTime::from_mseconds(960 + i * 40));
            }
            m.set_duration(gst::ClockTime::from_mseconds(40));
            if i % 10 != 0 {
                m.set_flags(gst::BufferFlags::DELTA_UNIT);
            }
            b
        })
        .collect()
}

fn payloader(props: &str) -> Harness {
    init();
    let mut h = Harness::with_element(
        &gst::parse::launch(&format!("fec-payloader {props}")).unwrap(),
        Some("sink"),
        Some("src"),
    );
    h.set_src_caps_str(CAPS);
    h.play();
    h
}

fn depayloader(props: &str) -> Harness {
    init();
    let mut h = Harness::with_element(
        &gst::parse::launch(&format!("fec-depayloader {props}")).unwrap(),
        Some("sink"),
        Some("src"),
    );
    h.set_src_caps_str("application/x-fanout-fec");
    h.play();
    h
}

fn packets_of(h: &mut Harness) -> Vec<gst::Buffer> {
    std::iter::from_fn(|| h.try_pull()).collect()
}

fn bytes(b: &gst::Buffer) -> Vec<u8> {
    b.map_readable().unwrap().to_vec()
}

/// The packets a payloader makes of `buffers`, EOS included.
fn payload(props: &str, buffers: &[gst::Buffer]) -> (Vec<gst::Buffer>, Harness) {
    let mut pay = payloader(props);
    for b in buffers {
        pay.push(b.clone()).unwrap();
    }
    pay.push_event(gst::event::Eos::new());
    (packets_of(&mut pay), pay)
}

/// Pushes packets through a depayloader and returns what it gives out, after EOS.
fn depayload(packets: &[gst::Buffer], props: &str) -> (Vec<gst::Buffer>, Harness) {
    let mut h = depayloader(props);
    for p in packets {
        h.push(p.clone()).unwrap();
    }
    h.push_event(gst::event::Eos::new());
    let out = packets_of(&mut h);
    (out, h)
}

fn assert_same_buffers(got: &[gst::Buffer], want: &[gst::Buffer]) {
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert_eq!(bytes(g), bytes(w), "buffer {i}");
        assert_eq!(
            (g.pts(), g.dts(), g.duration()),
            (w.pts(), w.dts(), w.duration()),
            "buffer {i}"
        );
        let flags = g.flags() - gst::BufferFlags::DISCONT;
        assert_eq!(flags, w.flags(), "buffer {i}");
    }
}

#[test]
fn buffers_caps_and_timestamps_come_back_exactly() {
    let buffers = input(100);
    let (packets, pay) = payload("max-block-time=200000000", &buffers);
    assert!(packets.iter().all(|p| p.size() <= 1452));
    let (out, mut depay) = depayload(&packets, "");
    assert_same_buffers(&out, &buffers);
    let caps = depay.sinkpad().unwrap().current_caps().unwrap();
    assert_eq!(caps, CAPS.parse::<gst::Caps>().unwrap());
    // Blocks closed by time: 200 ms of 40 ms buffers is 5 buffers a block.
    let blocks = pay
        .element()
        .unwrap()
        .property::<gst::Structure>("stats")
        .get::<u64>("blocks")
        .unwrap();
    assert!((18..=22).contains(&blocks), "{blocks}");
    let segment = depay.pull_event().unwrap();
    assert!(
        segment.type_() == gst::EventType::StreamStart || segment.type_() == gst::EventType::Caps
    );
}

#[test]
fn repair_requests_answer_with_fresh_tagged_symbols() {
    // Blocks close by time, so no EOS is needed (after EOS a pad sends nothing more).
    let mut pay = payloader("repair-percent=0");
    let buffers = input(31);
    for b in &buffers {
        pay.push(b.clone()).unwrap();
    }
    let buffers = &buffers[..30];
    let packets = packets_of(&mut pay);
    // A receiver missed every fourth packet (not the first block's only one: a receiver
    // starts at the first block it sees): without repair symbols most blocks are lost.
    let kept: Vec<_> = packets
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 4 != 2)
        .map(|(_, p)| p.clone())
        .collect();
    let (out, _) = depayload(&kept, "");
    assert!(out.len() < buffers.len() / 2, "{}", out.len());

    let blocks = pay
        .element()
        .unwrap()
        .property::<gst::Structure>("stats")
        .get::<u64>("blocks")
        .unwrap();
    let mut all = kept;
    for block in 0..blocks {
        assert!(pay.push_upstream_event(gstfanoutfec::repair_request(0, block, 40, "client-7")));
        let repairs = packets_of(&mut pay);
        assert_eq!(repairs.len(), 40);
        for r in &repairs {
            let dest = gstfanoutfec::packet_destination(r).expect("tagged");
            assert_eq!(dest.get::<String>().unwrap(), "client-7");
        }
        all.extend(repairs);
    }
    // Another flow's request, and one for a block never sent, are ignored.
    assert!(pay.push_upstream_event(gstfanoutfec::repair_request(5, 0, 10, 1u32)));
    assert!(pay.push_upstream_event(gstfanoutfec::repair_request(0, 999, 10, 1u32)));
    assert!(packets_of(&mut pay).is_empty());
    let stats = pay.element().unwrap().property::<gst::Structure>("stats");
    assert_eq!(stats.get::<u64>("repair-requests").unwrap(), blocks + 1);
    assert_eq!(stats.get::<u64>("repair-requests-refused").unwrap(), 1);

    let (out, _) = depayload(&all, "");
    assert_same_buffers(&out, buffers);
}

/// A packet of another format version, its checksum valid.
fn other_version(p: &gst::Buffer) -> gst::Buffer {
    let mut b = bytes(p);
    // The version byte follows the 2-byte magic (docs/fec-format.md).
    b[2] = packet::VERSION + 1;
    let n = b.len() - packet::CRC_LEN;
    let crc = crc32c::crc32c(&b[..n]);
    b[n..].copy_from_slice(&crc.to_be_bytes());
    gst::Buffer::from_mut_slice(b)
}

/// A symbol packet rewritten with an edited header: a forgery with a valid checksum.
fn forged(p: &gst::Buffer, edit: impl FnOnce(&mut packet::SymbolHeader)) -> gst::Buffer {
    let b = bytes(p);
    let Ok(packet::Packet::Symbol { mut header, data }) = packet::parse(&b) else {
        panic!("not a symbol packet");
    };
    edit(&mut header);
    let mut out = Vec::new();
    packet::write_symbol(&mut out, &header, data);
    gst::Buffer::from_mut_slice(out)
}

#[test]
fn bad_packets_are_counted_and_never_reach_the_output() {
    let buffers = input(60);
    let (packets, _) = payload("max-block-time=0", &buffers);
    let mut mixed = Vec::new();
    let mut forged_count = 0;
    for (i, p) in packets.iter().enumerate() {
        let b = bytes(p);
        // Truncated, garbage, wrong version, bit flip.
        mixed.push(gst::Buffer::from_mut_slice(b[..b.len() / 2].to_vec()));
        mixed.push(gst::Buffer::from_mut_slice(vec![i as u8; 300]));
        mixed.push(other_version(p));
        let mut flipped = b.clone();
        flipped[b.len() / 3] ^= 0x10;
        mixed.push(gst::Buffer::from_mut_slice(flipped));
        if symbol_header(p).is_some() {
            // K (through the transfer length) changing mid-block: inconsistent, dropped.
            mixed.push(forged(p, |h| h.transfer_length += u64::from(h.symbol_size)));
            forged_count += 1;
        }
        mixed.push(p.clone());
    }
    let (out, depay) = depayload(&mixed, "");
    assert_same_buffers(&out, &buffers);
    let stats = depay.element().unwrap().property::<gst::Structure>("stats");
    assert_eq!(
        stats.get::<u64>("malformed").unwrap(),
        4 * packets.len() as u64,
        "{stats}"
    );
    let inconsistent = stats.get::<u64>("inconsistent").unwrap();
    assert!(inconsistent > 0 && inconsistent <= forged_count, "{stats}");
}

#[test]
fn a_bad_symbol_size_is_a_clear_error() {
    init();
    let pay = gst::parse::launch("fec-payloader symbol-size=1001").unwrap();
    let bus = gst::Bus::new();
    pay.set_bus(Some(&bus));
    assert!(pay.set_state(gst::State::Paused).is_err());
    let msg = bus.pop_filtered(&[gst::MessageType::Error]).unwrap();
    let gst::MessageView::Error(e) = msg.view() else {
        unreachable!()
    };
    let text = format!("{} {:?}", e.error(), e.debug());
    assert!(text.contains("symbol-size"), "{text}");
    pay.set_state(gst::State::Null).unwrap();
}

#[test]
fn latency_is_reported() {
    init();
    let p = gst::parse::launch("fakesrc is-live=true ! application/x-fanout-fec ! fec-depayloader latency=300000000 name=d ! fakesink")
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
    p.set_state(gst::State::Paused).unwrap();
    let mut q = gst::query::Latency::new();
    let d = p.by_name("d").unwrap();
    assert!(d.static_pad("src").unwrap().query(&mut q));
    assert!(q.result().1 >= gst::ClockTime::from_mseconds(300));
    p.set_state(gst::State::Null).unwrap();
}

/// A block missing its tail is given up exactly `latency` after its first packet, on the
/// pipeline clock (a test clock here), with no further packet.
#[test]
fn an_incomplete_block_is_given_up_on_the_pipeline_clock_after_the_latency() {
    let mut pay = payloader("max-block-time=0");
    for b in input(40) {
        pay.push(b).unwrap();
    }
    pay.push_event(gst::event::Eos::new());
    // Block 0 loses everything from its 60th symbol on; block 1 arrives whole.
    let mut symbols_of_0 = 0;
    let packets: Vec<_> = packets_of(&mut pay)
        .into_iter()
        .filter(|p| match symbol_header(p) {
            None => true,
            Some(h) if h.block == 0 => {
                symbols_of_0 += 1;
                symbols_of_0 < 60
            }
            Some(h) => h.block == 1,
        })
        .collect();
    // The give-up timer alone (no repair asks, which have timers of their own).
    let mut depay = depayloader("latency=50000000 repair-delay=0");
    depay.use_testclock();
    let clock = depay.testclock().unwrap();
    clock.set_time(gst::ClockTime::from_seconds(10));
    for p in packets {
        depay.push(p).unwrap();
    }
    let stat = |h: &Harness, field: &str| {
        h.element()
            .unwrap()
            .property::<gst::Structure>("stats")
            .get::<u64>(field)
            .unwrap()
    };
    // Block 1 is decoded and waits for block 0; the timer is set for 10 s + 50 ms.
    assert_eq!(stat(&depay, "blocks-decoded"), 1);
    assert!(depay.try_pull().is_none());
    let id = clock.wait_for_next_pending_id();
    assert_eq!(id.time(), gst::ClockTime::from_mseconds(10_050));
    assert_eq!(stat(&depay, "blocks-lost"), 0);

    depay.crank_single_clock_wait().unwrap();
    assert_eq!(clock.time(), gst::ClockTime::from_mseconds(10_050));
    assert_eq!(stat(&depay, "blocks-lost"), 1);
    let out = packets_of(&mut depay);
    assert!(!out.is_empty());
    assert!(out[0].flags().contains(gst::BufferFlags::DISCONT));
    assert!(out[1..]
        .iter()
        .all(|b| !b.flags().contains(gst::BufferFlags::DISCONT)));
}

#[test]
fn a_flush_starts_the_depayloader_over_cleanly() {
    let buffers = input(60);
    let (packets, _) = payload("max-block-time=0", &buffers);
    let mut depay = depayloader("");
    // Half a stream, a flush (a seek upstream), then the whole stream again.
    for p in &packets[..packets.len() / 2] {
        depay.push(p.clone()).unwrap();
    }
    let _ = packets_of(&mut depay);
    assert!(depay.push_event(gst::event::FlushStart::new()));
    assert!(depay.push_event(gst::event::FlushStop::new(true)));
    for p in &packets {
        depay.push(p.clone()).unwrap();
    }
    depay.push_event(gst::event::Eos::new());
    let out = packets_of(&mut depay);
    assert_same_buffers(&out, &buffers);
}

#[test]
fn a_lost_block_becomes_a_gap_event_and_a_discont() {
    let mut pay = payloader("max-block-time=200000000");
    let buffers = input(40);
    for b in &buffers {
        pay.push(b.clone()).unwrap();
    }
    pay.push_event(gst::event::Eos::new());
    // Every packet of block 3 is lost.
    let packets: Vec<_> = packets_of(&mut pay)
        .into_iter()
        .filter(|p| symbol_header(p).is_none_or(|h| h.block != 3))
        .collect();
    let (out, mut depay) = depayload(&packets, "");
    assert!(out.len() < buffers.len());
    let first_after = out
        .iter()
        .position(|b| b.flags().contains(gst::BufferFlags::DISCONT))
        .unwrap();
    let gap = std::iter::from_fn(|| depay.try_pull_event())
        .find(|e| e.type_() == gst::EventType::Gap)
        .expect("a GAP event");
    let gst::EventView::Gap(gap) = gap.view() else {
        unreachable!()
    };
    let (start, duration) = gap.get();
    let before = &out[first_after - 1];
    assert_eq!(start, before.pts().unwrap() + before.duration().unwrap());
    assert_eq!(start + duration.unwrap(), out[first_after].pts().unwrap());
}

#[test]
fn a_block_short_of_symbols_is_asked_for_upstream_with_what_it_needs() {
    let (packets, _pay) = payload("repair-percent=0 max-block-time=0", &input(200));
    let first_block = |p: &gst::Buffer| symbol_header(p).is_some_and(|h| h.block == 0);
    let k = packets.iter().filter(|p| first_block(p)).count() as u32;
    // Block 0 loses three packets; the next block's packets show it is over.
    let mut dropped = 0;
    let mut h = depayloader("");
    for p in &packets {
        if first_block(p) && symbol_header(p).unwrap().esi > 0 && dropped < 3 {
            dropped += 1;
            continue;
        }
        h.push(p.clone()).unwrap();
    }
    let asks: Vec<(u32, u64, u32)> = std::iter::from_fn(|| h.try_pull_upstream_event())
        .filter_map(|e| gstfanoutfec::parse_block_missing(&e))
        .collect();
    assert_eq!(
        asks.first(),
        Some(&(0, 0, 3 + 2)),
        "K - held + 2 for RaptorQ: {asks:?} (K {k})"
    );
    assert!(stats_of(&h).get::<u64>("block-missing-sent").unwrap() >= 1);
    // repair-delay=0: never asks.
    let mut h = depayloader("repair-delay=0");
    for p in packets.iter().skip(1) {
        h.push(p.clone()).unwrap();
    }
    assert!(std::iter::from_fn(|| h.try_pull_upstream_event())
        .all(|e| gstfanoutfec::parse_block_missing(&e).is_none()));
}

fn stats_of(h: &Harness) -> gst::Structure {
    h.element().unwrap().property::<gst::Structure>("stats")
}

#[test]
fn a_block_is_asked_for_again_on_the_pipeline_clock_until_it_is_given_up() {
    let (packets, _pay) = payload("repair-percent=0 max-block-time=0", &input(40));
    let mut depay = depayloader("latency=200000000 repair-delay=40000000");
    depay.use_testclock();
    let clock = depay.testclock().unwrap();
    clock.set_time(gst::ClockTime::from_seconds(10));
    // Only block 0's first half: no later block tells it is over, the clock must.
    let mut half = 0;
    for p in packets
        .iter()
        .filter(|p| symbol_header(p).is_none_or(|h| h.block == 0))
    {
        if symbol_header(p).is_some() {
            half += 1;
            if half > 30 {
                continue;
            }
        }
        depay.push(p.clone()).unwrap();
    }
    let asks = |h: &mut Harness| {
        std::iter::from_fn(|| h.try_pull_upstream_event())
            .filter(|e| gstfanoutfec::parse_block_missing(e).is_some())
            .count()
    };
    assert_eq!(asks(&mut depay), 0, "not before the delay");
    for at in [10_040, 10_080, 10_120] {
        let id = clock.wait_for_next_pending_id();
        assert_eq!(id.time(), gst::ClockTime::from_mseconds(at));
        depay.crank_single_clock_wait().unwrap();
        assert!(wait(|| asks(&mut depay) == 1), "an ask at {at} ms");
    }
    // Three asks at most; then the give-up at 10.2 s.
    let id = clock.wait_for_next_pending_id();
    assert_eq!(id.time(), gst::ClockTime::from_mseconds(10_200));
}

fn wait(mut f: impl FnMut() -> bool) -> bool {
    let start = std::time::Instant::now();
    while start.elapsed() < std::time::Duration::from_secs(5) {
        if f() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    false
}

#[test]
fn a_block_incomplete_at_eos_is_counted_said_with_its_size_and_summed_up() {
    let (packets, _) = payload("max-block-time=0", &input(40));
    let last = packets
        .iter()
        .filter_map(|p| symbol_header(p))
        .map(|h| h.block)
        .max()
        .unwrap();
    // The last block keeps only its first 3 symbols: it cannot be rebuilt.
    let mut kept_of_last = 0;
    let packets: Vec<_> = packets
        .into_iter()
        .filter(|p| match symbol_header(p) {
            Some(h) if h.block == last => {
                kept_of_last += 1;
                kept_of_last <= 3
            }
            _ => true,
        })
        .collect();
    let mut depay = depayloader("repair-delay=0");
    let bus = gst::Bus::new();
    depay.element().unwrap().set_bus(Some(&bus));
    for p in packets {
        depay.push(p).unwrap();
    }
    depay.push_event(gst::event::Eos::new());
    assert_eq!(stats_of(&depay).get::<u64>("blocks-lost").unwrap(), 1);
    let messages: Vec<gst::Message> = std::iter::from_fn(|| bus.pop()).collect();
    let warning = messages
        .iter()
        .find_map(|m| match m.view() {
            gst::MessageView::Warning(w) => Some(w.error().to_string()),
            _ => None,
        })
        .expect("a warning for the lost block");
    assert!(
        warning.contains(&format!("from block {last} (about ")) && !warning.contains("about 0 "),
        "{warning}"
    );
    let summary = messages
        .iter()
        .find_map(|m| match m.view() {
            gst::MessageView::Info(i) => Some(i.error().to_string()),
            _ => None,
        })
        .expect("a summary at EOS");
    assert!(summary.contains(", 1 lost (about "), "{summary}");
    let stats = messages.iter().any(|m| {
        m.structure()
            .is_some_and(|s| s.name() == "fanout-fec-depayloader-stats")
    });
    assert!(stats, "the final stats on the bus");
}
