// SPDX-License-Identifier: MPL-2.0

//! How a channel's packets go on the wire: each sealed once into a whole DATA datagram
//! (`authenticate`, the default, or a `passphrase`), shared by every unicast receiver, the
//! group and the TCP queues; or after the plain DATA header.

use std::sync::Arc;

use fanout_session::message::{self, DATA_HEADER_LEN};
use fanout_session::seal::{Sealer, TAG_LEN};

pub(super) enum Wire {
    Sealed(Arc<Sealer>),
    Plain(u16),
}

impl Wire {
    pub fn new(index: u16, sealer: Option<Arc<Sealer>>) -> Wire {
        match sealer {
            Some(s) => Wire::Sealed(s),
            None => Wire::Plain(index),
        }
    }

    /// Calls `send(header, bodies)` with the datagrams carrying `packets` of channel `index`
    /// (to one receiver only, in `answer` to its LOST, or not): each is `header ‖ body`.
    pub fn with<R>(
        &self,
        index: u16,
        packets: &[&[u8]],
        answer: bool,
        send: impl FnOnce(&[u8], &[&[u8]]) -> R,
    ) -> R {
        let sealer = match self {
            Wire::Plain(index) => return send(&message::data_header(*index, 0, answer), packets),
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
            if sealer.seal(index, p, answer, &mut bytes) {
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
