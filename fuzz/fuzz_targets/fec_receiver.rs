//! The block assembler: any sequence of datagrams (valid checksums or not) gives outputs or
//! counted drops, never a panic, and buffers only out of blocks that decoded; its repair
//! requests stay bounded (at most 16 a call, each asking for at least one symbol); forged
//! descriptions, variants, far-ahead blocks and flows walk the guard paths, and an attack is
//! said at most once; a restart (a new stream identity) is said each time it is followed.
#![no_main]

use std::time::Duration;

use fanout_fec::{Mono, Output, Receiver, ReceiverConfig};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut rx = Receiver::new(ReceiverConfig {
        max_pending_blocks: 64,
        max_buffered_bytes: 8 << 20,
        report_delay: Duration::from_millis(20),
        ..ReceiverConfig::default()
    });
    let mut missing = Vec::new();
    let mut out = Vec::new();
    let mut now = Mono::ZERO;
    // Each datagram: a flags byte (bit 0: fix the checksum, so the fuzzer reaches past it;
    // bits 1-7: time step), a two-byte length, the bytes.
    let mut rest = data;
    while rest.len() >= 3 {
        let (flags, len) = (rest[0], usize::from(u16::from_le_bytes([rest[1], rest[2]])));
        let (datagram, next) = rest[3..].split_at(len.min(rest.len() - 3));
        rest = next;
        let mut datagram = datagram.to_vec();
        if flags & 1 != 0 && datagram.len() >= 4 {
            let n = datagram.len() - 4;
            let crc = crc32c::crc32c(&datagram[..n]);
            datagram[n..].copy_from_slice(&crc.to_be_bytes());
        }
        now += Duration::from_millis(10) * u32::from(flags >> 1);
        rx.push(&datagram, now, &mut out);
        let before = out.len();
        rx.handle_timeout(now, &mut out);
        let asked: Vec<_> = out[before..]
            .iter()
            .filter_map(|o| match o {
                Output::Missing(m) => Some(*m),
                _ => None,
            })
            .collect();
        assert!(asked.len() <= fanout_fec::receiver::MAX_MISSING);
        assert!(asked.iter().all(|m| m.needed >= 1));
        missing.clear();
        rx.missing(now, &mut missing);
        assert!(missing.len() <= fanout_fec::receiver::MAX_MISSING);
        assert!(missing.iter().all(|m| m.needed >= 1));
        // Asks allow for the loss measured, within bounds: a block of at most 8192 symbols
        // short of all of them (and RaptorQ's two), at most four times that and 16.
        assert!(missing.iter().all(|m| m.needed <= 4 * (8192 + 2) + 16));
        assert!((0.0..=fanout_fec::receiver::MAX_LOSS).contains(&rx.observed_loss()));
        let _ = (rx.next_report(), rx.poll_timeout());
    }
    rx.finish(&mut out);
    let _ = (rx.poll_timeout(), rx.description());
    let buffers = out
        .iter()
        .filter(|o| matches!(o, Output::Buffer { .. }))
        .count() as u64;
    assert_eq!(buffers, rx.stats.buffers);
    // A sustained attack is said once at most.
    let said = out
        .iter()
        .filter(|o| matches!(o, Output::Attack { .. }))
        .count();
    assert!(said <= 1);
    // Every restart followed is said, once.
    let restarts = out
        .iter()
        .filter(|o| matches!(o, Output::Restart { .. }))
        .count() as u64;
    assert_eq!(restarts, rx.stats.restarts);
    if buffers > 0 {
        assert!(rx.stats.blocks_decoded > 0);
    }
});
