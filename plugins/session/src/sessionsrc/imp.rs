// SPDX-License-Identifier: MPL-2.0

//! `session-src`: joins a `session-sink`, one `src_%u` pad per channel it was given, and
//! turns `fanout-block-missing` from downstream into LOST reports. The socket and protocol
//! run in `receive.rs`, on the element's own thread.

use std::net::{SocketAddr, ToSocketAddrs, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use fanout_session::client::{DEFAULT_JOIN_DURATION, DEFAULT_TIMEOUT};
use fanout_session::{Client, ClientConfig, LostEntry, Stay};
use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;

use super::receive::{self, Channels};
use super::Transport;

pub static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "session-src",
        gst::DebugColorFlags::empty(),
        Some("fanout session source: joins a session-sink and receives its channels"),
    )
});

const DEFAULT_HOST: &str = "127.0.0.1";
const DEFAULT_PORT: u32 = crate::sessionsink::DEFAULT_PORT;

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
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            host: DEFAULT_HOST.into(),
            port: DEFAULT_PORT,
            channels: Vec::new(),
            transport: Transport::Udp,
            join_duration: DEFAULT_JOIN_DURATION,
            join_until: 0,
            token: String::new(),
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

/// One server's session, between READY→PAUSED and PAUSED→READY, shared with its receiving
/// thread.
pub(super) struct Running {
    /// Its place in `host`.
    pub number: usize,
    pub socket: UdpSocket,
    pub server: SocketAddr,
    pub client: Mutex<Client>,
    pub start: Instant,
    pub stop: AtomicBool,
}

impl Running {
    pub fn now(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    /// Sends whatever the client has to send.
    pub fn flush(&self, client: &mut Client) {
        while let Some(d) = client.poll_transmit() {
            if let Err(e) = self.socket.send(&d) {
                gst::debug!(CAT, "send to {}: {e}", self.server);
            }
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
        let socket = receive::connect(server).map_err(|e| {
            gst::error_msg!(
                gst::ResourceError::OpenReadWrite,
                ("cannot open a socket to {server}: {e}")
            )
        })?;
        let stay = if s.join_until > 0 {
            Stay::Until(s.join_until)
        } else {
            Stay::For(s.join_duration)
        };
        let cfg = ClientConfig {
            channels: s.channels.clone(),
            token: s.token.clone().into_bytes(),
            stay,
            timeout: s.timeout,
            ..ClientConfig::default()
        };
        let seed = getrandom::u64().unwrap_or_else(|_| std::process::id().into());
        let start = Instant::now();
        let running = Arc::new(Running {
            number,
            socket,
            server,
            client: Mutex::new(Client::new(cfg, 0, seed)),
            start,
            stop: AtomicBool::new(false),
        });
        {
            let mut client = running.client.lock().unwrap();
            running.flush(&mut client);
        }
        gst::info!(CAT, imp = self, "joining {server}");
        let weak = self.obj().downgrade();
        let r = running.clone();
        let thread = std::thread::Builder::new()
            .name("session-src".into())
            .spawn(move || receive::run(weak, r))
            .map_err(|e| gst::error_msg!(gst::CoreError::Thread, ("{e}")))?;
        self.threads.lock().unwrap().push(thread);
        self.running.lock().unwrap().push(running);
        Ok(())
    }

    fn stop(&self) {
        let running = std::mem::take(&mut *self.running.lock().unwrap());
        for r in &running {
            r.stop.store(true, Ordering::SeqCst);
            let mut client = r.client.lock().unwrap();
            client.leave();
            r.flush(&mut client);
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
        // the origin, to this edge, and go out to all of the edge's receivers of the channel.
        let ask = gstfanoutfec::parse_block_missing(&event)
            .or_else(|| gstfanoutfec::parse_repair_request(&event));
        if let Some((flow, block, needed)) = ask {
            let sources = self.channels.lock().unwrap().sources_of(pad);
            let running = self.running();
            for (number, channel) in sources {
                let Some(r) = running.iter().find(|r| r.number == number) else {
                    continue;
                };
                let entry = LostEntry {
                    channel,
                    flow,
                    block,
                    needed: needed.min(u32::from(u16::MAX)) as u16,
                };
                let mut client = r.client.lock().unwrap();
                client.report_lost(&[entry]);
                r.flush(&mut client);
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
                    .blurb("How packets arrive")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt64::builder("join-duration")
                    .nick("Join duration")
                    .blurb("How long each JOIN asks to stay (ns); refreshed at about two thirds of it while running (the server may grant less)")
                    .minimum(1_000_000_000)
                    .default_value(DEFAULT_JOIN_DURATION)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt64::builder("join-until")
                    .nick("Join until")
                    .blurb("If set, stay until this Unix time (ns) instead of join-duration, without refreshing past it")
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
                    .default_value(DEFAULT_TIMEOUT)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoxed::builder::<gst::Structure>("stats")
                    .nick("Statistics")
                    .blurb("Session state, datagrams, data packets per channel, loss reports")
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
                s.channels = parse_list(&value.get::<Option<String>>().unwrap().unwrap_or_default())
            }
            "transport" => s.transport = value.get().unwrap(),
            "join-duration" => s.join_duration = value.get().unwrap(),
            "join-until" => s.join_until = value.get().unwrap(),
            "token" => {
                let mut t = value.get::<Option<String>>().unwrap().unwrap_or_default();
                if t.len() > 255 {
                    gst::warning!(CAT, imp = self, "token cut to 255 bytes");
                    let mut end = 255;
                    while !t.is_char_boundary(end) {
                        end -= 1;
                    }
                    t.truncate(end);
                }
                s.token = t;
            }
            "timeout" => s.timeout = value.get().unwrap(),
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
            "timeout" => s.timeout.to_value(),
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
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static METADATA: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "fanout session source",
                "Source/Network",
                "Joins a session-sink (cookie handshake), keeps the session alive, adds one src_%u pad per channel with the server's caps, and reports blocks fec-depayloader still misses",
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
