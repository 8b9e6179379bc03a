//! The index parser: any bytes decode to records or a clean error, never a
//! panic; whatever decodes re-encodes to the same bytes (every value has one
//! encoding), and a failed decode leaves the decoding state untouched.
#![no_main]

use fanout_store::{decode_record, Context, SegmentHeader};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut ctx = match SegmentHeader::decode(data) {
        Ok(h) => {
            assert_eq!(&h.encode()[..], &data[..40]);
            Context::new(&h)
        }
        Err(_) => Context::default(),
    };
    let mut pos = 0;
    while pos < data.len() {
        let before = ctx;
        match decode_record(&data[pos..], &mut ctx) {
            Ok((record, len)) => {
                let mut again = Vec::new();
                let mut enc = before;
                record.encode(&mut again, &mut enc);
                assert_eq!(again, &data[pos..pos + len]);
                assert_eq!(enc, ctx);
                pos += len;
            }
            Err(_) => {
                assert_eq!(ctx, before);
                pos += 1;
            }
        }
    }
});
