// SPDX-License-Identifier: MPL-2.0

//! `session-src`: joins `session-sink`s, one `src_%u` pad per channel it was given, and
//! turns `fanout-block-missing` from downstream into LOST reports. Each server's session
//! runs in `link.rs`, on a thread of its own; pads and stats are in `receive.rs`.

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use fanout_session::client::{DEFAULT_JOIN_DURATION, DEFAULT_TIMEOUT};
use fanout_session::message::{MAX_JOIN_CHANNELS, MAX_NAME_LEN, MAX_TOKEN_LEN};
use fanout_session::time::nanos;
use fanout_session::{ClientConfig, Fallback, LostEntry, Mono, Stay};
use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;

use super::link::Running;
use super::receive::{self, Channels};
use super::Transport;
use crate::multicast;

pub static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "session-src",
        gst::DebugColorFlags::empty(),
        Some("fanout session source: joins a session-sink and receives its channels"),
    )
});

const DEFAULT_HOST: &str = "127.0.0.1";
const DEFAULT_PORT: u32 = crate::sessionsink::DEFAULT_PORT;
const DEFAULT_FALLBACK_TIMEOUT: u64 = 3_000_000_000;

#[derive(Debug, Clone)]
pub(super) struct Settings {
    pub host: String,
    pub port: u32,
    pub channels: Vec<String>,
    pub transport: Transport,
    pub join_duration: u64,
    pub join_until: u64,
    pub token: String,
    pub timeout: u64,
    pub fallback_timeout: u64,
    pub multicast_iface: String,
    pub passphrase: Option<String>,
    pub allow_unauthenticated: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            host: DEFAULT_HOST.into(),
            port: DEFAULT_PORT,
            channels: Vec::new(),
            transport: Transport::Udp,
            join_duration: nanos(DEFAULT_JOIN_DURATION),
            join_until: 0,
            token: String::new(),
            timeout: nanos(DEFAULT_TIMEOUT),
            fallback_timeout: DEFAULT_FALLBACK_TIMEOUT,
            multicast_iface: String::new(),
            passphrase: None,
            allow_unauthenticated: false,
        }
    }
}

#[derive(Default)]
pub struct SessionSrc {
    pub(super) settings: Mutex<Settings>,
    /// One per server in `host`.
    pub(super) running: Mutex<Vec<Arc<Running>>>,
    pub(super) channels: Mutex<Channels>,
    pub(super) playing: AtomicBool,
    threads: Mutex<Vec<JoinHandle<()>>>,
    last_stats: Mutex<Option<gst::Structure>>,
    /// Stats go on the bus about once a second, from whichever session thread is first.
    pub(super) ticker: gstfanoutfec::StatsTicker,
}

/// `host` as servers: `host`, `host:port` or `[v6]:port` items, comma-separated; `port`
/// where an item has none.
fn parse_servers(hosts: &str, port: u16) -> Result<Vec<SocketAddr>, String> {
    parse_list(hosts)
        .iter()
        .map(|item| {
            let (host, port) = match item.parse::<SocketAddr>() {
                Ok(a) => return Ok(a),
                Err(_) => match item.rsplit_once(':') {
                    Some((h, p)) if !h.contains(':') => (
                        h,
                        p.parse::<u16>()
                            .map_err(|_| format!("bad port in {item:?}"))?,
                    ),
                    _ => (item.as_str(), port),
                },
            };
            (host.trim_matches(|c| c == '[' || c == ']'), port)
                .to_socket_addrs()
                .ok()
                .and_then(|mut a| a.next())
                .ok_or_else(|| format!("cannot resolve host {host:?}"))
        })
        .collect()
}

fn parse_list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(str::to_owned)
        .collect()
}

impl SessionSrc {
    pub(super) fn running(&self) -> Vec<Arc<Running>> {
        self.running.lock().unwrap().clone()
    }

    fn start(&self) -> Result<(), gst::ErrorMessage> {
        self.ticker.reset();
        let s = self.settings.lock().unwrap().clone();
        let servers = parse_servers(&s.host, s.port as u16)
            .map_err(|e| gst::error_msg!(gst::ResourceError::NotFound, ("{e}")))?;
        if servers.is_empty() {
            return Err(gst::error_msg!(
                gst::ResourceError::NotFound,
                ("no host given")
            ));
        }
        *self.channels.lock().unwrap() = Channels::default();
        for (number, server) in servers.into_iter().enumerate() {
            self.start_one(&s, number, server)?;
        }
        Ok(())
    }

    fn start_one(
        &self,
        s: &Settings,
        number: usize,
        server: SocketAddr,
    ) -> Result<(), gst::ErrorMessage> {
        let stay = if s.join_until > 0 {
            Stay::Until(s.join_until)
        } else {
            Stay::For(s.join_duration)
        };
        let cfg = ClientConfig {
            channels: s.channels.clone(),
            token: s.token.clone().into_bytes(),
            stay,
            timeout: Duration::from_nanos(s.timeout),
            passphrase: s.passphrase.clone(),
            allow_unauthenticated: s.allow_unauthenticated,
            ..ClientConfig::default()
        };
        let (first, auto) = match s.transport {
            Transport::Auto => (fanout_session::Transport::Multicast, true),
            Transport::Multicast => (fanout_session::Transport::Multicast, false),
            Transport::Udp => (fanout_session::Transport::Udp, false),
            Transport::Tcp => (fanout_session::Transport::Tcp, false),
        };
        let fallback_timeout = Duration::from_nanos(s.fallback_timeout);
        let fallback = Fallback::new(first, auto, fallback_timeout, Mono::ZERO);
        let iface = multicast::iface(&s.multicast_iface).map_err(|e| {
            gst::error_msg!(
                gst::ResourceError::Settings,
                ("multicast-iface {:?}: {e}", s.multicast_iface)
            )
        })?;
        let weak = self.obj().downgrade();
        let (running, thread) = Running::start(weak, number, server, cfg, fallback, iface)
            .map_err(|e| {
                gst::error_msg!(
                    gst::ResourceError::OpenReadWrite,
                    ("cannot open a socket to {server}: {e}")
                )
            })?;
        gst::info!(CAT, imp = self, "joining {server} ({})", first.as_str());
        self.threads.lock().unwrap().push(thread);
        self.running.lock().unwrap().push(running);
        Ok(())
    }

    fn stop(&self) {
        let running = std::mem::take(&mut *self.running.lock().unwrap());
        for r in &running {
            r.stop();
        }
        for t in std::mem::take(&mut *self.threads.lock().unwrap()) {
            let _ = t.join();
        }
        if !running.is_empty() {
            *self.last_stats.lock().unwrap() = Some(receive::stats(self, &running));
        }
        let tasks = self.channels.lock().unwrap().tasks();
        for (pad, queue) in tasks {
            queue.set_flushing(true);
            let _ = pad.stop_task();
        }
        let pads: Vec<gst::Pad> = self.channels.lock().unwrap().pads().cloned().collect();
        for pad in pads {
            let _ = pad.set_active(false);
            let _ = self.obj().remove_pad(&pad);
        }
        *self.channels.lock().unwrap() = Channels::default();
    }

    /// Downstream (`fec-depayloader`, or an edge's `session-sink`) misses symbols of a
    /// block: a LOST to every server carrying the channel (each answers from its own repair
    /// symbols; one that is gone costs nothing).
    pub(super) fn src_event(&self, pad: &gst::Pad, event: gst::Event) -> bool {
        // An edge relay's session-sink asks for repairs its receivers need: they come from
        // the origin, to this edge, marked as answers, and go on to the receiver that asked.
        let ask = gstfanoutfec::parse_block_missing(&event)
            .or_else(|| gstfanoutfec::parse_repair_request(&event));
        if let Some((flow, block, needed)) = ask {
            // The answers go back to the edge's receiver that asked, not to all of them.
            if let Some(dest) = gstfanoutfec::repair_request_destination(&event) {
                let mut ch = self.channels.lock().unwrap();
                ch.await_answer(pad, flow, block, needed, dest);
            }
            let sources = self.channels.lock().unwrap().sources_of(pad);
            let running = self.running();
            for (number, channel) in sources {
                let Some(r) = running.iter().find(|r| r.number == number) else {
                    continue;
                };
                r.report_lost(LostEntry {
                    channel,
                    flow,
                    block,
                    needed: needed.min(u32::from(u16::MAX)) as u16,
                });
            }
            return true;
        }
        gst::Pad::event_default(pad, Some(&*self.obj()), event)
    }

    pub(super) fn src_query(&self, pad: &gst::Pad, query: &mut gst::QueryRef) -> bool {
        if let gst::QueryViewMut::Latency(q) = query.view_mut() {
            q.set(true, gst::ClockTime::ZERO, gst::ClockTime::NONE);
            return true;
        }
        gst::Pad::query_default(pad, Some(&*self.obj()), query)
    }
}

#[glib::object_subclass]
impl ObjectSubclass for SessionSrc {
    const NAME: &'static str = "GstFanoutSessionSrc";
    type Type = super::SessionSrc;
    type ParentType = gst::Element;
}

impl ObjectImpl for SessionSrc {
    fn constructed(&self) {
        self.parent_constructed();
        self.obj().set_element_flags(gst::ElementFlags::SOURCE);
    }

    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            vec![
                glib::ParamSpecString::builder("host")
                    .nick("Host")
                    .blurb("The session-sink to join: host name or IP address, or several as host[:port],host[:port],... (IPv6 as [addr]:port): each is joined and their packets merge per channel name")
                    .default_value(Some(DEFAULT_HOST))
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("port")
                    .nick("Port")
                    .blurb("The session-sink's UDP port")
                    .minimum(1)
                    .maximum(u16::MAX.into())
                    .default_value(DEFAULT_PORT)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("channels")
                    .nick("Channels")
                    .blurb("Comma-separated channel names to join; src_0 is the first, src_1 the second... Empty: every channel, in the server's order")
                    .default_value(Some(""))
                    .mutable_ready()
                    .build(),
                glib::ParamSpecEnum::builder_with_default("transport", Transport::Udp)
                    .nick("Transport")
                    .blurb("How packets arrive: udp (unicast copies), multicast (the channel's group; the session stays on UDP for loss reports and expiry), tcp (framed over a connection, for networks without UDP; needs session-sink tcp=true), auto (multicast, else UDP, else TCP: each given fallback-timeout to deliver)")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt64::builder("fallback-timeout")
                    .nick("Fallback timeout")
                    .blurb("transport=auto: how long (ns) a transport may stay silent before the next is tried; each change is posted on the bus (element message fanout-session-transport) and shown in stats")
                    .minimum(100_000_000)
                    .default_value(DEFAULT_FALLBACK_TIMEOUT)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("multicast-iface")
                    .nick("Multicast interface")
                    .blurb("Interface (name, or IPv4 address) multicast groups are joined on; empty: as the routing table says")
                    .default_value(Some(""))
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt64::builder("join-duration")
                    .nick("Join duration")
                    .blurb("How long each JOIN asks to stay (ns); refreshed at about two thirds of it while running (the server may grant less)")
                    .minimum(1_000_000_000)
                    .default_value(nanos(DEFAULT_JOIN_DURATION))
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt64::builder("join-until")
                    .nick("Join until")
                    .blurb("If set, stay until this Unix time (ns) instead of join-duration, without refreshing past it")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("passphrase")
                    .nick("Passphrase")
                    .blurb("The server's passphrase (session-sink passphrase): its stream is encrypted under it. A wrong one, or none for an encrypted stream, is an error (\"wrong passphrase\"); set for a server that does not encrypt, an error too")
                    .write_only()
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoolean::builder("allow-unauthenticated")
                    .nick("Allow unauthenticated")
                    .blurb("Take data from a server that does not authenticate it (session-sink authenticate=false): anyone who can send to this receiver can then inject data. Off: such a server is an error")
                    .default_value(false)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("token")
                    .nick("Token")
                    .blurb("Sent with each JOIN for the server's application to authorize (up to 255 bytes)")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt64::builder("timeout")
                    .nick("Timeout")
                    .blurb("No answer from the server for this long (ns): an error before the first JOIN succeeded, a warning after")
                    .minimum(100_000_000)
                    .default_value(nanos(DEFAULT_TIMEOUT))
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoxed::builder::<gst::Structure>("stats")
                    .nick("Statistics")
                    .blurb("fanout-session-src-stats, also posted on the bus every second: joined, datagrams, data, foreign, malformed, forged (DATA whose tag did not check out: not the server's), replayed (DATA whose counter was taken already), unkeyed (DATA for a channel without a key yet), joins, lost-reports, lost-entries, dropped-not-playing, unknown-channel; servers (one structure per server: address, joined, transport, transport-changes, group-datagrams, reports-delayed, reports-suppressed, datagrams, data, joins, lost-reports); channels (one per channel: name, pad, servers, packets, bytes, ended, dropped-overflow). Python reads the lists with python3-gst-1.0 installed")
                    .read_only()
                    .build(),
            ]
        });
        PROPERTIES.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let mut s = self.settings.lock().unwrap();
        match pspec.name() {
            "host" => {
                s.host = value
                    .get::<Option<String>>()
                    .unwrap()
                    .unwrap_or_else(|| DEFAULT_HOST.into())
            }
            "port" => s.port = value.get().unwrap(),
            "channels" => {
                let list = parse_list(&value.get::<Option<String>>().unwrap().unwrap_or_default());
                // What the protocol cannot carry is said now, not found out as a refusal.
                if list.len() > MAX_JOIN_CHANNELS {
                    gst::warning!(
                        CAT,
                        imp = self,
                        "{} channels asked for: a JOIN carries {MAX_JOIN_CHANNELS}, the rest are not joined",
                        list.len()
                    );
                }
                for long in list.iter().filter(|n| n.len() > MAX_NAME_LEN) {
                    gst::warning!(
                        CAT,
                        imp = self,
                        "channel name {long:?} is longer than {MAX_NAME_LEN} bytes: no server has it"
                    );
                }
                s.channels = list;
            }
            "transport" => s.transport = value.get().unwrap(),
            "join-duration" => s.join_duration = value.get().unwrap(),
            "join-until" => s.join_until = value.get().unwrap(),
            "passphrase" => {
                s.passphrase = value
                    .get::<Option<String>>()
                    .unwrap()
                    .filter(|p| !p.is_empty())
            }
            "allow-unauthenticated" => s.allow_unauthenticated = value.get().unwrap(),
            "token" => {
                let mut t = value.get::<Option<String>>().unwrap().unwrap_or_default();
                if t.len() > MAX_TOKEN_LEN {
                    gst::warning!(CAT, imp = self, "token cut to {MAX_TOKEN_LEN} bytes");
                    let mut end = MAX_TOKEN_LEN;
                    while !t.is_char_boundary(end) {
                        end -= 1;
                    }
                    t.truncate(end);
                }
                s.token = t;
            }
            "timeout" => s.timeout = value.get().unwrap(),
            "fallback-timeout" => s.fallback_timeout = value.get().unwrap(),
            "multicast-iface" => {
                s.multicast_iface = value.get::<Option<String>>().unwrap().unwrap_or_default()
            }
            other => unreachable!("unknown property {other}"),
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let s = self.settings.lock().unwrap();
        match pspec.name() {
            "host" => s.host.to_value(),
            "port" => s.port.to_value(),
            "channels" => s.channels.join(",").to_value(),
            "transport" => s.transport.to_value(),
            "join-duration" => s.join_duration.to_value(),
            "join-until" => s.join_until.to_value(),
            "token" => s.token.to_value(),
            "passphrase" => None::<String>.to_value(),
            "allow-unauthenticated" => s.allow_unauthenticated.to_value(),
            "timeout" => s.timeout.to_value(),
            "fallback-timeout" => s.fallback_timeout.to_value(),
            "multicast-iface" => s.multicast_iface.to_value(),
            "stats" => {
                drop(s);
                let running = self.running();
                match running.is_empty() {
                    false => receive::stats(self, &running).to_value(),
                    true => self
                        .last_stats
                        .lock()
                        .unwrap()
                        .clone()
                        .unwrap_or_else(receive::empty_stats)
                        .to_value(),
                }
            }
            other => unreachable!("unknown property {other}"),
        }
    }
}

impl GstObjectImpl for SessionSrc {}

impl ElementImpl for SessionSrc {
    /// EOS from the application (`gst-launch-1.0 -e` on Ctrl-C) ends every pad.
    fn send_event(&self, event: gst::Event) -> bool {
        if event.type_() != gst::EventType::Eos {
            return self.parent_send_event(event);
        }
        if !receive::end_all(self) {
            // No pad yet: nothing downstream could end, the pipeline would wait for ever.
            gst::element_imp_error!(
                self,
                gst::ResourceError::Read,
                ("stopped before any server answered: nothing was received")
            );
        }
        true
    }

    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static METADATA: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "fanout session source",
                "Source/Network",
                "Joins a session-sink (cookie handshake), keeps the session alive, adds one src_%u pad per channel with the server's caps, and reports blocks fec-depayloader still misses; UDP, multicast or TCP, falling back from one to the next with transport=auto",
                "The fanout developers",
            )
        });
        Some(&*METADATA)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
            vec![gst::PadTemplate::new(
                "src_%u",
                gst::PadDirection::Src,
                gst::PadPresence::Sometimes,
                &gst::Caps::new_any(),
            )
            .unwrap()]
        });
        TEMPLATES.as_ref()
    }

    fn change_state(
        &self,
        transition: gst::StateChange,
    ) -> Result<gst::StateChangeSuccess, gst::StateChangeError> {
        match transition {
            gst::StateChange::ReadyToPaused => self.start().map_err(|e| {
                self.post_error_message(e);
                gst::StateChangeError
            })?,
            gst::StateChange::PlayingToPaused => self.playing.store(false, Ordering::SeqCst),
            // The pads' tasks end before the pads are deactivated (which waits for them).
            gst::StateChange::PausedToReady => self.stop(),
            _ => (),
        }
        let mut ret = self.parent_change_state(transition);
        match transition {
            gst::StateChange::ReadyToPaused | gst::StateChange::PlayingToPaused => {
                ret = ret.map(|_| gst::StateChangeSuccess::NoPreroll)
            }
            gst::StateChange::PausedToPlaying => self.playing.store(true, Ordering::SeqCst),
            _ => (),
        }
        if ret.is_err() {
            self.stop();
        }
        ret
    }
}
