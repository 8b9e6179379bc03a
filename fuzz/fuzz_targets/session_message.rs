//! The session protocol's parser: any bytes. What parses as a control message writes back
//! to the same bytes (a HELLO to its canonical padding); DATA keeps its payload.
#![no_main]

use fanout_session::message::{self, Datagram, Message, HELLO_LEN};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match message::parse(data) {
        Ok(Datagram::Control(m)) => {
            let again = message::write(&m);
            match m {
                Message::Hello { .. } => {
                    assert_eq!(again.len(), HELLO_LEN);
                    assert_eq!(again[..12], data[..12]);
                }
                _ => assert_eq!(again, data),
            }
        }
        Ok(Datagram::Data(d)) => assert_eq!(d.payload, &data[message::DATA_HEADER_LEN..]),
        Err(_) => (),
    }
});
