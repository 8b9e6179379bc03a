// SPDX-License-Identifier: MPL-2.0

//! `session-sink`: request pads (one channel each) and the element's life cycle. While it
//! runs, the streaming threads send (`send.rs`) from what the threads share (`shared.rs`);
//! the control thread started here owns the protocol (`control.rs`) and carries out what
//! each of its turns asks for; TCP connections have threads of their own (`tcp.rs`).
//!
//! Lock order: `started`, then the control state, then a pad's or the snapshot's locks.
//! Signals are emitted and events pushed with none of them held.

use std::net::SocketAddr;
use std::ops::ControlFlow;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::sync::{Arc, LazyLock, Mutex};

use fanout_element_kit::pads;
use fanout_element_kit::settings::{self as kit, Properties};
use fanout_element_kit::stats::{post_stats, Stats};
use fanout_element_kit::worker::{Stop, Turns, Worker};
use fanout_session::seal::{KeyLen, PASSPHRASE_LEN};
use fanout_session::{Peer, Server, ServerConfig};
use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gstfanoutfec::packing;

use super::control::{Action, Ask, ChannelView, Control};
use super::hold::{Hold, Opened};
use super::pad::SessionSinkPad;
use super::send;
use super::settings::Settings;
use super::shared::{GroupSettings, Shared, ToControl, MAX_TCP_FRAMES_WAITING};
use super::{stats, tcp, CAT};
use crate::multicast;
use crate::tick::TICK;
use crate::timebase::Timebase;

const STATS_BLURB: &str = "fanout-session-sink-stats, also posted on the bus every second: clients, gso, datagrams-received, foreign, malformed, hellos, joins, bad-cookies, refused, leaves, unknown-session, lost-reports, repair-symbols-asked, repair-symbols-granted (also counting top-up-symbols), loss-reports (LOSS messages taken, like lost-reports; those naming no session of their sender also count in unknown-session), top-up-symbols (repair sent up front with each block for a loss a receiver told), repairs-over-budget, replies-withheld, group-repairs, group-reports-covered, tcp-connections; channels (one structure per channel: index, name, clients, buffers, packets (for everyone, not repairs to one: a block-packed buffer holds many), bytes, datagrams, repairs, multicast-group, group-datagrams, group-repairs, tcp-frames, bad-buffers: buffers dropped because their packet list did not fit them); receivers (one per receiver: address, transport, queue-dropped, channels, packets, bytes, repairs, repairs-refused, gso-sends, send-errors). Python reads the lists with python3-gst-1.0 installed";

/// What exists between READY→PAUSED and PAUSED→READY.
struct Started {
    shared: Arc<Shared>,
    /// Owned by the control thread; see `control.rs` for who else may lock it.
    control: Arc<Mutex<Control>>,
    thread: Worker,
}

#[derive(Default)]
pub struct SessionSink {
    settings: Mutex<Settings>,
    started: Mutex<Option<Started>>,
    stats: Stats,
    /// The protocol's timers run on this; it follows the pipeline's clock.
    time: Arc<Timebase>,
}

impl SessionSink {
    fn shared(&self) -> Option<Arc<Shared>> {
        self.started
            .lock()
            .unwrap()
            .as_ref()
            .map(|s| s.shared.clone())
    }

    fn control(&self) -> Option<Arc<Mutex<Control>>> {
        self.started
            .lock()
            .unwrap()
            .as_ref()
            .map(|s| s.control.clone())
    }

    fn start(&self) -> Result<(), gst::ErrorMessage> {
        let s = self.settings.lock().unwrap().clone();
        let settings_error = |what: String| {
            gst::error_msg!(
                gst::ResourceError::Settings,
                ("Invalid settings"),
                ["{}", what]
            )
        };
        let ip: std::net::IpAddr = s
            .address
            .parse()
            .map_err(|_| settings_error(format!("address {:?} is not an IP address", s.address)))?;
        let bind = SocketAddr::new(ip, s.port as u16);
        let socket = bind_udp(bind).map_err(|e| {
            gst::error_msg!(
                gst::ResourceError::OpenReadWrite,
                ("cannot listen on {}", bind),
                ["{}", e]
            )
        })?;
        let secret = match &s.secret {
            Some(k) => k.as_bytes().to_vec(),
            None => {
                let mut k = vec![0u8; 32];
                getrandom::fill(&mut k).map_err(|e| {
                    gst::error_msg!(gst::LibraryError::Init, ("No random secret"), ["{}", e])
                })?;
                k
            }
        };
        let mut cfg = ServerConfig::new(secret);
        cfg.max_clients = s.max_clients as usize;
        cfg.max_clients_per_host = s.max_clients_per_host as usize;
        cfg.max_stay = std::time::Duration::from_nanos(s.max_stay);
        cfg.repair_rate = s.repair_rate;
        cfg.repair_burst = s.repair_burst;
        cfg.channel_repair_percent = s.channel_repair_percent;
        cfg.top_up_confidence = s.top_up_confidence;
        cfg.authenticate = s.authenticate;
        cfg.key_len = KeyLen::new(s.pbkeylen).ok_or_else(|| {
            settings_error(format!("pbkeylen must be 16, 24 or 32, not {}", s.pbkeylen))
        })?;
        if let Some(pass) = &s.passphrase {
            if !PASSPHRASE_LEN.contains(&pass.len()) {
                return Err(settings_error(format!(
                    "The passphrase must be 10 to 79 bytes long, not {}",
                    pass.len()
                )));
            }
        }
        cfg.passphrase = s.passphrase.clone();
        let iface = multicast::iface(&s.multicast_iface)
            .map_err(|e| settings_error(format!("multicast-iface {:?}: {e}", s.multicast_iface)))?;
        let listener = match s.tcp {
            false => None,
            true => Some(tcp::listen(bind).map_err(|e| {
                gst::error_msg!(
                    gst::ResourceError::OpenReadWrite,
                    ("cannot listen on TCP {}", bind),
                    ["{}", e]
                )
            })?),
        };
        let (tx, rx) = mpsc::channel();
        let (frames_tx, frames_rx) = mpsc::sync_channel(MAX_TCP_FRAMES_WAITING);
        let shared = Arc::new(Shared::new(
            self.time.clone(),
            Arc::new(socket),
            s.gso,
            GroupSettings {
                ttl: s.ttl,
                iface,
                looped: s.multicast_loop,
                gso: s.gso,
            },
            Hold::new(s.wait_for_clients, s.wait_timeout, self.time.now()),
            s.tcp_queue as usize,
            s.tcp_queue_bytes as usize,
            tx,
            frames_tx,
        ));
        let mut control = Control::new(Server::new(cfg), rx, frames_rx, listener, self.time.now());
        for pad in self.sink_pads() {
            let sealer = control.set_channel(
                pad.index(),
                &pad.channel_name(),
                &pad.imp().caps.lock().unwrap(),
                pad.group(),
            );
            *pad.imp().sealer.lock().unwrap() = sealer;
        }
        let control = Arc::new(Mutex::new(control));
        gst::info!(
            CAT,
            imp = self,
            "listening on {bind}{}, GSO {}",
            if s.tcp { " (UDP and TCP)" } else { "" },
            s.gso
        );
        let thread = {
            let turns = ControlThread {
                sink: self.obj().downgrade(),
                shared: shared.clone(),
                control: control.clone(),
                buf: vec![0u8; 2048],
                wait: TICK,
            };
            Worker::spawn("session-sink", turns).map_err(|e| {
                gst::error_msg!(
                    gst::CoreError::Thread,
                    ("Cannot start the control thread"),
                    ["{}", e]
                )
            })?
        };
        self.stats.started();
        *self.started.lock().unwrap() = Some(Started {
            shared,
            control,
            thread,
        });
        Ok(())
    }

    fn stop(&self) {
        let started = self.started.lock().unwrap().take();
        if let Some(s) = started {
            s.thread.join();
            let mut control = s.control.lock().unwrap();
            self.stats
                .stopped(stats::stats(&control, &s.shared, &self.sink_pads()));
            control.close(&s.shared);
        }
        for pad in self.sink_pads() {
            pad.imp().eos.store(false, Ordering::SeqCst);
            *pad.imp().held.lock().unwrap() = Default::default();
        }
    }

    fn sink_pads(&self) -> Vec<SessionSinkPad> {
        self.obj()
            .sink_pads()
            .into_iter()
            .filter_map(|p| p.downcast::<SessionSinkPad>().ok())
            .collect()
    }

    fn pad_of(&self, index: u16) -> Option<SessionSinkPad> {
        self.sink_pads().into_iter().find(|p| p.index() == index)
    }

    /// The pad's `channel`, group or caps changed: its receivers are told (CHANNEL), and
    /// the pad seals with its channel's key before any data goes.
    fn channel_changed(&self, pad: &SessionSinkPad) {
        let Some(control) = self.control() else {
            return;
        };
        let caps = pad.imp().caps.lock().unwrap().clone();
        let sealer = control.lock().unwrap().set_channel(
            pad.index(),
            &pad.channel_name(),
            &caps,
            pad.group(),
        );
        *pad.imp().sealer.lock().unwrap() = sealer;
    }

    fn channel_views(&self) -> Vec<ChannelView> {
        self.sink_pads()
            .iter()
            .map(|p| {
                let i = p.imp();
                ChannelView {
                    index: p.index(),
                    group: p.group(),
                    ended: i.eos.load(Ordering::SeqCst),
                    buffers: i.stats.buffers.load(Ordering::Relaxed),
                    stream_packets: i.stats.stream_packets.load(Ordering::Relaxed),
                }
            })
            .collect()
    }

    fn chain_list(
        &self,
        pad: &SessionSinkPad,
        list: gst::BufferList,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        let shared = self.shared().ok_or(gst::FlowError::Flushing)?;
        send::chain_list(&shared, pad, list)
    }

    fn sink_event(&self, pad: &SessionSinkPad, event: gst::Event) -> bool {
        match event.view() {
            gst::EventView::Caps(c) => {
                // How packets come here is not the receivers' business.
                let mut caps = c.caps_owned();
                if let Some(s) = caps.make_mut().structure_mut(0) {
                    s.remove_field(packing::PACKING);
                }
                *pad.imp().caps.lock().unwrap() = caps.to_string();
                self.channel_changed(pad);
                return true;
            }
            gst::EventView::Eos(_) => {
                if let Some(shared) = self.shared() {
                    // The stream ended (or Ctrl-C): no point waiting for more receivers.
                    if shared.hold.end() {
                        gst::info!(CAT, imp = self, "the stream ended while waiting for receivers: sending to those that joined");
                    }
                    send::send_held(&shared, pad);
                    shared.tell(ToControl::Ended(pad.index()));
                }
                pad.imp().eos.store(true, Ordering::SeqCst);
                return true;
            }
            gst::EventView::FlushStart(_) => {
                *pad.imp().held.lock().unwrap() = Default::default();
                pad.imp().flushing.store(true, Ordering::SeqCst);
                if let Some(shared) = self.shared() {
                    shared.hold.wake_all();
                }
            }
            gst::EventView::FlushStop(_) => {
                pad.imp().flushing.store(false, Ordering::SeqCst);
                pad.imp().eos.store(false, Ordering::SeqCst)
            }
            _ => (),
        }
        gst::Pad::event_default(pad, Some(&*self.obj()), event)
    }

    /// Removes the receiver at `address` ("ip:port", "tcp:ip:port"); false if there is none.
    fn remove_client(&self, address: &str) -> bool {
        let (Some(control), Ok(peer)) = (self.control(), address.parse::<Peer>()) else {
            return false;
        };
        let removed = control.lock().unwrap().remove_client(peer);
        removed
    }

    fn stats(&self) -> gst::Structure {
        let live = self
            .started
            .lock()
            .unwrap()
            .as_ref()
            .map(|s| (s.shared.clone(), s.control.clone()));
        self.stats.read(live.is_some(), || match live {
            Some((shared, control)) => {
                stats::stats(&control.lock().unwrap(), &shared, &self.sink_pads())
            }
            None => stats::empty_stats(),
        })
    }

    /// Carries out a turn's actions, with no lock held.
    fn act(&self, shared: &Shared, actions: Vec<Action>) {
        let obj = self.obj();
        for a in actions {
            match a {
                Action::Added(peer) => {
                    gst::info!(CAT, imp = self, "receiver {peer} joined");
                    obj.emit_by_name::<()>("client-added", &[&peer.to_string()]);
                }
                Action::Removed(peer, reason) => {
                    gst::info!(CAT, imp = self, "receiver {peer} out: {}", reason.as_str());
                    obj.emit_by_name::<()>(
                        "client-removed",
                        &[&peer.to_string(), &reason.as_str()],
                    );
                }
                Action::Repair {
                    channel,
                    flow,
                    block,
                    count,
                    to,
                } => {
                    let Some(pad) = self.pad_of(channel) else {
                        continue;
                    };
                    gst::log!(
                        CAT,
                        obj = pad,
                        "{count} repairs of block {block} of flow {flow} for {to:?}"
                    );
                    pad.push_event(gstfanoutfec::repair_request(
                        flow,
                        block,
                        count,
                        to.to_send_value(),
                    ));
                }
                Action::GroupKeepalive(channel) => {
                    if let Some(pad) = self.pad_of(channel) {
                        send::group_keepalive(shared, &pad);
                    }
                }
                Action::HoldOpened(Opened::Joined { want }) => {
                    gst::info!(
                        CAT,
                        imp = self,
                        "enough receivers joined (waited for {want}): sending"
                    );
                }
                Action::HoldOpened(Opened::TimedOut { want, joined }) => {
                    let timeout =
                        gst::ClockTime::from_nseconds(self.settings.lock().unwrap().wait_timeout);
                    gst::element_imp_warning!(
                        self,
                        gst::ResourceError::Failed,
                        ("only {joined} of {want} receivers joined within {timeout}: sending to those"),
                        ["wait-for-clients={want} wait-timeout={timeout}"]
                    );
                }
                Action::Eos => {
                    gst::debug!(CAT, imp = self, "every channel ended");
                    let _ = obj.post_message(gst::message::Eos::builder().src(&*obj).build());
                }
                Action::PostStats => post_stats(&*obj, self.stats()),
            }
        }
    }
}

/// The control thread: receives the protocol's datagrams, takes what the other threads
/// told it, and lets the control state take its turn on the time now.
struct ControlThread {
    sink: glib::WeakRef<super::SessionSink>,
    shared: Arc<Shared>,
    control: Arc<Mutex<Control>>,
    buf: Vec<u8>,
    /// The socket's read timeout now.
    wait: std::time::Duration,
}

impl Turns for ControlThread {
    fn turn(&mut self, stop: &Stop) -> ControlFlow<()> {
        let (shared, control) = (&self.shared, &self.control);
        let w = control
            .lock()
            .unwrap()
            .poll_timeout(shared, shared.time.now());
        if w != self.wait && shared.socket.set_read_timeout(Some(w)).is_ok() {
            self.wait = w;
        }
        let received = shared.socket.recv_from(&mut self.buf);
        let Some(sink) = self.sink.upgrade() else {
            return ControlFlow::Break(());
        };
        let imp = sink.imp();
        let element: &gst::Element = sink.upcast_ref();
        let now = shared.time.now();
        let asks: Vec<Ask> = {
            let mut c = control.lock().unwrap();
            let mut asks = match received {
                Ok((n, from)) => c
                    .take(shared, now, Peer::Udp(from), &self.buf[..n])
                    .into_iter()
                    .collect(),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    Vec::new()
                }
                // An ICMP error for something sent earlier: nothing to do here.
                Err(e) => {
                    gst::trace!(CAT, obj = element, "receive: {e}");
                    Vec::new()
                }
            };
            asks.extend(c.take_messages(shared, now));
            c.accept_tcp(element, shared);
            asks
        };
        for ask in asks {
            // Stopping: what is not decided yet never will be (the receivers retry).
            if stop.is_set() {
                return ControlFlow::Break(());
            }
            // The application decides with no lock held.
            let allowed =
                sink.emit_by_name::<bool>("client-joining", &[&ask.from.to_string(), &ask.token]);
            if !allowed {
                gst::info!(CAT, obj = element, "JOIN from {} not authorized", ask.from);
            }
            control
                .lock()
                .unwrap()
                .decide(shared, shared.time.now(), ask, allowed);
        }
        let channels = imp.channel_views();
        let actions =
            control
                .lock()
                .unwrap()
                .service(element, shared, shared.time.now(), &channels);
        imp.act(shared, actions);
        ControlFlow::Continue(())
    }
}

/// A caps query from `fec-payloader`: block packing first, so it sends a block's packets
/// in one buffer, which goes out as GSO super-datagrams without a buffer per packet.
fn prefer_blocks(query: &mut gst::QueryRef) -> bool {
    let gst::QueryViewMut::Caps(q) = query.view_mut() else {
        return false;
    };
    let Some(filter) = q.filter_owned() else {
        return false;
    };
    if !filter.can_intersect(&gst::Caps::new_empty_simple("application/x-fanout-fec")) {
        return false;
    }
    let mut ours = packing::caps(None, packing::BLOCK);
    ours.merge(packing::caps(None, packing::DATAGRAM));
    let mut result = ours.intersect_with_mode(&filter, gst::CapsIntersectMode::First);
    // Anything else stays welcome, after.
    result.merge(filter);
    q.set_result(&result);
    true
}

fn bind_udp(addr: SocketAddr) -> std::io::Result<std::net::UdpSocket> {
    let domain = socket2::Domain::for_address(addr);
    let s = socket2::Socket::new(domain, socket2::Type::DGRAM, Some(socket2::Protocol::UDP))?;
    // Large buffers: a fan-out burst is many receivers times a block.
    let _ = s.set_send_buffer_size(8 << 20);
    let _ = s.set_recv_buffer_size(1 << 20);
    s.bind(&addr.into())?;
    let s: std::net::UdpSocket = s.into();
    s.set_read_timeout(Some(TICK))?;
    Ok(s)
}

#[glib::object_subclass]
impl ObjectSubclass for SessionSink {
    const NAME: &'static str = "GstFanoutSessionSink";
    type Type = super::SessionSink;
    type ParentType = gst::Element;
    type Interfaces = (gst::ChildProxy,);
}

impl ObjectImpl for SessionSink {
    fn constructed(&self) {
        self.parent_constructed();
        self.obj().set_element_flags(gst::ElementFlags::SINK);
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

    fn signals() -> &'static [glib::subclass::Signal] {
        static SIGNALS: LazyLock<Vec<glib::subclass::Signal>> = LazyLock::new(|| {
            vec![
                glib::subclass::Signal::builder("client-added")
                    .param_types([String::static_type()])
                    .build(),
                glib::subclass::Signal::builder("client-removed")
                    .param_types([String::static_type(), String::static_type()])
                    .build(),
                glib::subclass::Signal::builder("client-joining")
                    .param_types([String::static_type(), String::static_type()])
                    .return_type::<bool>()
                    .class_handler(|_| Some(true.to_value()))
                    // The first handler saying no decides.
                    .accumulator(|_hint, _acc, value| {
                        if value.get::<bool>().unwrap_or(false) {
                            std::ops::ControlFlow::Continue(value.clone())
                        } else {
                            std::ops::ControlFlow::Break(false.to_value())
                        }
                    })
                    .build(),
                glib::subclass::Signal::builder("remove-client")
                    .param_types([String::static_type()])
                    .return_type::<bool>()
                    .action()
                    .class_handler(|args| {
                        let sink = args[0].get::<super::SessionSink>().unwrap();
                        let address = args[1].get::<String>().unwrap_or_default();
                        Some(sink.imp().remove_client(&address).to_value())
                    })
                    .build(),
            ]
        });
        SIGNALS.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
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

impl GstObjectImpl for SessionSink {}

/// The channels as children, so `gst-launch-1.0` sets their properties:
/// `session-sink name=s sink_0::channel=news`.
impl ChildProxyImpl for SessionSink {
    fn child_by_index(&self, index: u32) -> Option<glib::Object> {
        pads::child_by_index(self.obj().upcast_ref(), gst::PadDirection::Sink, index)
    }

    fn children_count(&self) -> u32 {
        pads::children_count(self.obj().upcast_ref(), gst::PadDirection::Sink)
    }

    fn child_by_name(&self, name: &str) -> Option<glib::Object> {
        pads::child_by_name(self.obj().upcast_ref(), name)
    }
}

impl ElementImpl for SessionSink {
    fn set_clock(&self, clock: Option<&gst::Clock>) -> bool {
        self.time.set_clock(clock);
        self.parent_set_clock(clock)
    }

    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static METADATA: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "fanout session sink",
                "Sink/Network",
                "Serves every channel (one per sink pad) to the receivers that joined it with session-src: cookie handshake, expiry, loss reports answered with fresh repair symbols; UDP GSO fan-out, multicast groups, TCP",
                "The fanout developers",
            )
        });
        Some(&*METADATA)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
            vec![gst::PadTemplate::with_gtype(
                "sink_%u",
                gst::PadDirection::Sink,
                gst::PadPresence::Request,
                &gst::Caps::new_any(),
                SessionSinkPad::static_type(),
            )
            .unwrap()]
        });
        TEMPLATES.as_ref()
    }

    fn request_new_pad(
        &self,
        templ: &gst::PadTemplate,
        name: Option<&str>,
        _caps: Option<&gst::Caps>,
    ) -> Option<gst::Pad> {
        let obj = self.obj();
        // Channel numbers go on the wire as 16 bits.
        let (name, _) = pads::request_name(obj.upcast_ref(), "sink_", name, u32::from(u16::MAX))?;
        let pad = gst::PadBuilder::<SessionSinkPad>::from_template(templ)
            .name(name.as_str())
            .chain_function(|pad, parent, buffer| {
                SessionSink::catch_panic_pad_function(
                    parent,
                    || Err(gst::FlowError::Error),
                    |sink| {
                        let mut list = gst::BufferList::new_sized(1);
                        list.get_mut().unwrap().add(buffer);
                        sink.chain_list(pad, list)
                    },
                )
            })
            .chain_list_function(|pad, parent, list| {
                SessionSink::catch_panic_pad_function(
                    parent,
                    || Err(gst::FlowError::Error),
                    |sink| sink.chain_list(pad, list),
                )
            })
            .event_function(|pad, parent, event| {
                SessionSink::catch_panic_pad_function(
                    parent,
                    || false,
                    |sink| sink.sink_event(pad, event),
                )
            })
            .query_function(|pad, parent, query| {
                // Loss reports come back from here: fec-payloader lingers for them at EOS.
                gstfanoutfec::is_repair_path_query(query)
                    || prefer_blocks(query)
                    || gst::Pad::query_default(pad, parent, query)
            })
            .build();
        // Receivers hear of a new name or group at once.
        for property in [super::pad::PROP_CHANNEL, super::pad::PROP_MULTICAST_GROUP] {
            let sink = obj.downgrade();
            pad.connect_notify(Some(property), move |pad, _| {
                if let Some(sink) = sink.upgrade() {
                    sink.imp().channel_changed(pad);
                }
            });
        }
        if !pads::add_requested(obj.upcast_ref(), &pad) {
            return None;
        }
        self.channel_changed(&pad);
        Some(pad.upcast())
    }

    fn release_pad(&self, pad: &gst::Pad) {
        if let (Some(p), Some(control)) = (pad.downcast_ref::<SessionSinkPad>(), self.control()) {
            control.lock().unwrap().server.remove_channel(p.index());
        }
        pads::remove_requested(self.obj().upcast_ref(), pad);
    }

    fn change_state(
        &self,
        transition: gst::StateChange,
    ) -> Result<gst::StateChangeSuccess, gst::StateChangeError> {
        if transition == gst::StateChange::ReadyToPaused {
            self.start().map_err(|e| {
                self.post_error_message(e);
                gst::StateChangeError
            })?;
        }
        if transition == gst::StateChange::PausedToReady {
            // A streaming thread held for receivers lets go before the pads deactivate.
            if let Some(shared) = self.shared() {
                shared.hold.stop();
            }
        }
        let ret = self.parent_change_state(transition);
        if transition == gst::StateChange::PausedToReady || ret.is_err() {
            self.stop();
        }
        ret
    }
}
