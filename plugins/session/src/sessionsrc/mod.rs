// SPDX-License-Identifier: MPL-2.0

use std::sync::LazyLock;

use gst::glib;
use gst::prelude::*;

mod batch;
mod imp;
mod link;
mod output;
mod receive;
mod settings;

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "session-src",
        gst::DebugColorFlags::empty(),
        Some("fanout session source: joins a session-sink and receives its channels"),
    )
});

glib::wrapper! {
    pub struct SessionSrc(ObjectSubclass<imp::SessionSrc>) @extends gst::Element, gst::Object;
}

#[derive(Debug, Eq, PartialEq, Hash, Clone, Copy, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstFanoutSessionTransport")]
/// `transport`: how a receiver asks its packets to come (the protocol's own
/// `fanout_session::Transport` is the way they come now).
pub enum TransportMode {
    #[enum_value(name = "UDP unicast from the server", nick = "udp")]
    Udp = 0,
    #[enum_value(
        name = "The channel's multicast group (the session itself on UDP)",
        nick = "multicast"
    )]
    Multicast = 1,
    #[enum_value(name = "Framed over a TCP connection", nick = "tcp")]
    Tcp = 2,
    #[enum_value(
        name = "Multicast, else UDP unicast, else TCP (fallback-timeout each)",
        nick = "auto"
    )]
    Auto = 3,
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    TransportMode::static_type().mark_as_plugin_api(gst::PluginAPIFlags::empty());
    gst::Element::register(
        Some(plugin),
        "session-src",
        gst::Rank::NONE,
        SessionSrc::static_type(),
    )
}
