//! Sender to receiver through lossy, reordered, merged and damaged packet streams.

use fanout_fec::packet::{self, Packet, SymbolHeader};
use std::time::Duration;

use fanout_fec::{
    BufferMeta, Codec, Mode, Mono, Output, Receiver, ReceiverConfig, Sender, SenderConfig,
};

/// `ns` on the receiver's (or the sender's) clock.
fn at(ns: u64) -> Mono {
    Mono::from_nanos(ns)
}

/// xorshift64*: deterministic loss patterns without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn chance(&mut self, p: f64) -> bool {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }
}

fn buffers(n: usize, seed: u64) -> Vec<(BufferMeta, Vec<u8>)> {
    let mut rng = Rng(seed);
    (0..n)
        .map(|i| {
            let len = match i % 7 {
                0 => 0,
                1 => 200_000,
                _ => (rng.next() % 3000) as usize,
            };
            let data = (0..len).map(|_| rng.next() as u8).collect();
            let meta = BufferMeta {
                pts: (i % 5 != 0).then_some(i as u64 * 40_000_000),
                dts: (i % 3 == 0).then_some(i as u64),
                duration: Some(40_000_000),
                flags: (i % 4) as u32 * 0x2000,
            };
            (meta, data)
        })
        .collect()
}

fn send(cfg: SenderConfig, input: &[(BufferMeta, Vec<u8>)]) -> Vec<Vec<u8>> {
    let mut sender = Sender::new(cfg).unwrap();
    sender
        .set_stream("application/x-test".into(), true)
        .unwrap();
    let mut out = Vec::new();
    for (meta, data) in input {
        sender.push_buffer(meta, data, &mut out);
    }
    sender.flush(&mut out);
    out
}

fn receive(packets: impl IntoIterator<Item = Vec<u8>>) -> (Vec<Output>, Receiver) {
    let mut rx = Receiver::new(ReceiverConfig::default());
    let mut out = Vec::new();
    for p in packets {
        rx.push(&p, at(0), &mut out);
    }
    rx.finish(&mut out);
    (out, rx)
}

fn buffers_of(outputs: &[Output]) -> Vec<(BufferMeta, Vec<u8>)> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Buffer { meta, data, .. } => Some((*meta, data.as_ref().to_vec())),
            _ => None,
        })
        .collect()
}

/// Whether the outputs hold exactly the input buffers, in order (kept short on failure).
fn same(outputs: &[Output], input: &[(BufferMeta, Vec<u8>)]) -> bool {
    buffers_of(outputs) == input
}

/// Alternates between two packet streams, then gives the rest of the longer.
fn interleave(a: Vec<Vec<u8>>, b: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut a, mut b) = (a.into_iter(), b.into_iter());
    loop {
        match (a.next(), b.next()) {
            (None, None) => return out,
            (x, y) => out.extend(x.into_iter().chain(y)),
        }
    }
}

fn config(codec: Codec) -> SenderConfig {
    SenderConfig {
        codec,
        ..SenderConfig::default()
    }
}

#[test]
fn every_codec_round_trips_without_loss() {
    let input = buffers(60, 1);
    for codec in [Codec::None, Codec::RaptorQ, Codec::ReedSolomon] {
        let (out, rx) = receive(send(config(codec), &input));
        assert!(matches!(out[0], Output::Description(_)), "{codec:?}");
        assert!(same(&out, &input), "{codec:?}");
        assert_eq!(rx.stats.blocks_lost, 0);
        assert_eq!(rx.stats.blocks_recovered, 0);
        let sent: usize = input.iter().map(|(_, d)| d.len()).sum();
        assert_eq!(rx.stats.bytes_out, sent as u64);
        // A healthy stream reads healthy: unneeded repair symbols are surplus, not late.
        assert_eq!(rx.stats.late, 0, "{codec:?}");
        if codec != Codec::None {
            assert!(rx.stats.surplus > 0, "{codec:?}: {:?}", rx.stats);
        }
    }
}

#[test]
fn random_loss_is_repaired() {
    let input = buffers(60, 2);
    for codec in [Codec::RaptorQ, Codec::ReedSolomon] {
        let mut rng = Rng(3);
        let packets = send(config(codec), &input);
        let (out, rx) = receive(packets.into_iter().filter(|_| !rng.chance(0.1)));
        assert!(same(&out, &input), "{codec:?}: {:?}", rx.stats);
        assert!(rx.stats.blocks_recovered > 0);
    }
}

#[test]
fn reordered_and_duplicated_packets_merge() {
    let input = buffers(30, 4);
    let mut packets = send(config(Codec::RaptorQ), &input);
    let dup = packets.clone();
    packets.extend(dup);
    // Swap neighbours within each block's run of packets.
    for pair in packets.chunks_mut(2) {
        pair.reverse();
    }
    let mut rng = Rng(5);
    let (out, rx) = receive(packets.into_iter().filter(|_| !rng.chance(0.05)));
    assert!(same(&out, &input));
    assert!(rx.stats.duplicates + rx.stats.surplus > 0);
}

#[test]
fn a_lost_block_drops_only_its_buffers_and_marks_discont() {
    let input = buffers(40, 6);
    let packets = send(config(Codec::RaptorQ), &input);
    // Drop every packet of block 2.
    let packets = packets
        .into_iter()
        .filter(|p| symbol_header(p).is_none_or(|h| h.block != 2));
    let (out, rx) = receive(packets);
    assert_eq!(rx.stats.blocks_lost, 1);
    assert!(rx.stats.lost_bytes > 0);
    // Nothing of block 2 came: its size is guessed from the latest block's K and T.
    assert!(out.iter().any(|o| matches!(
        o,
        Output::Lost { first: 2, count: 1, bytes } if *bytes > 0
    )));
    let got = buffers_of(&out);
    assert!(got.len() < input.len() && got.len() > input.len() / 2);
    // Everything given out is exactly an input buffer, in order.
    let mut it = input.iter();
    for b in &got {
        assert!(it.any(|i| i == b));
    }
    // The first buffer after the loss (past the GAP, if any) is marked.
    let after = out
        .iter()
        .skip_while(|o| !matches!(o, Output::Lost { .. }))
        .find(|o| matches!(o, Output::Buffer { .. }));
    assert!(matches!(after, Some(Output::Buffer { discont: true, .. })));
}

#[test]
fn two_senders_with_disjoint_repair_merge() {
    let input = buffers(40, 7);
    let a = send(config(Codec::RaptorQ), &input);
    let b = send(
        SenderConfig {
            first_repair: 1_000_000,
            send_source: false,
            repair_percent: 100,
            ..config(Codec::RaptorQ)
        },
        &input,
    );
    let mut rng = Rng(8);
    let a_lossy: Vec<_> = a.into_iter().filter(|_| !rng.chance(0.3)).collect();
    let b_lossy: Vec<_> = b.into_iter().filter(|_| !rng.chance(0.3)).collect();
    let (alone, _) = receive(a_lossy.clone());
    assert!(
        !same(&alone, &input),
        "30 % loss must beat 25 % repair alone"
    );
    let (out, rx) = receive(interleave(a_lossy, b_lossy));
    assert!(same(&out, &input), "{:?}", rx.stats);
}

#[test]
fn carousel_late_joiner_gets_everything() {
    let input = buffers(40, 9);
    let cfg = SenderConfig {
        mode: Mode::Carousel,
        window: 0,
        description_interval: 16,
        ..config(Codec::RaptorQ)
    };
    let mut sender = Sender::new(cfg).unwrap();
    sender
        .set_stream("application/x-test".into(), false)
        .unwrap();
    let mut packets = Vec::new();
    for (meta, data) in &input {
        sender.push_buffer(meta, data, &mut packets);
    }
    sender.flush(&mut packets);
    let live = packets.len();
    // After the input ends the carousel goes round once more.
    for _ in 0..sender.window_blocks() {
        assert!(sender.carousel_round(&mut packets));
    }
    let (out, rx) = receive(packets.into_iter().skip(live / 2));
    assert!(same(&out, &input), "{:?}", rx.stats);
}

#[test]
fn repair_requests_give_fresh_symbols() {
    let input = buffers(10, 10);
    let mut sender = Sender::new(config(Codec::RaptorQ)).unwrap();
    sender
        .set_stream("application/x-test".into(), true)
        .unwrap();
    let mut packets = Vec::new();
    for (meta, data) in &input {
        sender.push_buffer(meta, data, &mut packets);
    }
    sender.flush(&mut packets);
    // Half the packets of every block are lost; requests replace them.
    let kept: Vec<_> = packets.iter().step_by(2).cloned().collect();
    let (out, _) = receive(kept.clone());
    assert!(!same(&out, &input));
    let mut all = kept;
    for block in 0..sender.next_block() {
        all.extend(sender.repair(block, 200).unwrap());
    }
    assert!(sender.repair(sender.next_block() + 5, 1).is_err());
    let (out, _) = receive(all);
    assert!(same(&out, &input));
}

#[test]
fn damaged_packets_are_counted_and_never_output() {
    let input = buffers(30, 11);
    let packets = send(config(Codec::RaptorQ), &input);
    let mut rng = Rng(12);
    let mut damaged = Vec::new();
    for p in &packets {
        damaged.push(p.clone());
        let mut bad = p.clone();
        let i = (rng.next() as usize) % bad.len();
        bad[i] ^= 1 << (rng.next() % 8);
        damaged.push(bad);
        damaged.push(p[..(rng.next() as usize) % p.len()].to_vec());
        let mut v9 = p.clone();
        v9[2] = 9;
        damaged.push(v9);
    }
    let (out, rx) = receive(damaged);
    assert!(same(&out, &input));
    assert_eq!(rx.stats.malformed, 3 * packets.len() as u64);
}

#[test]
fn flows_are_kept_apart() {
    let a_in = buffers(20, 13);
    let b_in = buffers(20, 14);
    let a = send(
        SenderConfig {
            flow: 1,
            ..config(Codec::RaptorQ)
        },
        &a_in,
    );
    let b = send(
        SenderConfig {
            flow: 2,
            ..config(Codec::RaptorQ)
        },
        &b_in,
    );
    let mixed = interleave(a, b);
    for (flow, expect) in [(1, &a_in), (2, &b_in)] {
        let mut rx = Receiver::new(ReceiverConfig {
            flow: Some(flow),
            ..ReceiverConfig::default()
        });
        let mut out = Vec::new();
        for p in &mixed {
            rx.push(p, at(0), &mut out);
        }
        rx.finish(&mut out);
        assert!(same(&out, expect));
        assert!(rx.stats.other_flow > 0);
    }
}

#[test]
fn an_incomplete_block_is_given_up_after_the_latency() {
    let input = buffers(20, 15);
    let packets = send(config(Codec::RaptorQ), &input);
    let mut rx = Receiver::new(ReceiverConfig::default());
    let mut out = Vec::new();
    // Block 0 gets only its first packets; block 1 arrives whole, later.
    for p in packets
        .iter()
        .filter(|p| symbol_header(p).is_none_or(|h| h.block != 0 || h.esi < 3))
    {
        rx.push(p, at(1_000), &mut out);
    }
    let deadline = rx
        .poll_timeout()
        .map(Mono::as_nanos)
        .expect("waiting for block 0");
    assert_eq!(deadline, 1_000 + 200_000_000);
    rx.handle_timeout(at(deadline - 1), &mut out);
    assert!(!out.iter().any(|o| matches!(o, Output::Lost { .. })));
    rx.handle_timeout(at(deadline), &mut out);
    let f = packets
        .iter()
        .find_map(|p| symbol_header(p).filter(|h| h.block == 0))
        .unwrap()
        .params()
        .transfer_length;
    assert!(out.contains(&Output::Lost {
        first: 0,
        count: 1,
        bytes: f
    }));
    // Its symbols arriving now are late; a rebuilt block's unneeded ones are surplus.
    let late = packets
        .iter()
        .filter(|p| symbol_header(p).is_some_and(|h| h.block == 0 && h.esi >= 3));
    for p in late {
        rx.push(p, at(deadline + 1), &mut out);
    }
    assert!(rx.stats.late > 0);
    assert_eq!(rx.stats.surplus, 0);
    assert!(buffers_of(&out).len() > 1);
}

/// A symbol packet rewritten with an edited header and the first `len` bytes of its symbol:
/// a forgery with a valid checksum.
fn forged(p: &[u8], edit: impl FnOnce(&mut SymbolHeader), len: usize) -> Vec<u8> {
    let Ok(Packet::Symbol { mut header, data }) = packet::parse(p) else {
        panic!("not a symbol packet");
    };
    edit(&mut header);
    header.symbol_size = len as u16;
    let mut out = Vec::new();
    packet::write_symbol(&mut out, &header, &data[..len]);
    out
}

/// A symbol packet moved to another block number.
fn moved_to_block(p: &[u8], block: u64) -> Vec<u8> {
    let len = symbol_header(p).unwrap().symbol_size.into();
    forged(p, |h| h.block = block, len)
}

#[test]
fn a_far_away_block_number_costs_one_lost_run_not_a_loop() {
    let input = buffers(20, 16);
    let packets = send(config(Codec::RaptorQ), &input);
    // A forged symbol for a block a billion blocks on arrives among the first packets.
    let mut mixed = vec![packets[0].clone(), moved_to_block(&packets[1], 1 << 30)];
    mixed.extend(packets.iter().skip(1).cloned());
    let (out, rx) = receive(mixed);
    assert!(same(&out, &input), "{:?}", rx.stats);
    let lost: Vec<_> = out
        .iter()
        .filter(|o| matches!(o, Output::Lost { .. }))
        .collect();
    assert!(lost.len() <= 2, "{lost:?}");
}

#[test]
fn a_restarted_sender_is_followed_after_a_run_of_far_packets() {
    let input = buffers(20, 17);
    let packets = send(config(Codec::RaptorQ), &input);
    let mut rx = Receiver::new(ReceiverConfig::default());
    let mut out = Vec::new();
    for p in &packets {
        rx.push(p, at(0), &mut out);
    }
    // The same sender starts over at block 0 after thousands of blocks.
    let moved: Vec<_> = packets
        .iter()
        .map(|p| match symbol_header(p) {
            Some(h) => moved_to_block(p, 5000 + h.block),
            None => p.clone(),
        })
        .collect();
    for p in moved.iter().chain(&packets).cycle().take(4 * packets.len()) {
        rx.push(p, at(0), &mut out);
    }
    assert!(rx.stats.resyncs >= 1, "{:?}", rx.stats);
}

#[test]
fn a_carousel_receiver_there_from_the_start_gets_everything() {
    let input = buffers(30, 18);
    let packets = send(
        SenderConfig {
            mode: Mode::Carousel,
            window: 0,
            ..config(Codec::RaptorQ)
        },
        &input,
    );
    let (out, rx) = receive(packets);
    assert!(same(&out, &input), "{:?}", rx.stats);
    assert_eq!(rx.stats.blocks_lost, 0);
}

#[test]
fn blocks_close_by_time_when_buffers_have_timestamps() {
    let mut sender = Sender::new(SenderConfig {
        max_block_time: Duration::from_millis(100),
        ..config(Codec::RaptorQ)
    })
    .unwrap();
    let mut out = Vec::new();
    for i in 0..30u64 {
        let meta = BufferMeta {
            pts: Some(i * 40_000_000),
            ..BufferMeta::default()
        };
        sender.push_buffer(&meta, &[i as u8; 100], &mut out);
    }
    // 0, 40 and 80 ms make a block; the buffer at 120 ms opens the next.
    assert_eq!(sender.stats.blocks, 9);
    // Without timestamps only size closes blocks.
    let mut sender = Sender::new(config(Codec::RaptorQ)).unwrap();
    for i in 0..30u8 {
        sender.push_buffer(&BufferMeta::default(), &[i; 100], &mut out);
    }
    assert_eq!(sender.stats.blocks, 0);
}

#[test]
fn a_lost_block_is_reported_as_the_time_it_covered() {
    let input: Vec<_> = (0..40u64)
        .map(|i| {
            let meta = BufferMeta {
                pts: Some(i * 40_000_000),
                duration: Some(40_000_000),
                ..BufferMeta::default()
            };
            (meta, vec![i as u8; 20_000])
        })
        .collect();
    let packets = send(config(Codec::RaptorQ), &input);
    let (out, _) = receive(
        packets
            .into_iter()
            .filter(|p| symbol_header(p).is_none_or(|h| h.block != 2)),
    );
    let at = out
        .iter()
        .position(|o| matches!(o, Output::Gap { .. }))
        .expect("a gap");
    let Output::Gap { start, duration } = out[at] else {
        unreachable!()
    };
    let meta = |o: &Output| match o {
        Output::Buffer { meta, discont, .. } => Some((*meta, *discont)),
        _ => None,
    };
    let (before, _) = out[..at].iter().rev().find_map(meta).unwrap();
    let (after, discont) = out[at..].iter().find_map(meta).unwrap();
    assert!(discont);
    assert_eq!(start, before.pts.unwrap() + 40_000_000);
    assert_eq!(start + duration, after.pts.unwrap());
}

#[test]
fn a_symbol_size_changing_mid_block_is_counted_and_never_output() {
    let input = buffers(30, 19);
    let packets = send(config(Codec::RaptorQ), &input);
    // Every symbol packet is preceded by a forged twin that says T = 1392, not 1400.
    let mut mixed = Vec::new();
    for p in &packets {
        if symbol_header(p).is_some() {
            mixed.push(forged(p, |_| (), 1392));
        }
        mixed.push(p.clone());
    }
    let (out, rx) = receive(mixed);
    assert!(same(&out, &input), "{:?}", rx.stats);
    assert!(rx.stats.inconsistent > 0);
}

#[test]
fn timestamps_at_the_end_of_time_neither_overflow_nor_make_a_wrong_gap() {
    let near_end = |i: u64| BufferMeta {
        pts: Some(u64::MAX - 10 + i),
        duration: Some(u64::MAX / 2),
        ..BufferMeta::default()
    };
    let input: Vec<_> = (0..3).map(|i| (near_end(i), vec![i as u8; 1000])).collect();
    let mut sender = Sender::new(config(Codec::RaptorQ)).unwrap();
    sender.set_stream(String::new(), true).unwrap();
    let mut packets = Vec::new();
    for (meta, data) in &input {
        // A block each, so that block 1 can be lost alone.
        sender.push_buffer(meta, data, &mut packets);
        sender.flush(&mut packets);
    }
    let (out, rx) = receive(
        packets
            .into_iter()
            .filter(|p| symbol_header(p).is_none_or(|h| h.block != 1)),
    );
    assert_eq!(rx.stats.blocks_lost, 1, "{:?}", rx.stats);
    // The end of buffer 0 saturates at the end of time: no buffer starts after it.
    assert!(
        !out.iter().any(|o| matches!(o, Output::Gap { .. })),
        "{out:?}"
    );
    assert_eq!(buffers_of(&out).len(), 2);
}

#[test]
fn a_time_of_none_in_block_content_makes_the_block_bad() {
    let input = vec![(
        BufferMeta {
            pts: Some(u64::MAX),
            ..BufferMeta::default()
        },
        vec![1u8; 100],
    )];
    let (out, rx) = receive(send(config(Codec::RaptorQ), &input));
    assert!(buffers_of(&out).is_empty());
    assert_eq!(rx.stats.bad_blocks, 1, "{:?}", rx.stats);
}

/// The header of a symbol packet, through the parser.
fn symbol_header(p: &[u8]) -> Option<SymbolHeader> {
    match packet::parse(p) {
        Ok(Packet::Symbol { header, .. }) => Some(header),
        _ => None,
    }
}

#[test]
fn a_description_with_other_bytes_has_another_version() {
    let input = buffers(60, 21);
    let packets = send(
        SenderConfig {
            mode: Mode::Carousel,
            window: 2,
            description_interval: 8,
            ..config(Codec::RaptorQ)
        },
        &input,
    );
    let mut seen = std::collections::BTreeMap::new();
    for p in &packets {
        if let Ok(Packet::Description {
            version,
            count: 1,
            data,
            ..
        }) = packet::parse(p)
        {
            let first = fanout_fec::Description::from_bytes(data)
                .unwrap()
                .first_block;
            assert_eq!(
                *seen.entry(version).or_insert(first),
                first,
                "version {version}"
            );
        }
    }
    assert!(seen.len() > 2, "the window moved: {seen:?}");
}

/// RaptorQ packets of `input` without repair symbols, and the sender, to ask for some.
fn sent_without_repair(input: &[(BufferMeta, Vec<u8>)]) -> (Sender, Vec<Vec<u8>>) {
    let mut sender = Sender::new(SenderConfig {
        repair_percent: 0,
        ..config(Codec::RaptorQ)
    })
    .unwrap();
    sender
        .set_stream("application/x-test".into(), true)
        .unwrap();
    let mut packets = Vec::new();
    for (meta, data) in input {
        sender.push_buffer(meta, data, &mut packets);
    }
    sender.flush(&mut packets);
    (sender, packets)
}

/// A receiver that reports incomplete blocks 10 ns after their first packet.
fn reporting_receiver() -> Receiver {
    Receiver::new(ReceiverConfig {
        report_delay: Duration::from_nanos(10),
        ..ReceiverConfig::default()
    })
}

#[test]
fn missing_blocks_are_reported_with_what_they_need_and_the_repairs_complete_them() {
    let input = buffers(30, 21);
    let (mut sender, packets) = sent_without_repair(&input);
    let mut rx = reporting_receiver();
    let mut out = Vec::new();
    let mut rng = Rng(5);
    for p in &packets {
        if !rng.chance(0.1) {
            rx.push(p, at(0), &mut out);
        }
    }
    let mut missing = Vec::new();
    rx.missing(at(0), &mut missing);
    assert!(!missing.is_empty(), "10 % loss without repair symbols");
    assert!(missing.len() <= fanout_fec::receiver::MAX_MISSING);
    // Reported once now; again only after the delay.
    let mut again = Vec::new();
    rx.missing(at(5), &mut again);
    assert!(again
        .iter()
        .all(|m| !missing.iter().any(|n| n.block == m.block)));
    assert!(rx.next_report().is_some_and(|t| t <= at(10)));
    // Exactly what was asked for completes every block.
    for round in 0..4u64 {
        for m in missing.drain(..) {
            for p in sender.repair(m.block, m.needed).unwrap() {
                rx.push(&p, at(20 * round), &mut out);
            }
        }
        rx.missing(at(20 * round + 15), &mut missing);
    }
    rx.finish(&mut out);
    assert_eq!(rx.stats.blocks_lost, 0, "{:?}", rx.stats);
    assert!(same(&out, &input));
}

#[test]
fn nothing_is_reported_without_a_delay_set_or_for_codec_none() {
    let input = buffers(10, 3);
    for (codec, delay) in [(Codec::RaptorQ, 0), (Codec::None, 10)] {
        let packets = send(config(codec), &input);
        let mut rx = Receiver::new(ReceiverConfig {
            report_delay: Duration::from_nanos(delay),
            ..ReceiverConfig::default()
        });
        let mut out = Vec::new();
        for p in packets.iter().skip(1).step_by(2) {
            rx.push(p, at(0), &mut out);
        }
        let mut missing = Vec::new();
        rx.missing(at(1_000), &mut missing);
        assert!(missing.is_empty(), "{codec:?} {delay}");
        assert_eq!(rx.next_report(), None);
    }
}

#[test]
fn a_block_of_which_nothing_arrived_is_asked_for_and_rebuilt_from_repairs_alone() {
    let input = buffers(30, 8);
    let (mut sender, packets) = sent_without_repair(&input);
    assert!(sender.next_block() > 3);
    let mut rx = reporting_receiver();
    let mut out = Vec::new();
    // Every packet of block 2 is lost.
    for p in packets
        .iter()
        .filter(|p| symbol_header(p).is_none_or(|h| h.block != 2))
    {
        rx.push(p, at(0), &mut out);
    }
    let mut missing = Vec::new();
    rx.missing(at(0), &mut missing);
    let ask = missing
        .iter()
        .find(|m| m.block == 2)
        .expect("block 2 asked for");
    assert!(ask.needed >= 2, "{ask:?}");
    let mut round = 0;
    while !missing.is_empty() && round < 4 {
        for m in missing.drain(..) {
            for p in sender.repair(m.block, m.needed).unwrap() {
                rx.push(&p, at(20 * round), &mut out);
            }
        }
        round += 1;
        rx.missing(at(20 * round + 15), &mut missing);
    }
    rx.finish(&mut out);
    assert_eq!(rx.stats.blocks_lost, 0, "{:?}", rx.stats);
    assert!(same(&out, &input));
}

#[test]
fn a_block_is_asked_for_again_at_growing_gaps_while_the_latency_allows() {
    let input = buffers(30, 21);
    let (_sender, packets) = sent_without_repair(&input);
    let mut rx = Receiver::new(ReceiverConfig {
        report_delay: Duration::from_nanos(40),
        latency: Duration::from_nanos(1000),
        ..ReceiverConfig::default()
    });
    let mut out = Vec::new();
    // Block 0 short of one symbol, nothing after it.
    let first = packets.iter().position(|p| p[3] == 1).unwrap();
    for p in packets.iter().take(first + 3).skip(first + 1) {
        rx.push(p, at(0), &mut out);
    }
    for p in &packets[..first] {
        rx.push(p, at(0), &mut out);
    }
    let mut asked = Vec::new();
    for t in 0..1000 {
        let mut m = Vec::new();
        rx.missing(at(t), &mut m);
        if !m.is_empty() {
            asked.push(t);
        }
    }
    assert_eq!(asked, vec![40, 80, 120, 200, 360, 680]);
}

#[test]
fn a_burst_of_blocks_stays_repairable_for_the_window_time() {
    let cfg = SenderConfig {
        window: 2,
        window_time: Duration::from_secs(1),
        max_block_time: Duration::ZERO,
        max_k: 4,
        ..SenderConfig::default()
    };
    let mut sender = Sender::new(cfg).unwrap();
    let mut out = Vec::new();
    // Ten blocks at once (a catch-up after a hold): all kept while they are recent.
    sender.set_now(at(5_000_000_000));
    for i in 0..10u8 {
        sender.push_buffer(&BufferMeta::default(), &[i; 4 * 1400], &mut out);
    }
    sender.flush(&mut out);
    assert!(sender.stats.blocks >= 10);
    assert_eq!(sender.window_blocks() as u64, sender.stats.blocks);
    assert!(sender.repair(0, 3).is_ok(), "the first of the burst");
    // A second later, the next block sends the old ones away: back to the count.
    sender.set_now(at(6_000_000_000));
    sender.push_buffer(&BufferMeta::default(), &[11; 4 * 1400], &mut out);
    sender.flush(&mut out);
    assert_eq!(sender.window_blocks(), 2);
    // Without a time (the clock never set) the count alone decides.
    let mut plain = Sender::new(SenderConfig {
        window: 2,
        max_block_time: Duration::ZERO,
        max_k: 4,
        ..SenderConfig::default()
    })
    .unwrap();
    for i in 0..10u8 {
        plain.push_buffer(&BufferMeta::default(), &[i; 4 * 1400], &mut out);
    }
    plain.flush(&mut out);
    assert_eq!(plain.window_blocks(), 2);
}

#[test]
fn the_loss_on_the_way_is_measured_and_loss_reports_allow_for_it() {
    let input = buffers(120, 4);
    let packets = send(config(Codec::RaptorQ), &input);
    let symbol = |p: &[u8]| match packet::parse(p) {
        Ok(Packet::Symbol { header, .. }) => Some(header),
        _ => None,
    };
    // The biggest block (its K the largest), the first of those.
    let last = packets
        .iter()
        .filter_map(|p| symbol(p))
        .max_by_key(|h| (h.transfer_length, std::cmp::Reverse(h.block)))
        .map(|h| h.block);
    // 10 % lost at random, and that block short: every other of its packets lost.
    let mut rng = Rng(5);
    let mut every_other = false;
    let kept: Vec<_> = packets
        .into_iter()
        .filter(|p| match symbol(p) {
            Some(h) if Some(h.block) == last => {
                every_other = !every_other;
                every_other
            }
            _ => !rng.chance(0.1),
        })
        .collect();
    let mut rx = Receiver::new(ReceiverConfig {
        report_delay: Duration::from_millis(10),
        ..ReceiverConfig::default()
    });
    assert_eq!(rx.observed_loss(), 0.0, "nothing measured yet");
    let mut out = Vec::new();
    for p in &kept {
        rx.push(p, at(0), &mut out);
    }
    let loss = rx.observed_loss();
    assert!((0.07..0.13).contains(&loss), "{loss}");
    let held: Vec<SymbolHeader> = kept
        .iter()
        .filter_map(|p| symbol(p))
        .filter(|h| Some(h.block) == last)
        .collect();
    let k = held[0]
        .transfer_length
        .div_ceil(u64::from(held[0].symbol_size)) as u32;
    let short = k + 2 - held.len() as u32;
    let mut asked = Vec::new();
    rx.missing(at(20_000_000), &mut asked);
    assert_eq!(asked.len(), 1, "{asked:?}");
    // More than it is short of: as many as arrive in 99 asks of 100 at that loss.
    assert!(asked[0].needed > short, "{asked:?} for {short}");
    assert_eq!(asked[0].needed, fanout_fec::sizing::to_ask(short, loss));
}
