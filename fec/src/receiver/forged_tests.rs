//! A bare receiver fed forged packets among an honest stream: what they may cost.

use super::*;
use crate::block::put_piece_header;
use crate::packet::{write_symbol, SymbolHeader, FLAG_REPAIR};
use crate::{BufferMeta, Sender, SenderConfig};

use super::test_streams::{at, blocks_of, moved, BLOCK_TIME, MS};

/// `n` buffers, one block each: the packets of each block (descriptions included) and the
/// buffers themselves.
fn stream(codec: Codec, n: u64) -> (Vec<Vec<Vec<u8>>>, Vec<Vec<u8>>) {
    let mut sender = Sender::new(SenderConfig {
        codec,
        ..SenderConfig::default()
    })
    .unwrap();
    sender
        .set_stream("application/x-test".into(), true)
        .unwrap();
    blocks_of(sender, n, 0)
}

fn header(p: &[u8]) -> Option<SymbolHeader> {
    match packet::parse(p) {
        Ok(Packet::Symbol { header, .. }) => Some(header),
        _ => None,
    }
}

/// A forged block of one symbol, `codec` and K = 1, whose content parses: one buffer "EVIL".
fn injected(codec: Codec, block: u64, symbol_size: u16) -> Vec<u8> {
    let mut content = Vec::new();
    put_piece_header(&mut content, true, true, &BufferMeta::default(), 4);
    content.extend_from_slice(b"EVIL");
    content.resize(usize::from(symbol_size), 0);
    let h = SymbolHeader {
        flow: 0,
        codec,
        flags: 0,
        pool: 0,
        block,
        esi: 0,
        transfer_length: u64::from(symbol_size),
        symbol_size,
    };
    let mut out = Vec::new();
    write_symbol(&mut out, &h, &content);
    out
}

fn buffers(out: &[Output]) -> Vec<Vec<u8>> {
    out.iter()
        .filter_map(|o| match o {
            Output::Buffer { data, .. } => Some(data.as_ref().to_vec()),
            _ => None,
        })
        .collect()
}

/// Feeds block `i` at `i * BLOCK_TIME` (timers fired first, as the element's would), with
/// `extra(i)` after it; checks that every block is out by the time its packets are in.
fn run(
    rx: &mut Receiver,
    blocks: &[Vec<Vec<u8>>],
    extra: impl Fn(u64) -> Vec<Vec<u8>>,
) -> Vec<Output> {
    let mut out = Vec::new();
    for (i, packets) in blocks.iter().enumerate() {
        let now = i as u64 * BLOCK_TIME;
        rx.handle_timeout(at(now), &mut out);
        for p in packets.iter().cloned().chain(extra(i as u64)) {
            rx.push(&p, at(now), &mut out);
        }
        assert_eq!(
            buffers(&out).len(),
            i + 1,
            "block {i} held back: {:?}",
            rx.stats
        );
    }
    rx.finish(&mut out);
    out
}

#[test]
fn a_forged_symbol_far_ahead_costs_no_earlier_block_and_no_output_time() {
    let (blocks, input) = stream(Codec::RaptorQ, 30);
    let forged = moved(&blocks[0][3], 250);
    let mut rx = Receiver::new(ReceiverConfig::default());
    let out = run(&mut rx, &blocks, |i| {
        if i == 0 {
            vec![forged.clone()]
        } else {
            vec![]
        }
    });
    assert_eq!(buffers(&out), input);
    assert_eq!(rx.stats.blocks_lost, 0, "{:?}", rx.stats);
}

#[test]
fn one_forged_symbol_per_block_far_ahead_loses_nothing() {
    let (blocks, input) = stream(Codec::RaptorQ, 40);
    let mut rx = Receiver::new(ReceiverConfig::default());
    let out = run(&mut rx, &blocks, |i| vec![moved(&blocks[0][3], i + 250)]);
    assert_eq!(buffers(&out), input);
    assert_eq!(rx.stats.blocks_lost, 0, "{:?}", rx.stats);
}

#[test]
fn a_real_outage_of_many_blocks_is_still_given_up_and_followed() {
    let (blocks, input) = stream(Codec::RaptorQ, 60);
    let mut rx = Receiver::new(ReceiverConfig::default());
    let mut out = Vec::new();
    // Blocks 5..=34 never arrive: 30 blocks, further than NEAR_BLOCKS.
    for (i, packets) in blocks.iter().enumerate() {
        let now = i as u64 * BLOCK_TIME;
        rx.handle_timeout(at(now), &mut out);
        if (5..35).contains(&i) {
            continue;
        }
        for p in packets {
            rx.push(p, at(now), &mut out);
        }
    }
    // Within a second of the stream's return, it flows again.
    let got = buffers(&out);
    assert!(got.ends_with(&input[45..]), "{:?}", rx.stats);
    assert_eq!(rx.stats.blocks_lost, 30, "{:?}", rx.stats);
}

#[test]
fn the_genuine_variant_wins_over_a_forged_codec_none_k1_block() {
    let (blocks, input) = stream(Codec::RaptorQ, 10);
    let mut rx = Receiver::new(ReceiverConfig::default());
    // Each block's forgery arrives just before it.
    let mut fed = blocks.clone();
    for (i, packets) in fed.iter_mut().enumerate() {
        packets.insert(0, injected(Codec::None, i as u64, 1400));
    }
    let out = run(&mut rx, &fed, |_| vec![]);
    assert_eq!(buffers(&out), input);
    assert!(rx.stats.inconsistent >= 10, "{:?}", rx.stats);
}

#[test]
fn the_variant_with_most_packets_wins_over_a_forged_one_that_fits() {
    let (blocks, input) = stream(Codec::RaptorQ, 6);
    let mut rx = Receiver::new(ReceiverConfig::default());
    let mut out = Vec::new();
    // A RaptorQ K = 1 forgery for block 3 first, then block 3 itself ahead of block 2.
    let forged = injected(Codec::RaptorQ, 3, 1400);
    let order = [0, 1, 3, 2, 4, 5];
    rx.push(&blocks[0][0], at(0), &mut out);
    for (n, &b) in order.iter().enumerate() {
        if b == 3 {
            rx.push(&forged, at(n as u64 * MS), &mut out);
        }
        for p in &blocks[b] {
            rx.push(p, at(n as u64 * MS), &mut out);
        }
    }
    rx.finish(&mut out);
    assert_eq!(buffers(&out), input, "{:?}", rx.stats);
    assert_eq!(rx.stats.outvoted, 1, "{:?}", rx.stats);
}

#[test]
fn a_forged_variant_of_one_packet_cannot_keep_the_genuine_one_out() {
    let (blocks, input) = stream(Codec::RaptorQ, 4);
    let mut rx = Receiver::new(ReceiverConfig::default());
    let mut out = Vec::new();
    let repair = |p: &Vec<u8>| header(p).is_some_and(|h| h.flags & FLAG_REPAIR != 0);
    for (i, packets) in blocks.iter().enumerate() {
        // Three forged variants of block i (another F, same codec and T) come first.
        for f in 1..=3u64 {
            let p = injected(Codec::RaptorQ, i as u64, 1400);
            let mut q = Vec::new();
            if let Ok(Packet::Symbol { mut header, data }) = packet::parse(&p) {
                header.transfer_length = 1400 * (f + 4);
                write_symbol(&mut q, &header, data);
            }
            rx.push(&q, at(0), &mut out);
        }
        for p in packets.iter().filter(|p| !repair(p)) {
            rx.push(p, at(0), &mut out);
        }
    }
    rx.finish(&mut out);
    assert_eq!(buffers(&out), input, "{:?}", rx.stats);
}

fn description_packets(caps: &str, symbol_size: u16, version: u32) -> Vec<Vec<u8>> {
    let desc = Description {
        codec: Codec::RaptorQ,
        time_segment: true,
        symbol_size,
        max_k: 100,
        repair_percent: 25,
        caps: caps.into(),
        ..Description::default()
    };
    desc.packets(0, version)
}

fn caps_given(out: &[Output]) -> Vec<String> {
    out.iter()
        .filter_map(|o| match o {
            Output::Description(d) => Some(d.caps.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn a_forged_description_mid_stream_is_not_applied_unless_confirmed() {
    let (blocks, input) = stream(Codec::RaptorQ, 40);
    let mut rx = Receiver::new(ReceiverConfig::default());
    let forged = description_packets("video/x-raw, forged=(int)1", 1400, 0xdead);
    // Early, so that the sender's repetitions outnumber it within the run.
    let out = run(&mut rx, &blocks, |i| match i {
        3 => forged.clone(),
        _ => vec![],
    });
    assert_eq!(caps_given(&out), vec!["application/x-test".to_owned()]);
    assert_eq!(buffers(&out), input);
    assert_eq!(rx.stats.unconfirmed_descriptions, 1, "{:?}", rx.stats);
}

#[test]
fn a_forged_first_description_loses_to_the_genuine_one() {
    let (blocks, input) = stream(Codec::RaptorQ, 20);
    let mut rx = Receiver::new(ReceiverConfig::default());
    let mut out = Vec::new();
    // Before anything: one that does not fit the symbols (T) and garbage caps.
    for p in description_packets("not caps {{", 1392, 7) {
        rx.push(&p, at(0), &mut out);
    }
    let out = {
        for (i, packets) in blocks.iter().enumerate() {
            for p in packets {
                rx.push(p, at(i as u64 * BLOCK_TIME), &mut out);
            }
        }
        rx.finish(&mut out);
        out
    };
    assert_eq!(caps_given(&out), vec!["application/x-test".to_owned()]);
    assert_eq!(buffers(&out), input);
}

#[test]
fn a_genuine_change_of_description_takes_effect_at_its_repetition() {
    let mut sender = Sender::new(SenderConfig::default()).unwrap();
    sender.set_stream("application/x-a".into(), true).unwrap();
    let mut packets = Vec::new();
    let buffer = |i: u64| (0..2000).map(|b| (b + i) as u8).collect::<Vec<u8>>();
    for i in 0..60 {
        if i == 20 {
            sender.set_stream("application/x-b".into(), true).unwrap();
        }
        sender.push_buffer(&BufferMeta::default(), &buffer(i), &mut packets);
        sender.flush(&mut packets);
    }
    let mut rx = Receiver::new(ReceiverConfig::default());
    let mut out = Vec::new();
    for p in &packets {
        rx.push(p, at(0), &mut out);
    }
    rx.finish(&mut out);
    assert_eq!(caps_given(&out), vec!["application/x-a", "application/x-b"]);
    assert_eq!(buffers(&out).len(), 60);
}

/// A genuine packet rewritten for another flow (valid checksum).
fn other_flow(p: &[u8], flow: u32) -> Vec<u8> {
    let mut q = p.to_vec();
    q[4..8].copy_from_slice(&flow.to_be_bytes());
    let n = q.len() - packet::CRC_LEN;
    let crc = crc32c::crc32c(&q[..n]);
    q[n..].copy_from_slice(&crc.to_be_bytes());
    q
}

#[test]
fn flow_minus_one_follows_the_flow_that_keeps_coming_not_the_first_seen() {
    let (blocks, input) = stream(Codec::RaptorQ, 30);
    let mut rx = Receiver::new(ReceiverConfig::default());
    let mut out = Vec::new();
    // One forged packet of flow 9 first, then one per block among the genuine stream.
    rx.push(&other_flow(&blocks[0][1], 9), at(0), &mut out);
    for (i, packets) in blocks.iter().enumerate() {
        let now = i as u64 * BLOCK_TIME;
        rx.handle_timeout(at(now), &mut out);
        for p in packets {
            rx.push(p, at(now), &mut out);
        }
        rx.push(&other_flow(&packets[1], 9), at(now), &mut out);
    }
    rx.finish(&mut out);
    assert_eq!(rx.flow(), Some(0));
    assert_eq!(rx.stats.flow_switches, 1, "{:?}", rx.stats);
    // Only the first genuine packets went by before the switch.
    let got = buffers(&out);
    assert!(got.len() >= 25 && input.ends_with(&got), "{:?}", rx.stats);
}

#[test]
fn a_sustained_attack_is_said_once_and_every_drop_counted() {
    let (blocks, input) = stream(Codec::RaptorQ, 100);
    let mut rx = Receiver::new(ReceiverConfig::default());
    // Per block: garbage, a far-ahead symbol, a forged block, a forged description.
    let out = run(&mut rx, &blocks, |i| {
        let mut v = vec![vec![0x46; 100], moved(&blocks[0][3], i + 250)];
        v.push(injected(Codec::None, i + 1, 1400));
        v.extend(description_packets(
            &format!("x/forged-{i}"),
            1400,
            1000 + i as u32,
        ));
        v
    });
    assert_eq!(buffers(&out), input);
    let said = out
        .iter()
        .filter(|o| matches!(o, Output::Attack { .. }))
        .count();
    assert_eq!(said, 1);
    let st = rx.stats;
    assert_eq!(st.malformed, 100, "{st:?}");
    assert!(st.unconfirmed >= 90 && st.inconsistent >= 100, "{st:?}");
    assert!(st.unconfirmed_descriptions >= 90, "{st:?}");
    assert_eq!(st.blocks_lost, 0, "{st:?}");
}

#[test]
fn a_forged_description_repeated_less_often_than_the_senders_never_takes_effect() {
    let (blocks, input) = stream(Codec::RaptorQ, 100);
    let mut rx = Receiver::new(ReceiverConfig::default());
    // Also first, before the sender's own.
    let forged = |i: u64| description_packets("video/x-raw, forged=(int)1", 1400, i as u32);
    let mut out = Vec::new();
    for p in forged(0) {
        rx.push(&p, at(0), &mut out);
    }
    let out = {
        let mut rest = run(&mut rx, &blocks, |i| match i % 20 {
            0 => forged(i),
            _ => vec![],
        });
        out.append(&mut rest);
        out
    };
    assert_eq!(caps_given(&out), vec!["application/x-test".to_owned()]);
    assert_eq!(buffers(&out), input);
}

#[test]
fn a_forged_symbol_far_ahead_before_the_stream_costs_nothing_either() {
    let (blocks, input) = stream(Codec::RaptorQ, 30);
    let mut rx = Receiver::new(ReceiverConfig::default());
    let mut out = Vec::new();
    rx.push(&moved(&blocks[0][3], 200), at(0), &mut out);
    let out = {
        let mut rest = run(&mut rx, &blocks, |i| vec![moved(&blocks[0][3], i + 201)]);
        out.append(&mut rest);
        out
    };
    assert_eq!(buffers(&out), input);
    assert_eq!(rx.stats.blocks_lost, 0, "{:?}", rx.stats);
}
