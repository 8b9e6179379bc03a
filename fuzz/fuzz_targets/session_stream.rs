//! The receiver-side pieces fed by untrusted input: TCP frames cut in random pieces (no
//! panic, every frame given back whole, an error ends the stream), and the delayed loss
//! reports of a multicast receiver under random reports, symbols and time (a report never
//! asks for more than was reported, nor for zero symbols).
#![no_main]

use std::time::Duration;

use fanout_session::message::LostEntry;
use fanout_session::{frame, Deframer, Mono, Reports};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&split, data)) = data.split_first() else {
        return;
    };
    let (stream, ops) = data.split_at(data.len() / 2);
    let mut d = Deframer::new(usize::from(split) * 8 + 1);
    for piece in stream.chunks(usize::from(split % 16) + 1) {
        d.push(piece);
        let mut broken = false;
        while let Some(f) = d.next_frame() {
            match f {
                Ok(m) => assert!(!m.is_empty() && m.len() <= usize::from(split) * 8 + 1),
                Err(_) => {
                    broken = true;
                    break;
                }
            }
        }
        if broken {
            break;
        }
    }
    let f = frame(&[stream]).unwrap();
    assert_eq!(f.len(), stream.len() + 2);

    let backoff = u64::from(split) * 1000;
    let mut r = Reports::new(Duration::from_nanos(backoff), u64::from(split));
    let mut t = 0u64;
    let mut asked = std::collections::HashMap::new();
    for op in ops.chunks(4) {
        let [kind, block, n, dt] = *op else { break };
        t = t.saturating_add(u64::from(dt) * 500);
        let block = u64::from(block % 8);
        match kind % 3 {
            0 => {
                let needed = u16::from(n);
                asked.insert(block, needed);
                r.report(
                    Mono::from_nanos(t),
                    LostEntry {
                        channel: 0,
                        flow: 1,
                        block,
                        needed,
                    },
                );
            }
            1 => r.symbol(0, 1, block),
            _ => {
                r.handle_timeout(Mono::from_nanos(t));
                while let Some(e) = r.poll_report() {
                    assert!(e.needed > 0 && e.needed <= asked[&e.block]);
                }
            }
        }
        let latest = Mono::from_nanos(t.saturating_add(backoff));
        assert!(r.poll_timeout().is_none_or(|d| d <= latest));
    }
});
