//! The FEC packet parser and description reassembly: any bytes parse to a packet or a clean
//! error, never a panic; a symbol packet that parses re-encodes to the same bytes (but for
//! the OTI's reserved byte, which RFC 6330 has receivers ignore).
#![no_main]

use fanout_fec::description::DescriptionAssembler;
use fanout_fec::packet::{self, Packet};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut descriptions = DescriptionAssembler::default();
    // The input is several datagrams, each behind a two-byte length.
    let mut rest = data;
    while rest.len() >= 2 {
        let len = usize::from(u16::from_le_bytes([rest[0], rest[1]]));
        let (datagram, next) = rest[2..].split_at(len.min(rest.len() - 2));
        rest = next;
        match packet::parse(datagram) {
            Ok(Packet::Symbol { header, data }) => {
                let mut again = Vec::new();
                packet::write_symbol(&mut again, &header, data);
                let mut want = datagram[..datagram.len() - 4].to_vec();
                want[29] = 0;
                assert_eq!(again[..again.len() - 4], want[..]);
            }
            Ok(Packet::Description {
                version,
                index,
                count,
                total_len,
                data,
                ..
            }) => {
                let _ = descriptions.add(version, index, count, total_len, data);
            }
            Err(_) => (),
        }
    }
});
