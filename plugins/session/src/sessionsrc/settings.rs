// SPDX-License-Identifier: MPL-2.0

//! `session-src`'s properties: names, defaults, specs and values.

use fanout_element_kit::settings::{put, unknown, value, Properties, PropertyError};
use fanout_session::client::{DEFAULT_JOIN_DURATION, DEFAULT_TIMEOUT};
use fanout_session::message::MAX_TOKEN_LEN;
use fanout_session::time::nanos;
use gst::glib;
use gst::prelude::*;

use super::TransportMode;

pub const PROP_HOST: &str = "host";
pub const PROP_PORT: &str = "port";
pub const PROP_CHANNELS: &str = "channels";
pub const PROP_TRANSPORT: &str = "transport";
pub const PROP_FALLBACK_TIMEOUT: &str = "fallback-timeout";
pub const PROP_MULTICAST_IFACE: &str = "multicast-iface";
pub const PROP_JOIN_DURATION: &str = "join-duration";
pub const PROP_JOIN_UNTIL: &str = "join-until";
pub const PROP_PASSPHRASE: &str = "passphrase";
pub const PROP_ALLOW_UNAUTHENTICATED: &str = "allow-unauthenticated";
pub const PROP_TOKEN: &str = "token";
pub const PROP_TIMEOUT: &str = "timeout";
pub const PROP_GRO: &str = "gro";

pub const DEFAULT_HOST: &str = "127.0.0.1";
pub const DEFAULT_PORT: u32 = crate::sessionsink::DEFAULT_PORT;
pub const DEFAULT_FALLBACK_TIMEOUT: u64 = 3_000_000_000;
pub const DEFAULT_TRANSPORT: TransportMode = TransportMode::Udp;
pub const DEFAULT_ALLOW_UNAUTHENTICATED: bool = false;
pub const DEFAULT_GRO: bool = true;

#[derive(Debug, Clone)]
pub struct Settings {
    pub host: String,
    pub port: u32,
    pub channels: Vec<String>,
    pub transport: TransportMode,
    pub join_duration: u64,
    pub join_until: u64,
    pub token: String,
    pub timeout: u64,
    pub fallback_timeout: u64,
    pub multicast_iface: String,
    pub gro: bool,
    pub passphrase: Option<String>,
    pub allow_unauthenticated: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            host: DEFAULT_HOST.into(),
            port: DEFAULT_PORT,
            channels: Vec::new(),
            transport: DEFAULT_TRANSPORT,
            join_duration: nanos(DEFAULT_JOIN_DURATION),
            join_until: 0,
            token: String::new(),
            timeout: nanos(DEFAULT_TIMEOUT),
            fallback_timeout: DEFAULT_FALLBACK_TIMEOUT,
            multicast_iface: String::new(),
            gro: DEFAULT_GRO,
            passphrase: None,
            allow_unauthenticated: DEFAULT_ALLOW_UNAUTHENTICATED,
        }
    }
}

impl Settings {
    pub fn param_specs() -> Vec<glib::ParamSpec> {
        vec![
        glib::ParamSpecString::builder(PROP_HOST)
            .nick("Host")
            .blurb("The session-sink to join: host name or IP address, or several as host[:port],host[:port],... (IPv6 as [addr]:port): each is joined and their packets merge per channel name")
            .default_value(Some(DEFAULT_HOST))
            .mutable_ready()
            .build(),
        glib::ParamSpecUInt::builder(PROP_PORT)
            .nick("Port")
            .blurb("The session-sink's UDP port")
            .minimum(1)
            .maximum(u16::MAX.into())
            .default_value(DEFAULT_PORT)
            .mutable_ready()
            .build(),
        glib::ParamSpecString::builder(PROP_CHANNELS)
            .nick("Channels")
            .blurb("Comma-separated channel names to join; src_0 is the first, src_1 the second... Empty: every channel, in the server's order")
            .default_value(Some(""))
            .mutable_ready()
            .build(),
        glib::ParamSpecEnum::builder_with_default(PROP_TRANSPORT, DEFAULT_TRANSPORT)
            .nick("Transport")
            .blurb("How packets arrive: udp (unicast copies), multicast (the channel's group; the session stays on UDP for loss reports and expiry), tcp (framed over a connection, for networks without UDP; needs session-sink tcp=true), auto (multicast, else UDP, else TCP: each given fallback-timeout to deliver)")
            .mutable_ready()
            .build(),
        glib::ParamSpecUInt64::builder(PROP_FALLBACK_TIMEOUT)
            .nick("Fallback timeout")
            .blurb("transport=auto: how long (ns) a transport may stay silent before the next is tried; each change is posted on the bus (element message fanout-session-transport) and shown in stats")
            .minimum(100_000_000)
            .default_value(DEFAULT_FALLBACK_TIMEOUT)
            .mutable_ready()
            .build(),
        glib::ParamSpecString::builder(PROP_MULTICAST_IFACE)
            .nick("Multicast interface")
            .blurb("Interface (name, or IPv4 address) multicast groups are joined on; empty: as the routing table says")
            .default_value(Some(""))
            .mutable_ready()
            .build(),
        glib::ParamSpecBoolean::builder(PROP_GRO)
            .nick("GRO")
            .blurb("Ask the kernel to hand over runs of datagrams in one read (UDP GRO): one read and one buffer for many packets, handed on as one buffer (packing=block) or a list. Falls back silently to a datagram a read where the kernel refuses")
            .default_value(DEFAULT_GRO)
            .mutable_ready()
            .build(),
        glib::ParamSpecUInt64::builder(PROP_JOIN_DURATION)
            .nick("Join duration")
            .blurb("How long each JOIN asks to stay (ns); refreshed at about two thirds of it while running (the server may grant less)")
            .minimum(1_000_000_000)
            .default_value(nanos(DEFAULT_JOIN_DURATION))
            .mutable_ready()
            .build(),
        glib::ParamSpecUInt64::builder(PROP_JOIN_UNTIL)
            .nick("Join until")
            .blurb("If set, stay until this Unix time (ns) instead of join-duration, without refreshing past it")
            .mutable_ready()
            .build(),
        glib::ParamSpecString::builder(PROP_PASSPHRASE)
            .nick("Passphrase")
            .blurb("The server's passphrase (session-sink passphrase): its stream is encrypted under it. A wrong one, or none for an encrypted stream, is an error (\"wrong passphrase\"); set for a server that does not encrypt, an error too")
            .write_only()
            .mutable_ready()
            .build(),
        glib::ParamSpecBoolean::builder(PROP_ALLOW_UNAUTHENTICATED)
            .nick("Allow unauthenticated")
            .blurb("Take data from a server that does not authenticate it (session-sink authenticate=false): anyone who can send to this receiver can then inject data. Off: such a server is an error")
            .default_value(DEFAULT_ALLOW_UNAUTHENTICATED)
            .mutable_ready()
            .build(),
        glib::ParamSpecString::builder(PROP_TOKEN)
            .nick("Token")
            .blurb("Sent with each JOIN for the server's application to authorize (up to 255 bytes)")
            .mutable_ready()
            .build(),
        glib::ParamSpecUInt64::builder(PROP_TIMEOUT)
            .nick("Timeout")
            .blurb("No answer from the server for this long (ns): an error before the first JOIN succeeded, a warning after")
            .minimum(100_000_000)
            .default_value(nanos(DEFAULT_TIMEOUT))
            .mutable_ready()
            .build(),
        ]
    }
}

impl Properties for Settings {
    fn set(&mut self, name: &str, v: &glib::Value) -> Result<(), PropertyError> {
        match name {
            PROP_HOST => {
                self.host = value::<Option<String>>(name, v)?.unwrap_or_else(|| DEFAULT_HOST.into())
            }
            PROP_PORT => put(&mut self.port, name, v)?,
            PROP_CHANNELS => {
                self.channels = parse_list(&value::<Option<String>>(name, v)?.unwrap_or_default())
            }
            PROP_TRANSPORT => put(&mut self.transport, name, v)?,
            PROP_FALLBACK_TIMEOUT => put(&mut self.fallback_timeout, name, v)?,
            PROP_MULTICAST_IFACE => {
                self.multicast_iface = value::<Option<String>>(name, v)?.unwrap_or_default()
            }
            PROP_GRO => put(&mut self.gro, name, v)?,
            PROP_JOIN_DURATION => put(&mut self.join_duration, name, v)?,
            PROP_JOIN_UNTIL => put(&mut self.join_until, name, v)?,
            PROP_PASSPHRASE => {
                self.passphrase = value::<Option<String>>(name, v)?.filter(|p| !p.is_empty())
            }
            PROP_ALLOW_UNAUTHENTICATED => put(&mut self.allow_unauthenticated, name, v)?,
            PROP_TOKEN => {
                self.token = cut_token(value::<Option<String>>(name, v)?.unwrap_or_default())
            }
            PROP_TIMEOUT => put(&mut self.timeout, name, v)?,
            _ => return unknown(name),
        }
        Ok(())
    }

    fn get(&self, name: &str) -> Result<glib::Value, PropertyError> {
        Ok(match name {
            PROP_HOST => self.host.to_value(),
            PROP_PORT => self.port.to_value(),
            PROP_CHANNELS => self.channels.join(",").to_value(),
            PROP_TRANSPORT => self.transport.to_value(),
            PROP_FALLBACK_TIMEOUT => self.fallback_timeout.to_value(),
            PROP_MULTICAST_IFACE => self.multicast_iface.to_value(),
            PROP_GRO => self.gro.to_value(),
            PROP_JOIN_DURATION => self.join_duration.to_value(),
            PROP_JOIN_UNTIL => self.join_until.to_value(),
            // Write-only: never read back.
            PROP_PASSPHRASE => None::<String>.to_value(),
            PROP_ALLOW_UNAUTHENTICATED => self.allow_unauthenticated.to_value(),
            PROP_TOKEN => self.token.to_value(),
            PROP_TIMEOUT => self.timeout.to_value(),
            _ => return unknown(name),
        })
    }
}

/// A comma-separated list, items trimmed, empty ones left out.
pub fn parse_list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(str::to_owned)
        .collect()
}

/// A token cut to what a JOIN carries, on a character boundary.
pub fn cut_token(mut t: String) -> String {
    if t.len() > MAX_TOKEN_LEN {
        let mut end = MAX_TOKEN_LEN;
        while !t.is_char_boundary(end) {
            end -= 1;
        }
        t.truncate(end);
    }
    t
}
