//! Sealed DATA under a receiver's replay window: datagrams of one channel taken in any order,
//! repeated, changed. What must hold: a changed datagram is never taken; no datagram is taken
//! twice; one not taken before and within the window of the newest taken is taken.
#![no_main]

use fanout_session::message::{self, Datagram};
use fanout_session::seal::{ChannelKey, KeyLen, Opener, Sealer, REPLAY_WINDOW};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let encrypt = mode & 1 != 0;
    let key = ChannelKey::random(KeyLen::DEFAULT, encrypt);
    let material = key.material().to_vec();
    let sealer = Sealer::new(key);
    let mut opener = Opener::new(ChannelKey::from_material(&material, encrypt).unwrap());
    let mut sealed: Vec<Vec<u8>> = Vec::new();
    let mut taken = std::collections::HashSet::new();
    let mut newest: Option<u64> = None;
    for op in rest.chunks(3) {
        let [a, b, c] = *op else { break };
        // Seal up to 8 more, then try one of those sealed so far (or far behind).
        for _ in 0..(a % 8) {
            let mut d = Vec::new();
            sealer.seal(3, &[b; 5], b % 2 == 0, &mut d);
            sealed.push(d);
        }
        if sealed.is_empty() {
            continue;
        }
        let i = usize::from(u16::from_le_bytes([b, c])) % sealed.len();
        let mut d = sealed[i].clone();
        let changed = a & 0x80 != 0;
        if changed {
            let at = usize::from(c) % d.len();
            d[at] ^= 1 << (b % 8);
        }
        let counter = match message::parse(&d) {
            Ok(Datagram::Data(x)) => x.counter,
            _ => continue,
        };
        let got = opener.open(counter, &mut d).is_ok();
        let i = i as u64;
        if changed {
            assert!(!got, "a changed datagram was taken");
            continue;
        }
        let fresh = !taken.contains(&i);
        let within = newest.is_none_or(|n| i > n || n - i < REPLAY_WINDOW);
        assert_eq!(got, fresh && within, "datagram {i}, newest {newest:?}");
        if got {
            taken.insert(i);
            newest = Some(newest.map_or(i, |n| n.max(i)));
        }
    }
});
