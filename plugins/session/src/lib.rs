// SPDX-License-Identifier: MPL-2.0
#![allow(clippy::non_send_fields_in_send_ty)]

//! fanout sessions: `session-sink` keeps independent sessions with its receivers and sends
//! every channel's packets to the receivers that joined it; `session-src` joins, keeps the
//! session alive and reports losses. The protocol is the GStreamer-free `fanout-session`.

pub mod drop_oldest;
mod gro;
pub mod multicast;
pub mod sendqueue;
mod sessionsink;
mod sessionsrc;
mod tick;
mod timebase;
pub mod udp_fanout;

use gst::glib;

pub use sessionsink::SessionSink;
pub use sessionsrc::{SessionSrc, TransportMode};

fn plugin_init(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    gstfanoutfec::register_metas();
    sessionsink::register(plugin)?;
    sessionsrc::register(plugin)?;
    Ok(())
}

gst::plugin_define!(
    fanoutsession,
    env!("CARGO_PKG_DESCRIPTION"),
    plugin_init,
    env!("CARGO_PKG_VERSION"),
    // GStreamer's name for MPL-2.0.
    "MPL",
    env!("CARGO_PKG_NAME"),
    "fanout",
    env!("CARGO_PKG_REPOSITORY"),
    "2026-12-01"
);
