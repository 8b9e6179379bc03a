// SPDX-License-Identifier: MPL-2.0

//! `session-src`: joins `session-sink`s, one `src_%u` pad per channel it was given, and
//! turns `fanout-block-missing` from downstream into LOST reports. Each server's session
//! runs in `link.rs`, on a thread of its own, and tells the element what happened as
//! [`LinkEvent`]s, acted on here; the channels' pads and queues are in `receive.rs`.
//!
//! Lock order: `links`, then a link's session; `channels`, then a session (stats, stop).
//! No thread takes `channels` while it holds a session's lock: events are handed out with
//! the session released.

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, Mutex};

use fanout_element_kit::settings::{self as kit, Properties};
use fanout_element_kit::stats::Stats;
use fanout_element_kit::worker::Worker;
use fanout_session::message::{MAX_JOIN_CHANNELS, MAX_NAME_LEN, MAX_TOKEN_LEN};
use fanout_session::{ChannelInfo, ClientConfig, Fallback, LostEntry, Mono, Stay};
use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;

use super::link::{LinkEvent, ServerLink, SocketSettings};
use super::receive::{self, Channels};
use super::settings::{parse_list, Settings, PROP_CHANNELS, PROP_TOKEN};
use super::{output, TransportMode, CAT};
use crate::multicast;
use crate::timebase::Timebase;

const STATS_BLURB: &str = "fanout-session-src-stats, also posted on the bus every second: joined, datagrams, data, foreign, malformed, forged (DATA whose tag did not check out: not the server's), replayed (DATA whose counter was taken already), unkeyed (DATA for a channel without a key yet), joins, lost-reports, lost-entries, dropped-not-playing, unknown-channel; servers (one structure per server: address, joined, transport, transport-changes, group-datagrams, udp-reads (UDP reads: with GRO one holds many datagrams), reports-delayed, reports-suppressed, datagrams, data, joins, lost-reports); channels (one per channel: name, pad, servers, packets, bytes, ended, dropped-overflow). Python reads the lists with python3-gst-1.0 installed";

#[derive(Default)]
pub struct SessionSrc {
    settings: Mutex<Settings>,
    /// One per server in `host`.
    links: Mutex<Vec<Arc<ServerLink>>>,
    channels: Mutex<Channels>,
    playing: AtomicBool,
    threads: Mutex<Vec<Worker>>,
    stats: Stats,
    /// The sessions' timers run on this; it follows the pipeline's clock.
    time: Arc<Timebase>,
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

impl SessionSrc {
    fn links(&self) -> Vec<Arc<ServerLink>> {
        self.links.lock().unwrap().clone()
    }

    fn start(&self) -> Result<(), gst::ErrorMessage> {
        self.stats.started();
        let s = self.settings.lock().unwrap().clone();
        let servers = parse_servers(&s.host, s.port as u16).map_err(|e| {
            gst::error_msg!(gst::ResourceError::NotFound, ("{}", e), ["host={}", s.host])
        })?;
        if servers.is_empty() {
            return Err(gst::error_msg!(
                gst::ResourceError::NotFound,
                ("no host given"),
                ["host is empty"]
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
            timeout: std::time::Duration::from_nanos(s.timeout),
            passphrase: s.passphrase.clone(),
            allow_unauthenticated: s.allow_unauthenticated,
            ..ClientConfig::default()
        };
        let (first, auto) = match s.transport {
            TransportMode::Auto => (fanout_session::Transport::Multicast, true),
            TransportMode::Multicast => (fanout_session::Transport::Multicast, false),
            TransportMode::Udp => (fanout_session::Transport::Udp, false),
            TransportMode::Tcp => (fanout_session::Transport::Tcp, false),
        };
        let fallback_timeout = std::time::Duration::from_nanos(s.fallback_timeout);
        let fallback = Fallback::new(first, auto, fallback_timeout, Mono::ZERO);
        let iface = multicast::iface(&s.multicast_iface).map_err(|e| {
            gst::error_msg!(
                gst::ResourceError::Settings,
                ("multicast-iface {:?}: {e}", s.multicast_iface),
                ["{}", e]
            )
        })?;
        let weak = self.obj().downgrade();
        let events = Arc::new(move |e: LinkEvent| {
            if let Some(src) = weak.upgrade() {
                src.imp().on_link_event(e);
            }
        });
        let obj = self.obj();
        let (link, thread) = ServerLink::start(
            obj.upcast_ref(),
            self.time.clone(),
            number,
            server,
            cfg,
            fallback,
            SocketSettings { iface, gro: s.gro },
            events,
        )
        .map_err(|e| {
            gst::error_msg!(
                gst::ResourceError::OpenReadWrite,
                ("cannot open a socket to {server}: {e}"),
                ["{}", e]
            )
        })?;
        gst::info!(CAT, imp = self, "joining {server} ({})", first.as_str());
        self.threads.lock().unwrap().push(thread);
        self.links.lock().unwrap().push(link);
        Ok(())
    }

    fn stop(&self) {
        let links = std::mem::take(&mut *self.links.lock().unwrap());
        for l in &links {
            l.leave();
        }
        for t in std::mem::take(&mut *self.threads.lock().unwrap()) {
            t.join();
        }
        if !links.is_empty() {
            let last = receive::stats(&links, &self.channels.lock().unwrap());
            self.stats.stopped(last);
        }
        let tasks = self.channels.lock().unwrap().tasks();
        for (pad, queue) in tasks {
            queue.close();
            let _ = pad.stop_task();
        }
        let pads: Vec<gst::Pad> = self.channels.lock().unwrap().pads().cloned().collect();
        for pad in pads {
            let _ = pad.set_active(false);
            let _ = self.obj().remove_pad(&pad);
        }
        *self.channels.lock().unwrap() = Channels::default();
    }

    fn stats(&self) -> gst::Structure {
        let links = self.links();
        self.stats.read(!links.is_empty(), || {
            if links.is_empty() {
                return receive::empty_stats();
            }
            receive::stats(&links, &self.channels.lock().unwrap())
        })
    }

    /// What a server's session tells, on its threads.
    fn on_link_event(&self, e: LinkEvent) {
        match e {
            LinkEvent::Channels { number, channels } => self.add_pads(number, &channels),
            LinkEvent::Joined { server, again } => match again {
                false => gst::info!(CAT, imp = self, "joined {server}"),
                true => gst::info!(CAT, imp = self, "joined {server} again (a new session)"),
            },
            LinkEvent::Data {
                number,
                channel,
                batch,
                answer,
            } => {
                let obj = self.obj();
                let pts = match (obj.clock(), obj.base_time()) {
                    (Some(clock), Some(base)) => Some(clock.time().saturating_sub(base)),
                    _ => None,
                };
                let playing = self.playing.load(Ordering::SeqCst);
                self.channels
                    .lock()
                    .unwrap()
                    .push(number, channel, batch, answer, playing, pts);
            }
            LinkEvent::Ended { number, channel } => {
                self.channels.lock().unwrap().ended(number, channel)
            }
            LinkEvent::Refused {
                number,
                server,
                reason,
                text,
            } => {
                let why = if text.is_empty() {
                    reason.as_str().to_owned()
                } else {
                    format!("{} ({text})", reason.as_str())
                };
                // With other servers answering, one refusing is a warning.
                if self.channels.lock().unwrap().joined_other(number) {
                    gst::element_imp_warning!(
                        self,
                        gst::ResourceError::OpenRead,
                        ("{} refused the JOIN: {why}", server),
                        ["other servers answered"]
                    );
                } else {
                    gst::element_imp_error!(
                        self,
                        gst::ResourceError::OpenRead,
                        ("{} refused the JOIN: {why}", server),
                        ["no server answered"]
                    );
                }
            }
            LinkEvent::Unreachable { server } => {
                let timeout = gst::ClockTime::from_nseconds(self.settings.lock().unwrap().timeout);
                if self.channels.lock().unwrap().joined_any() {
                    gst::element_imp_warning!(
                        self,
                        gst::ResourceError::Read,
                        ("no answer from {} for {timeout}: still trying", server),
                        ["timeout={timeout}"]
                    );
                } else {
                    gst::element_imp_error!(
                        self,
                        gst::ResourceError::OpenRead,
                        (
                            "no answer from {} within {timeout}: is a session-sink there?",
                            server
                        ),
                        ["timeout={timeout}"]
                    );
                }
            }
            LinkEvent::Failed { server, text } => {
                gst::element_imp_error!(
                    self,
                    gst::ResourceError::NotAuthorized,
                    ("Cannot take the data of {}: {text}", server),
                    ["passphrase or allow-unauthenticated"]
                );
            }
            LinkEvent::TransportChanged { server, to, why } => {
                gst::info!(
                    CAT,
                    imp = self,
                    "{server}: now {} ({})",
                    to.as_str(),
                    why.as_str()
                );
                let s = gst::Structure::builder("fanout-session-transport")
                    .field("server", server.to_string())
                    .field("transport", to.as_str())
                    .field("reason", why.as_str())
                    .build();
                let obj = self.obj();
                let _ = obj.post_message(gst::message::Element::builder(s).src(&*obj).build());
            }
            LinkEvent::GroupUnavailable {
                server,
                group,
                error,
            } => {
                gst::element_imp_warning!(
                    self,
                    gst::ResourceError::OpenRead,
                    ("cannot join multicast group {group}: {error}"),
                    ["named by {server}"]
                );
            }
            LinkEvent::Turn => self.stats.post_when_due(&*self.obj(), || self.stats()),
        }
    }

    /// Pads for the channels server `number` gave; a name another server gave already
    /// shares its pad.
    fn add_pads(&self, number: usize, channels: &[ChannelInfo]) {
        let obj = self.obj();
        let templ = obj.pad_template("src_%u").unwrap();
        let (new, first) =
            self.channels
                .lock()
                .unwrap()
                .add(obj.upcast_ref(), number, channels, |name| {
                    gst::Pad::builder_from_template(&templ)
                        .name(name)
                        .event_function(|pad, parent, event| {
                            SessionSrc::catch_panic_pad_function(
                                parent,
                                || false,
                                |src| src.src_event(pad, event),
                            )
                        })
                        .query_function(|pad, parent, query| {
                            SessionSrc::catch_panic_pad_function(
                                parent,
                                || false,
                                |src| src.src_query(pad, query),
                            )
                        })
                        .build()
                });
        for (pad, queue) in new {
            let _ = pad.set_active(true);
            if obj.add_pad(&pad).is_err() {
                gst::warning!(CAT, imp = self, "cannot add pad {}", pad.name());
            }
            output::start(obj.upcast_ref(), &pad, queue);
        }
        if first {
            obj.no_more_pads();
        }
    }

    /// Downstream (`fec-depayloader`, or an edge's `session-sink`) misses symbols of a
    /// block: a LOST to every server carrying the channel (each answers from its own repair
    /// symbols; one that is gone costs nothing).
    fn src_event(&self, pad: &gst::Pad, event: gst::Event) -> bool {
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
            let links = self.links();
            for source in sources {
                let Some(l) = links.iter().find(|l| l.number == source.server) else {
                    continue;
                };
                l.report_lost(LostEntry {
                    channel: source.index,
                    flow,
                    block,
                    needed: needed.min(u32::from(u16::MAX)) as u16,
                });
            }
            return true;
        }
        if let Some((_flow, loss)) = gstfanoutfec::parse_loss(&event) {
            let sources = self.channels.lock().unwrap().sources_of(pad);
            let links = self.links();
            for source in sources {
                if let Some(l) = links.iter().find(|l| l.number == source.server) {
                    l.report_loss(source.index, loss);
                }
            }
            return true;
        }
        gst::Pad::event_default(pad, Some(&*self.obj()), event)
    }

    fn src_query(&self, pad: &gst::Pad, query: &mut gst::QueryRef) -> bool {
        if let gst::QueryViewMut::Latency(q) = query.view_mut() {
            q.set(true, gst::ClockTime::ZERO, gst::ClockTime::NONE);
            return true;
        }
        gst::Pad::query_default(pad, Some(&*self.obj()), query)
    }

    /// What the protocol cannot carry is said when it is set, not found out as a refusal.
    fn check_setting(&self, name: &str, value: &glib::Value) {
        let text = value
            .get::<Option<String>>()
            .ok()
            .flatten()
            .unwrap_or_default();
        match name {
            PROP_CHANNELS => {
                let list = parse_list(&text);
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
            }
            PROP_TOKEN if text.len() > MAX_TOKEN_LEN => {
                gst::warning!(CAT, imp = self, "token cut to {MAX_TOKEN_LEN} bytes");
            }
            _ => (),
        }
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
            let mut specs = Settings::param_specs();
            specs.push(
                glib::ParamSpecBoxed::builder::<gst::Structure>("stats")
                    .nick("Statistics")
                    .blurb(STATS_BLURB)
                    .read_only()
                    .build(),
            );
            specs
        });
        PROPERTIES.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        self.check_setting(pspec.name(), value);
        let res = self.settings.lock().unwrap().set(pspec.name(), value);
        kit::log_set_error(*CAT, &*self.obj(), res);
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let got = match pspec.name() {
            "stats" => Ok(self.stats().to_value()),
            name => self.settings.lock().unwrap().get(name),
        };
        kit::or_default(*CAT, &*self.obj(), pspec, got)
    }
}

impl GstObjectImpl for SessionSrc {}

impl ElementImpl for SessionSrc {
    fn set_clock(&self, clock: Option<&gst::Clock>) -> bool {
        self.time.set_clock(clock);
        self.parent_set_clock(clock)
    }

    /// EOS from the application (`gst-launch-1.0 -e` on Ctrl-C) ends every pad.
    fn send_event(&self, event: gst::Event) -> bool {
        if event.type_() != gst::EventType::Eos {
            return self.parent_send_event(event);
        }
        if !self.channels.lock().unwrap().end_all() {
            // No pad yet: nothing downstream could end, the pipeline would wait for ever.
            gst::element_imp_error!(
                self,
                gst::ResourceError::Read,
                ("stopped before any server answered: nothing was received"),
                ["EOS sent to the element before any JOINED"]
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
