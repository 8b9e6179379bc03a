//! A sender restarted (blocks from 0 again, a new stream identity) while a receiver keeps
//! running: followed within about a second, nothing of the new stream lost, what the old
//! one left behind counted and said; a forged description of a new stream changes nothing.

use super::*;
use crate::{BufferMeta, Sender, SenderConfig};

use super::test_streams::{at, blocks_of, moved, BLOCK_TIME, MS};

/// A run of a sender: `n` buffers of one block each (packets per block) and the buffers.
fn run_of(stream: u64, caps: &str, n: u64, seed: u64) -> (Vec<Vec<Vec<u8>>>, Vec<Vec<u8>>) {
    let mut sender = Sender::new(SenderConfig::default()).unwrap();
    sender.set_stream_id(stream);
    sender.set_stream(caps.into(), true).unwrap();
    blocks_of(sender, n, seed)
}

/// What came out: (bytes, discont) of each buffer, in order.
fn buffers(out: &[Output]) -> Vec<(Vec<u8>, bool)> {
    out.iter()
        .filter_map(|o| match o {
            Output::Buffer { data, discont, .. } => Some((data.as_ref().to_vec(), *discont)),
            _ => None,
        })
        .collect()
}

fn restarts(out: &[Output]) -> Vec<&Output> {
    out.iter()
        .filter(|o| matches!(o, Output::Restart { .. }))
        .collect()
}

/// Feeds `blocks` from `start`, a block every [`BLOCK_TIME`], timers fired first (as the
/// element's would); returns when the first buffer of `first` came out, if it did.
fn feed(
    rx: &mut Receiver,
    blocks: &[Vec<Vec<u8>>],
    start: u64,
    out: &mut Vec<Output>,
    first: Option<&[u8]>,
) -> Option<u64> {
    let mut seen = None;
    for (i, packets) in blocks.iter().enumerate() {
        let now = start + i as u64 * BLOCK_TIME;
        rx.handle_timeout(at(now), out);
        for p in packets {
            rx.push(p, at(now), out);
        }
        if seen.is_none() && first.is_some_and(|f| buffers(out).iter().any(|(b, _)| b == f)) {
            seen = Some(now);
        }
    }
    seen
}

#[test]
fn a_restarted_sender_is_followed_within_a_second_and_nothing_of_it_is_lost() {
    // 6 s of a first run (block numbers up to 59), then, after a pause of `pause`, a
    // second run from block 0 again under a new identity and new caps.
    for pause in [0, 300 * MS, 3_000 * MS] {
        let (old, old_input) = run_of(1, "application/x-test, run=(int)1", 60, 0);
        let (new, new_input) = run_of(2, "application/x-test, run=(int)2", 40, 99);
        let mut rx = Receiver::new(ReceiverConfig::default());
        let mut out = Vec::new();
        feed(&mut rx, &old, 0, &mut out, None);
        let old_out = buffers(&out).len();
        assert_eq!(old_out, 60, "{:?}", rx.stats);
        let start = 60 * BLOCK_TIME + pause;
        let at = feed(&mut rx, &new, start, &mut out, Some(&new_input[0]))
            .expect("the new stream came out");
        rx.finish(&mut out);
        // Within about a second of the new stream's first packet.
        assert!(at - start <= 1_000 * MS, "{} ms", (at - start) / MS);
        let got = buffers(&out);
        let (old_got, new_got) = got.split_at(old_out);
        assert!(old_got.iter().map(|(b, _)| b).eq(old_input.iter()));
        // The whole new run, in order, the first one marked DISCONT.
        assert!(
            new_got.iter().map(|(b, _)| b).eq(new_input.iter()),
            "{} of {} new buffers: {:?}",
            new_got.len(),
            new_input.len(),
            rx.stats
        );
        assert!(new_got[0].1, "no DISCONT after the restart");
        assert!(new_got[1..].iter().all(|(_, d)| !d));
        // Said once, and the new caps given.
        assert_eq!(restarts(&out).len(), 1, "pause {pause}: {:?}", rx.stats);
        assert_eq!(rx.stats.restarts, 1);
        assert!(rx.stats.restart_replayed > 0, "{:?}", rx.stats);
        assert_eq!(rx.stats.blocks_lost, 0, "{:?}", rx.stats);
        let caps: Vec<_> = out
            .iter()
            .filter_map(|o| match o {
                Output::Description(d) => Some(d.caps.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(
            caps,
            [
                "application/x-test, run=(int)1",
                "application/x-test, run=(int)2"
            ]
        );
        assert_eq!(rx.description().unwrap().stream, 2);
    }
}

#[test]
fn what_the_old_stream_left_held_is_counted_and_said_at_a_restart() {
    // The first run ends in the middle of a buffer spanning two blocks: its first block
    // arrives, the second never does. That half buffer is held until the restart drops it.
    let mut sender = Sender::new(SenderConfig::default()).unwrap();
    sender.set_stream_id(7);
    sender
        .set_stream("application/x-test".into(), true)
        .unwrap();
    let mut old = Vec::new();
    for i in 0..20u64 {
        let mut packets = Vec::new();
        let meta = BufferMeta {
            pts: Some(i * BLOCK_TIME),
            duration: Some(BLOCK_TIME),
            ..BufferMeta::default()
        };
        sender.push_buffer(&meta, &[i as u8; 2000], &mut packets);
        sender.flush(&mut packets);
        old.push(packets);
    }
    // 200 000 bytes: more than a block holds (100 symbols of 1400 bytes).
    let mut packets = Vec::new();
    sender.push_buffer(&BufferMeta::default(), &[0xAB; 200_000], &mut packets);
    sender.flush(&mut packets);
    let first_block = header_block(&packets[packets.len() / 4]);
    packets.retain(|p| !is_symbol(p) || header_block(p) == first_block);
    old.push(packets);
    let (new, new_input) = run_of(8, "application/x-test", 30, 5);
    let mut rx = Receiver::new(ReceiverConfig::default());
    let mut out = Vec::new();
    feed(&mut rx, &old, 0, &mut out, None);
    assert_eq!(buffers(&out).len(), 20);
    feed(&mut rx, &new, 21 * BLOCK_TIME, &mut out, None);
    rx.finish(&mut out);
    let said = restarts(&out);
    assert_eq!(said.len(), 1);
    let Output::Restart {
        stream,
        partial_buffers,
        resume,
        ..
    } = said[0]
    else {
        unreachable!()
    };
    assert_eq!((*stream, *partial_buffers), (8, 1), "{:?}", rx.stats);
    assert_eq!(*resume, Some(20 * BLOCK_TIME));
    assert_eq!(rx.stats.partial_buffers_dropped, 1);
    let got = buffers(&out);
    assert!(got[20..].iter().map(|(b, _)| b).eq(new_input.iter()));
}

fn is_symbol(p: &[u8]) -> bool {
    matches!(packet::parse(p), Ok(Packet::Symbol { .. }))
}

fn header_block(p: &[u8]) -> u64 {
    match packet::parse(p) {
        Ok(Packet::Symbol { header, .. }) => header.block,
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_forged_description_of_a_new_stream_changes_nothing() {
    let (genuine, input) = run_of(1, "application/x-test", 60, 0);
    // A forger's run: its own identity, blocks from 0, more descriptions than the sender
    // sends (every block), and its symbols behind the stream, as a restart's would be.
    let (forged, _) = run_of(666, "video/x-raw, forged=(int)1", 60, 3);
    let descriptions: Vec<Vec<u8>> = forged
        .iter()
        .flatten()
        .filter(|p| !is_symbol(p))
        .cloned()
        .collect();
    let mut rx = Receiver::new(ReceiverConfig::default());
    let mut out = Vec::new();
    for (i, packets) in genuine.iter().enumerate() {
        let now = i as u64 * BLOCK_TIME;
        rx.handle_timeout(at(now), &mut out);
        for p in packets {
            rx.push(p, at(now), &mut out);
        }
        if i >= 20 {
            // One packet alone, and then a stream of them.
            for p in descriptions.iter().take(if i == 20 { 1 } else { 3 }) {
                rx.push(p, at(now + MS), &mut out);
            }
            for p in forged[i - 20].iter().filter(|p| is_symbol(p)) {
                rx.push(p, at(now + 2 * MS), &mut out);
            }
            rx.push(&moved(&packets[1], 0), at(now + 3 * MS), &mut out);
        }
    }
    rx.finish(&mut out);
    assert!(restarts(&out).is_empty(), "{:?}", rx.stats);
    assert_eq!(rx.stats.restarts, 0);
    assert_eq!(rx.description().unwrap().stream, 1);
    assert!(buffers(&out).iter().map(|(b, _)| b).eq(input.iter()));
    assert_eq!(rx.stats.blocks_lost, 0);
    assert!(out
        .iter()
        .all(|o| !matches!(o, Output::Description(d) if d.caps.contains("forged"))));
}
