// SPDX-License-Identifier: MPL-2.0

//! How a channel's packets go on the wire: each sealed once into a whole DATA datagram
//! (`authenticate`, the default, or a `passphrase`), shared by every unicast receiver, the
//! group and the TCP queues; or after the plain DATA header.

use std::sync::Arc;

use fanout_session::message::{self, DATA_HEADER_LEN};
use fanout_session::seal::{Sealer, TAG_LEN};

pub(super) enum Wire {
    Sealed(Arc<Sealer>),
    Plain([u8; DATA_HEADER_LEN]),
}

impl Wire {
    pub fn new(index: u16, sealer: Option<Arc<Sealer>>) -> Wire {
        match sealer {
            Some(s) => Wire::Sealed(s),
            None => Wire::Plain(message::data_header(index, 0)),
        }
    }

    /// Calls `send(header, bodies)` with the datagrams carrying `packets` of channel `index`:
    /// each is `header ‖ body`.
    pub fn with<R>(
        &self,
        index: u16,
        packets: &[&[u8]],
        send: impl FnOnce(&[u8], &[&[u8]]) -> R,
    ) -> R {
        let sealer = match self {
            Wire::Plain(header) => return send(header, packets),
            Wire::Sealed(s) => s,
        };
        let size = packets
            .iter()
            .map(|p| p.len() + DATA_HEADER_LEN + TAG_LEN)
            .sum();
        let mut bytes = Vec::with_capacity(size);
        let mut ends = Vec::with_capacity(packets.len());
        for p in packets {
            // Past 2^48 datagrams under one key nothing more goes out: a restart makes a new one.
            if sealer.seal(index, p, &mut bytes) {
                ends.push(bytes.len());
            }
        }
        let mut start = 0;
        let datagrams: Vec<&[u8]> = ends
            .iter()
            .map(|&end| {
                let d = &bytes[start..end];
                start = end;
                d
            })
            .collect();
        send(&[], &datagrams)
    }
}
