//! The index parser: any bytes decode to records or a clean error, never a
//! panic, and whatever decodes re-encodes to the same bytes.
#![no_main]

use fanout_store::{decode_record, SegmentHeader};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(h) = SegmentHeader::decode(data) {
        assert_eq!(&h.encode()[..], &data[..40]);
    }
    let mut pos = 0;
    while pos < data.len() {
        match decode_record(&data[pos..]) {
            Ok((record, len)) => {
                let mut again = Vec::new();
                record.encode(&mut again);
                assert_eq!(again, &data[pos..pos + len]);
                pos += len;
            }
            Err(_) => pos += 1,
        }
    }
});
