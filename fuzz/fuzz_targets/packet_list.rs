//! Block packing's packet list, set by any element or application: whatever the bytes and
//! the buffer size, reading it never panics, and what it accepts lies inside the buffer, in
//! order, apart, and writes back to the same bytes.
#![no_main]

use fanout_fec::packing::{self, MAX_PACKET, MAX_PACKETS};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 4 {
        return;
    }
    let size = u32::from_le_bytes(data[..4].try_into().unwrap()) as usize;
    let list = &data[4..];
    if let Ok(places) = packing::ranges(list, size) {
        assert!(!places.is_empty() && places.len() <= MAX_PACKETS);
        let mut end = 0;
        for r in &places {
            assert!(r.start >= end && r.end <= size && !r.is_empty() && r.len() <= MAX_PACKET);
            end = r.end;
        }
        assert_eq!(packing::write(&places), list);
    }
});
