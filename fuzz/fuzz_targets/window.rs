//! The in-memory window beside the store: any sequence of pushes (store times that only go
//! forward, with repeats, any sizes) and lookups keeps it consistent with a plain model: it
//! holds a contiguous run of the newest positions within its limits, and every lookup agrees
//! with that run.
#![no_main]

use fanout_store::window::{Limits, Position, Positions, Window};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = Limits {
        max_bytes: 4096,
        max_span: 1000,
    };
    let mut window = Window::new(limits);
    let mut positions = Positions::default();
    let mut all: Vec<(Position, usize)> = Vec::new();
    let mut st = 0u64;
    for chunk in data.chunks(3) {
        let [a, b, c] = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        match a % 4 {
            // Push: store time steps by b * 8 (0: the same time again), size c * 16.
            0 | 1 => {
                st = st.saturating_add(u64::from(b) * 8);
                let p = positions.next(st);
                let size = usize::from(c) * 16;
                window.push(p, size, all.len());
                all.push((p, size));
            }
            // Lookups at a position pushed before, or just past one.
            _ if !all.is_empty() => {
                let (p, _) = all[usize::from(b) % all.len()];
                let oldest = window.oldest().unwrap().item;
                let held = all[oldest..].iter().any(|(q, _)| *q == p);
                assert_eq!(window.get(p).is_some(), held);
                if let Some(e) = window.get(p) {
                    assert_eq!(e.position, p);
                    let next = window.after(p).map(|e| e.item);
                    let i = all.iter().position(|(q, _)| *q == p).unwrap();
                    assert_eq!(next, (i + 1 < all.len()).then_some(i + 1));
                }
                let target = p.st.saturating_add(u64::from(c));
                if let Some(e) = window.at_or_after(target) {
                    assert!(e.position.st >= target);
                    assert!(e.item == oldest || all[e.item - 1].0.st < target);
                }
            }
            _ => (),
        }
        // What is held: the newest run, within the limits (the newest always).
        if let (Some(old), Some(new)) = (window.oldest(), window.newest()) {
            assert_eq!(new.item, all.len() - 1);
            let held: usize = all[old.item..].iter().map(|(_, s)| s).sum();
            assert_eq!(window.bytes(), held);
            let span = new.position.st - old.position.st;
            assert!(old.item == new.item || (held <= limits.max_bytes && span <= limits.max_span));
        }
    }
});
