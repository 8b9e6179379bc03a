// SPDX-License-Identifier: MPL-2.0

//! `session-sink`'s properties: names, defaults, specs and values.

use fanout_element_kit::settings::{put, unknown, value, Properties, PropertyError};
use fanout_session::server::{
    DEFAULT_CHANNEL_REPAIR_PERCENT, DEFAULT_MAX_CLIENTS, DEFAULT_MAX_CLIENTS_PER_HOST,
    DEFAULT_MAX_STAY, DEFAULT_REPAIR_BURST, DEFAULT_REPAIR_RATE, DEFAULT_TOP_UP_CONFIDENCE,
};
use fanout_session::time::nanos;
use gst::glib;
use gst::prelude::*;

pub const PROP_ADDRESS: &str = "address";
pub const PROP_PORT: &str = "port";
pub const PROP_SECRET: &str = "secret";
pub const PROP_MAX_CLIENTS: &str = "max-clients";
pub const PROP_MAX_CLIENTS_PER_HOST: &str = "max-clients-per-host";
pub const PROP_MAX_STAY: &str = "max-stay";
pub const PROP_AUTHENTICATE: &str = "authenticate";
pub const PROP_PASSPHRASE: &str = "passphrase";
pub const PROP_PBKEYLEN: &str = "pbkeylen";
pub const PROP_GSO: &str = "gso";
pub const PROP_MAX_REPAIR_RATE: &str = "max-repair-rate";
pub const PROP_MAX_REPAIR_BURST: &str = "max-repair-burst";
pub const PROP_MAX_CHANNEL_REPAIR: &str = "max-channel-repair";
pub const PROP_TOP_UP_CONFIDENCE: &str = "top-up-confidence";
pub const PROP_TTL: &str = "ttl";
pub const PROP_MULTICAST_IFACE: &str = "multicast-iface";
pub const PROP_LOOP: &str = "loop";
pub const PROP_TCP: &str = "tcp";
pub const PROP_TCP_QUEUE: &str = "tcp-queue";
pub const PROP_TCP_QUEUE_BYTES: &str = "tcp-queue-bytes";
pub const PROP_WAIT_FOR_CLIENTS: &str = "wait-for-clients";
pub const PROP_WAIT_TIMEOUT: &str = "wait-timeout";

pub const DEFAULT_ADDRESS: &str = "0.0.0.0";
pub const DEFAULT_PORT: u32 = 5600;
pub const DEFAULT_TTL: u32 = 1;
pub const DEFAULT_TCP_QUEUE: u32 = 4096;
/// About a second of an 8 Mbit/s stream.
pub const DEFAULT_TCP_QUEUE_BYTES: u32 = 1 << 20;
pub const DEFAULT_WAIT_TIMEOUT: u64 = 30_000_000_000;
pub const DEFAULT_AUTHENTICATE: bool = true;
pub const DEFAULT_PBKEYLEN: u32 = 16;
pub const DEFAULT_GSO: bool = true;

#[derive(Debug, Clone)]
pub struct Settings {
    pub address: String,
    pub port: u32,
    pub secret: Option<String>,
    pub max_clients: u32,
    pub max_clients_per_host: u32,
    pub max_stay: u64,
    pub channel_repair_percent: u32,
    pub top_up_confidence: f64,
    pub authenticate: bool,
    pub passphrase: Option<String>,
    pub pbkeylen: u32,
    pub gso: bool,
    pub repair_rate: u32,
    pub repair_burst: u32,
    pub ttl: u32,
    pub multicast_iface: String,
    pub multicast_loop: bool,
    pub tcp: bool,
    pub tcp_queue: u32,
    pub tcp_queue_bytes: u32,
    pub wait_for_clients: u32,
    pub wait_timeout: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            address: DEFAULT_ADDRESS.into(),
            port: DEFAULT_PORT,
            secret: None,
            max_clients: DEFAULT_MAX_CLIENTS as u32,
            max_clients_per_host: DEFAULT_MAX_CLIENTS_PER_HOST as u32,
            max_stay: nanos(DEFAULT_MAX_STAY),
            channel_repair_percent: DEFAULT_CHANNEL_REPAIR_PERCENT,
            top_up_confidence: DEFAULT_TOP_UP_CONFIDENCE,
            authenticate: DEFAULT_AUTHENTICATE,
            passphrase: None,
            pbkeylen: DEFAULT_PBKEYLEN,
            gso: DEFAULT_GSO,
            repair_rate: DEFAULT_REPAIR_RATE,
            repair_burst: DEFAULT_REPAIR_BURST,
            ttl: DEFAULT_TTL,
            multicast_iface: String::new(),
            multicast_loop: false,
            tcp: false,
            tcp_queue: DEFAULT_TCP_QUEUE,
            tcp_queue_bytes: DEFAULT_TCP_QUEUE_BYTES,
            wait_for_clients: 0,
            wait_timeout: DEFAULT_WAIT_TIMEOUT,
        }
    }
}

impl Settings {
    pub fn param_specs() -> Vec<glib::ParamSpec> {
        vec![
        glib::ParamSpecString::builder(PROP_ADDRESS)
            .nick("Address")
            .blurb("Local IP address to listen on (IPv4 or IPv6)")
            .default_value(Some(DEFAULT_ADDRESS))
            .mutable_ready()
            .build(),
        glib::ParamSpecUInt::builder(PROP_PORT)
            .nick("Port")
            .blurb("UDP port receivers join on and data is sent from")
            .maximum(u16::MAX.into())
            .default_value(DEFAULT_PORT)
            .mutable_ready()
            .build(),
        glib::ParamSpecString::builder(PROP_SECRET)
            .nick("Secret")
            .blurb("Key of the address cookies; servers sharing it accept each other's cookies (never each other's session ids, random per start). Unset: random at every start")
            .write_only()
            .mutable_ready()
            .build(),
        glib::ParamSpecUInt::builder(PROP_MAX_CLIENTS)
            .nick("Max clients")
            .blurb("Receivers at most; further JOINs are refused as full")
            .minimum(1)
            .default_value(DEFAULT_MAX_CLIENTS as u32)
            .mutable_ready()
            .build(),
        glib::ParamSpecUInt::builder(PROP_MAX_CLIENTS_PER_HOST)
            .nick("Max clients per host")
            .blurb("Receivers from one IP address at most, so one host cannot take every place (raise it for many receivers behind one NAT); further JOINs from it are refused as full. 0: no limit")
            .default_value(DEFAULT_MAX_CLIENTS_PER_HOST as u32)
            .mutable_ready()
            .build(),
        glib::ParamSpecUInt64::builder(PROP_MAX_STAY)
            .nick("Max stay")
            .blurb("The longest a JOIN is granted (ns); a JOIN asking for longer gets this. Receivers refresh before their time is up, so a receiver that vanished without a word is gone within it")
            .minimum(1_000_000_000)
            .default_value(nanos(DEFAULT_MAX_STAY))
            .mutable_ready()
            .build(),
        glib::ParamSpecBoolean::builder(PROP_AUTHENTICATE)
            .nick("Authenticate")
            .blurb("Seal every DATA datagram with its channel's key (AES-GCM), given to receivers only in the answer to their proven JOIN: receivers drop and count anything else, whoever sends it. Off: anyone who can send to a receiver can inject data into it (receivers must set allow-unauthenticated)")
            .default_value(DEFAULT_AUTHENTICATE)
            .mutable_ready()
            .build(),
        glib::ParamSpecString::builder(PROP_PASSPHRASE)
            .nick("Passphrase")
            .blurb("Encrypt the stream too (AES-GCM), as srtsink does: receivers need the same passphrase (10 to 79 bytes). The channel keys travel wrapped by a key derived from it (PBKDF2-HMAC-SHA-256, 100 000 rounds, a salt random per start). Unset: authenticated only")
            .write_only()
            .mutable_ready()
            .build(),
        glib::ParamSpecUInt::builder(PROP_PBKEYLEN)
            .nick("Key length")
            .blurb("AES key length in bytes: 16, 24 or 32")
            .minimum(16)
            .maximum(32)
            .default_value(DEFAULT_PBKEYLEN)
            .mutable_ready()
            .build(),
        glib::ParamSpecBoolean::builder(PROP_GSO)
            .nick("GSO")
            .blurb("Send runs of equal-size packets as UDP GSO super-datagrams (turned off by itself where the kernel refuses it)")
            .default_value(true)
            .mutable_ready()
            .build(),
        glib::ParamSpecUInt::builder(PROP_MAX_REPAIR_RATE)
            .nick("Max repair rate")
            .blurb("Repair packets a second one receiver can ask for (after a burst of max-repair-burst)")
            .default_value(DEFAULT_REPAIR_RATE)
            .mutable_ready()
            .build(),
        glib::ParamSpecUInt::builder(PROP_MAX_REPAIR_BURST)
            .nick("Max repair burst")
            .blurb("Repair packets one receiver can ask for at once")
            .default_value(DEFAULT_REPAIR_BURST)
            .mutable_ready()
            .build(),
        glib::ParamSpecUInt::builder(PROP_MAX_CHANNEL_REPAIR)
            .nick("Max channel repair")
            .blurb("Repair packets one channel sends in all (to every receiver and its group together), at most, per 100 of its own packets: a storm of loss reports draws at most this much more than the stream. Over it, asks are refused and counted (repairs-over-budget). 0: no such cap")
            .default_value(DEFAULT_CHANNEL_REPAIR_PERCENT)
            .mutable_ready()
            .build(),
        glib::ParamSpecDouble::builder(PROP_TOP_UP_CONFIDENCE)
            .nick("Top-up confidence")
            .blurb("For a receiver that tells its loss, repair is sent up front with each block so that, with the block's own symbols, enough arrive in this percent of blocks; the rest is asked for with a loss report (a round trip). Lower sends fewer bytes and leaves more to repair rounds, which the receivers' latency must then fit")
            .minimum(50.0)
            .maximum(99.99)
            .default_value(DEFAULT_TOP_UP_CONFIDENCE)
            .mutable_ready()
            .build(),
        glib::ParamSpecUInt::builder(PROP_TTL)
            .nick("Multicast TTL")
            .blurb("Time to live (IPv6: hop limit) of packets sent to multicast groups")
            .minimum(1)
            .maximum(255)
            .default_value(DEFAULT_TTL)
            .mutable_ready()
            .build(),
        glib::ParamSpecString::builder(PROP_MULTICAST_IFACE)
            .nick("Multicast interface")
            .blurb("Interface (name, or IPv4 address) multicast packets go out of; empty: as the routing table says")
            .default_value(Some(""))
            .mutable_ready()
            .build(),
        glib::ParamSpecBoolean::builder(PROP_LOOP)
            .nick("Multicast loopback")
            .blurb("Deliver multicast packets to receivers on this host too")
            .default_value(false)
            .mutable_ready()
            .build(),
        glib::ParamSpecBoolean::builder(PROP_TCP)
            .nick("TCP")
            .blurb("Also listen on TCP port for receivers that get no UDP (session-src transport=tcp or auto): framed packets, no cookie round")
            .default_value(false)
            .mutable_ready()
            .build(),
        glib::ParamSpecUInt::builder(PROP_TCP_QUEUE)
            .nick("TCP queue")
            .blurb("Packets waiting for one TCP receiver at most; when it falls behind its oldest packets are dropped (counted in stats), nobody else waits")
            .minimum(16)
            .default_value(DEFAULT_TCP_QUEUE)
            .mutable_ready()
            .build(),
        glib::ParamSpecUInt::builder(PROP_TCP_QUEUE_BYTES)
            .nick("TCP queue bytes")
            .blurb("Bytes waiting for one TCP receiver at most (about a second of an 8 Mbit/s stream by default); past it, as past tcp-queue, its oldest packets are dropped. Given back when the receiver leaves")
            .minimum(64 << 10)
            .default_value(DEFAULT_TCP_QUEUE_BYTES)
            .mutable_ready()
            .build(),
        glib::ParamSpecUInt::builder(PROP_WAIT_FOR_CLIENTS)
            .nick("Wait for clients")
            .blurb("Hold the data of every channel until this many receivers have joined, or wait-timeout passed (then a warning), or the stream ended (EOS, as Ctrl-C under gst-launch -e sends): receivers started before the stream get it from its first byte. Held data is kept, up to 32 MB a channel (past that upstream waits), and goes out at four times the rate it came at, at least 20 Mbit/s. 0: send at once")
            .mutable_ready()
            .build(),
        glib::ParamSpecUInt64::builder(PROP_WAIT_TIMEOUT)
            .nick("Wait timeout")
            .blurb("How long (ns, from the start) wait-for-clients holds the data at most; 0: until they joined")
            .default_value(DEFAULT_WAIT_TIMEOUT)
            .mutable_ready()
            .build(),
        ]
    }
}

impl Properties for Settings {
    fn set(&mut self, name: &str, v: &glib::Value) -> Result<(), PropertyError> {
        match name {
            PROP_ADDRESS => {
                self.address =
                    value::<Option<String>>(name, v)?.unwrap_or_else(|| DEFAULT_ADDRESS.into())
            }
            PROP_PORT => put(&mut self.port, name, v)?,
            PROP_SECRET => {
                self.secret = value::<Option<String>>(name, v)?.filter(|k| !k.is_empty())
            }
            PROP_MAX_CLIENTS => put(&mut self.max_clients, name, v)?,
            PROP_MAX_CLIENTS_PER_HOST => put(&mut self.max_clients_per_host, name, v)?,
            PROP_MAX_STAY => put(&mut self.max_stay, name, v)?,
            PROP_AUTHENTICATE => put(&mut self.authenticate, name, v)?,
            PROP_PASSPHRASE => {
                self.passphrase = value::<Option<String>>(name, v)?.filter(|k| !k.is_empty())
            }
            PROP_PBKEYLEN => put(&mut self.pbkeylen, name, v)?,
            PROP_GSO => put(&mut self.gso, name, v)?,
            PROP_MAX_REPAIR_RATE => put(&mut self.repair_rate, name, v)?,
            PROP_MAX_REPAIR_BURST => put(&mut self.repair_burst, name, v)?,
            PROP_MAX_CHANNEL_REPAIR => put(&mut self.channel_repair_percent, name, v)?,
            PROP_TOP_UP_CONFIDENCE => put(&mut self.top_up_confidence, name, v)?,
            PROP_TTL => put(&mut self.ttl, name, v)?,
            PROP_MULTICAST_IFACE => {
                self.multicast_iface = value::<Option<String>>(name, v)?.unwrap_or_default()
            }
            PROP_LOOP => put(&mut self.multicast_loop, name, v)?,
            PROP_TCP => put(&mut self.tcp, name, v)?,
            PROP_TCP_QUEUE => put(&mut self.tcp_queue, name, v)?,
            PROP_TCP_QUEUE_BYTES => put(&mut self.tcp_queue_bytes, name, v)?,
            PROP_WAIT_FOR_CLIENTS => put(&mut self.wait_for_clients, name, v)?,
            PROP_WAIT_TIMEOUT => put(&mut self.wait_timeout, name, v)?,
            _ => return unknown(name),
        }
        Ok(())
    }

    fn get(&self, name: &str) -> Result<glib::Value, PropertyError> {
        Ok(match name {
            PROP_ADDRESS => self.address.to_value(),
            PROP_PORT => self.port.to_value(),
            // Write-only: never read back.
            PROP_SECRET => None::<String>.to_value(),
            PROP_MAX_CLIENTS => self.max_clients.to_value(),
            PROP_MAX_CLIENTS_PER_HOST => self.max_clients_per_host.to_value(),
            PROP_MAX_STAY => self.max_stay.to_value(),
            PROP_AUTHENTICATE => self.authenticate.to_value(),
            PROP_PASSPHRASE => None::<String>.to_value(),
            PROP_PBKEYLEN => self.pbkeylen.to_value(),
            PROP_GSO => self.gso.to_value(),
            PROP_MAX_REPAIR_RATE => self.repair_rate.to_value(),
            PROP_MAX_REPAIR_BURST => self.repair_burst.to_value(),
            PROP_MAX_CHANNEL_REPAIR => self.channel_repair_percent.to_value(),
            PROP_TOP_UP_CONFIDENCE => self.top_up_confidence.to_value(),
            PROP_TTL => self.ttl.to_value(),
            PROP_MULTICAST_IFACE => self.multicast_iface.to_value(),
            PROP_LOOP => self.multicast_loop.to_value(),
            PROP_TCP => self.tcp.to_value(),
            PROP_TCP_QUEUE => self.tcp_queue.to_value(),
            PROP_TCP_QUEUE_BYTES => self.tcp_queue_bytes.to_value(),
            PROP_WAIT_FOR_CLIENTS => self.wait_for_clients.to_value(),
            PROP_WAIT_TIMEOUT => self.wait_timeout.to_value(),
            _ => return unknown(name),
        })
    }
}
