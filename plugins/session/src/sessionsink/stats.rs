// SPDX-License-Identifier: MPL-2.0

//! `session-sink`'s `stats` structure.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;

use super::control::Control;
use super::pad::SessionSinkPad;
use super::shared::Shared;
use super::tcp::Conn;

pub(super) fn empty_stats() -> gst::Structure {
    gst::Structure::builder("fanout-session-sink-stats")
        .field("clients", 0u32)
        .build()
}

/// The element's `stats`, from the control state and what the streaming threads counted.
pub(super) fn stats(control: &Control, shared: &Shared, pads: &[SessionSinkPad]) -> gst::Structure {
    let server = &control.server;
    let snapshot = shared.snapshot();
    let pad_of = |c: u16| pads.iter().find(|p| p.index() == c);
    let s = server.stats;
    let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    let channels: Vec<glib::SendValue> = pads
        .iter()
        .map(|p| {
            let c = &p.imp().stats;
            let index = p.index();
            gst::Structure::builder("channel")
                .field("index", u32::from(index))
                .field("name", p.channel_name())
                .field(
                    "clients",
                    snapshot.channels.get(&index).map_or(0, |t| t.len()) as u32,
                )
                .field("buffers", load(&c.buffers))
                .field("packets", load(&c.stream_packets))
                .field("bytes", load(&c.bytes))
                .field("datagrams", load(&c.datagrams))
                .field("repairs", load(&c.repairs))
                .field(
                    "multicast-group",
                    p.group().map(|g| g.to_string()).unwrap_or_default(),
                )
                .field("group-datagrams", load(&c.group_datagrams))
                .field("group-repairs", load(&c.group_repairs))
                .field("tcp-frames", load(&c.tcp_frames))
                .field("bad-buffers", load(&c.bad_buffers))
                .build()
                .to_send_value()
        })
        .collect();
    let udp = snapshot
        .by_id
        .iter()
        .map(|(id, t)| (*id, t, None::<&Arc<Conn>>));
    let tcp = snapshot.conns.iter().map(|(id, (c, t))| (*id, t, Some(c)));
    let receivers: Vec<glib::SendValue> = udp
        .chain(tcp)
        .map(|(id, t, conn)| {
            let st = &t.stats;
            let transport = match conn {
                Some(_) => "tcp",
                None if server.is_multicast(id) => "multicast",
                None => "udp",
            };
            let channels: Vec<String> = server
                .channels_of(id)
                .iter()
                .filter_map(|&c| pad_of(c).map(|p| p.channel_name()))
                .collect();
            let address = server.address_of(id).map(|p| p.to_string());
            gst::Structure::builder("receiver")
                .field("address", address.unwrap_or_default())
                .field("transport", transport)
                .field("queue-dropped", conn.map_or(0, |c| c.queue.dropped()))
                .field("channels", channels.join(","))
                .field("packets", load(&st.packets))
                .field("bytes", load(&st.bytes))
                .field("repairs", load(&st.repairs))
                .field("repairs-refused", load(&st.repairs_refused))
                .field("gso-sends", load(&st.gso_sends))
                .field("send-errors", load(&st.send_errors))
                .build()
                .to_send_value()
        })
        .collect();
    gst::Structure::builder("fanout-session-sink-stats")
        .field("clients", server.client_count() as u32)
        .field("gso", shared.fanout.gso())
        .field("datagrams-received", s.datagrams)
        .field("foreign", s.foreign)
        .field("malformed", s.malformed)
        .field("hellos", s.hellos)
        .field("joins", s.joins)
        .field("bad-cookies", s.bad_cookies)
        .field("refused", s.refused)
        .field("leaves", s.leaves)
        .field("unknown-session", s.unknown_session)
        .field("lost-reports", s.lost_reports)
        .field("repair-symbols-asked", s.repair_symbols_asked)
        .field("repair-symbols-granted", s.repair_symbols_granted)
        .field("loss-reports", s.loss_reports)
        .field("top-up-symbols", s.top_up_symbols)
        .field("replies-withheld", s.replies_withheld)
        .field("repairs-over-budget", s.repairs_over_budget)
        .field("group-repairs", s.group_repairs)
        .field("group-reports-covered", s.group_reports_covered)
        .field("tcp-connections", control.tcp_connections() as u32)
        .field("channels", gst::Array::from_values(channels))
        .field("receivers", gst::Array::from_values(receivers))
        .build()
}
