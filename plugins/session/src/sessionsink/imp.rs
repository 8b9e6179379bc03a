// SPDX-License-Identifier: MPL-2.0

//! `session-sink`: request pads (one channel each), the data path (every buffer to every
//! receiver of its channel, to its multicast group and to its TCP receivers' queues; repair
//! packets to the one receiver or the group that asked) and the element's life cycle. The
//! protocol runs in `control.rs`, on its own thread; TCP connections in `tcp.rs`.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use fanout_session::seal::{KeyLen, PASSPHRASE_LEN};
use fanout_session::server::{
    DEFAULT_CHANNEL_REPAIR_PERCENT, DEFAULT_MAX_CLIENTS, DEFAULT_MAX_CLIENTS_PER_HOST,
    DEFAULT_MAX_STAY, DEFAULT_REPAIR_BURST, DEFAULT_REPAIR_RATE,
};
use fanout_session::time::nanos;
use fanout_session::{Server, ServerConfig};
use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gstfanoutfec::packet_destination;

use super::control::{self, Snapshot, GROUP_DESTINATION};
use super::hold::{release_rate, Hold};
use super::pad::{ChannelStats, SessionSinkPad};
use super::tcp::{self, Conn};
use super::wire::Wire;
use crate::fanout::{Fanout, Targets};
use crate::multicast;

pub static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "session-sink",
        gst::DebugColorFlags::empty(),
        Some("fanout session sink: independent receiver sessions, UDP GSO fan-out"),
    )
});

pub const DEFAULT_ADDRESS: &str = "0.0.0.0";
pub const DEFAULT_PORT: u32 = 5600;
/// Consecutive failed sends after which a receiver is evicted.
pub const EVICT_AFTER_ERRORS: u64 = 1000;
pub const DEFAULT_TTL: u32 = 1;
pub const DEFAULT_TCP_QUEUE: u32 = 4096;
/// About a second of an 8 Mbit/s stream.
pub const DEFAULT_TCP_QUEUE_BYTES: u32 = 1 << 20;
pub const DEFAULT_WAIT_TIMEOUT: u64 = 30_000_000_000;
/// What `wait-for-clients` keeps per channel before upstream has to wait.
const HELD_MAX_BYTES: usize = 32 << 20;

#[derive(Debug, Clone)]
pub(super) struct Settings {
    pub address: String,
    pub port: u32,
    pub secret: Option<String>,
    pub max_clients: u32,
    pub max_clients_per_host: u32,
    pub max_stay: u64,
    pub channel_repair_percent: u32,
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
            authenticate: true,
            passphrase: None,
            pbkeylen: 16,
            gso: true,
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

/// What exists between READY→PAUSED and PAUSED→READY, shared with the control thread.
pub(super) struct Running {
    pub start: Instant,
    pub socket: Arc<UdpSocket>,
    pub fanout: Fanout,
    /// Sends to IPv4 and IPv6 groups (made on first use: most servers need neither).
    pub group_v4: Mutex<Option<Arc<Fanout>>>,
    pub group_v6: Mutex<Option<Arc<Fanout>>>,
    pub group_settings: (u32, multicast::Iface, bool, bool),
    pub listener: Option<TcpListener>,
    pub conns: Mutex<HashMap<SocketAddr, Arc<Conn>>>,
    pub tcp_queue: usize,
    pub tcp_queue_bytes: usize,
    /// TCP connections that closed, for the control thread to take their receivers out.
    pub tcp_closed: Mutex<Vec<SocketAddr>>,
    pub tcp_threads: Mutex<Vec<JoinHandle<()>>>,
    pub server: Mutex<Server>,
    pub snapshot: Mutex<Arc<Snapshot>>,
    pub stop: AtomicBool,
    /// Channels whose stream ended, for the control thread to tell their receivers.
    pub ended: Mutex<Vec<u16>>,
    /// Receivers whose sends keep failing, for the control thread to evict.
    pub evict: Mutex<Vec<u64>>,
    pub gso_refusal_told: AtomicBool,
    /// `wait-for-clients`: data waits here until enough receivers joined.
    pub hold: Hold,
}

pub struct SessionSink {
    pub(super) settings: Mutex<Settings>,
    pub(super) running: Mutex<Option<Arc<Running>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    last_stats: Mutex<Option<gst::Structure>>,
}

impl Running {
    /// The sender for `group`'s address family; made on first use.
    fn group_fanout(&self, group: SocketAddr) -> Option<Arc<Fanout>> {
        let slot = match group {
            SocketAddr::V4(_) => &self.group_v4,
            SocketAddr::V6(_) => &self.group_v6,
        };
        let mut slot = slot.lock().unwrap();
        if slot.is_none() {
            let (ttl, iface, looped, gso) = self.group_settings;
            match multicast::sender(group.is_ipv6(), ttl, iface, looped) {
                Ok(s) => *slot = Some(Arc::new(Fanout::new(Arc::new(s), gso))),
                Err(e) => gst::warning!(CAT, "cannot send to multicast group {group}: {e}"),
            }
        }
        slot.clone()
    }
}

impl SessionSink {
    fn running(&self) -> Option<Arc<Running>> {
        self.running.lock().unwrap().clone()
    }

    fn start(&self) -> Result<(), gst::ErrorMessage> {
        let s = self.settings.lock().unwrap().clone();
        let ip: std::net::IpAddr = s.address.parse().map_err(|_| {
            gst::error_msg!(
                gst::ResourceError::Settings,
                ("address {:?} is not an IP address", s.address)
            )
        })?;
        let bind = SocketAddr::new(ip, s.port as u16);
        let socket = control::bind(bind).map_err(|e| {
            gst::error_msg!(
                gst::ResourceError::OpenReadWrite,
                ("cannot listen on {bind}: {e}")
            )
        })?;
        let secret = match &s.secret {
            Some(k) => k.as_bytes().to_vec(),
            None => {
                let mut k = vec![0u8; 32];
                getrandom::fill(&mut k).map_err(|e| {
                    gst::error_msg!(gst::LibraryError::Init, ("no random secret: {e}"))
                })?;
                k
            }
        };
        let mut cfg = ServerConfig::new(secret);
        cfg.max_clients = s.max_clients as usize;
        cfg.max_clients_per_host = s.max_clients_per_host as usize;
        cfg.max_stay = Duration::from_nanos(s.max_stay);
        cfg.repair_rate = s.repair_rate;
        cfg.repair_burst = s.repair_burst;
        cfg.channel_repair_percent = s.channel_repair_percent;
        cfg.authenticate = s.authenticate;
        cfg.key_len = KeyLen::new(s.pbkeylen).ok_or_else(|| {
            gst::error_msg!(
                gst::ResourceError::Settings,
                ("pbkeylen must be 16, 24 or 32, not {}", s.pbkeylen)
            )
        })?;
        if let Some(pass) = &s.passphrase {
            if !PASSPHRASE_LEN.contains(&pass.len()) {
                return Err(gst::error_msg!(
                    gst::ResourceError::Settings,
                    (
                        "The passphrase must be 10 to 79 bytes long, not {}",
                        pass.len()
                    )
                ));
            }
        }
        cfg.passphrase = s.passphrase.clone();
        let mut server = Server::new(cfg);
        for pad in self.sink_pads() {
            register_channel(&mut server, &pad);
        }
        let iface = multicast::iface(&s.multicast_iface).map_err(|e| {
            gst::error_msg!(
                gst::ResourceError::Settings,
                ("multicast-iface {:?}: {e}", s.multicast_iface)
            )
        })?;
        let listener = match s.tcp {
            false => None,
            true => Some(tcp::listen(bind).map_err(|e| {
                gst::error_msg!(
                    gst::ResourceError::OpenReadWrite,
                    ("cannot listen on TCP {bind}: {e}")
                )
            })?),
        };
        let socket = Arc::new(socket);
        let running = Arc::new(Running {
            start: Instant::now(),
            fanout: Fanout::new(socket.clone(), s.gso),
            group_v4: Mutex::default(),
            group_v6: Mutex::default(),
            group_settings: (s.ttl, iface, s.multicast_loop, s.gso),
            listener,
            conns: Mutex::default(),
            tcp_queue: s.tcp_queue as usize,
            tcp_queue_bytes: s.tcp_queue_bytes as usize,
            tcp_closed: Mutex::default(),
            tcp_threads: Mutex::default(),
            socket,
            server: Mutex::new(server),
            snapshot: Mutex::default(),
            stop: AtomicBool::new(false),
            ended: Mutex::default(),
            evict: Mutex::default(),
            gso_refusal_told: AtomicBool::new(false),
            hold: Hold::new(s.wait_for_clients, s.wait_timeout),
        });
        gst::info!(
            CAT,
            imp = self,
            "listening on {bind}{}, GSO {}",
            if s.tcp { " (UDP and TCP)" } else { "" },
            s.gso
        );
        let weak = self.obj().downgrade();
        let r = running.clone();
        let thread = std::thread::Builder::new()
            .name("session-sink".into())
            .spawn(move || control::run(weak, r))
            .map_err(|e| gst::error_msg!(gst::CoreError::Thread, ("{e}")))?;
        *self.thread.lock().unwrap() = Some(thread);
        *self.running.lock().unwrap() = Some(running);
        Ok(())
    }

    fn stop(&self) {
        let running = self.running.lock().unwrap().take();
        if let Some(r) = &running {
            r.stop.store(true, Ordering::SeqCst);
        }
        if let Some(t) = self.thread.lock().unwrap().take() {
            let _ = t.join();
        }
        if let Some(r) = running {
            *self.last_stats.lock().unwrap() = Some(control::stats(self, &r));
            let conns: Vec<Arc<Conn>> = r.conns.lock().unwrap().values().cloned().collect();
            for c in conns {
                c.close(&r);
            }
            for t in std::mem::take(&mut *r.tcp_threads.lock().unwrap()) {
                let _ = t.join();
            }
        }
        for pad in self.sink_pads() {
            pad.imp().eos.store(false, Ordering::SeqCst);
            *pad.imp().held.lock().unwrap() = Default::default();
        }
    }

    pub(super) fn sink_pads(&self) -> Vec<SessionSinkPad> {
        self.obj()
            .sink_pads()
            .into_iter()
            .filter_map(|p| p.downcast::<SessionSinkPad>().ok())
            .collect()
    }

    pub(super) fn pad_of(&self, index: u16) -> Option<SessionSinkPad> {
        self.sink_pads().into_iter().find(|p| p.index() == index)
    }

    /// The pad's `channel`, group or caps changed: its receivers are told (CHANNEL).
    pub(super) fn channel_changed(&self, pad: &SessionSinkPad) {
        if let Some(r) = self.running() {
            register_channel(&mut r.server.lock().unwrap(), pad);
        }
    }

    fn chain_list(
        &self,
        pad: &SessionSinkPad,
        list: gst::BufferList,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        let Some(r) = self.running() else {
            return Err(gst::FlowError::Flushing);
        };
        if r.hold.is_waiting() {
            // Kept here while there is room, so upstream goes on and an EOS (Ctrl-C under
            // gst-launch -e) can reach this pad and end the hold; past that, upstream waits.
            let mut held = pad.imp().held.lock().unwrap();
            let size = list.calculate_size();
            if held.1.saturating_add(size) <= HELD_MAX_BYTES {
                held.1 += size;
                held.0.push(list);
                return Ok(gst::FlowSuccess::Ok);
            }
            drop(held);
            r.hold.wait(&pad.imp().flushing)?;
        }
        self.send_held(pad, &r);
        self.send_list(pad, &r, list)
    }

    /// What the hold kept for this pad, in order, once it opened.
    /// Paced ([`release_rate`]): receivers take it in without overrunning.
    fn send_held(&self, pad: &SessionSinkPad, r: &Running) {
        let (held, bytes) = std::mem::take(&mut *pad.imp().held.lock().unwrap());
        let pts = |l: &gst::BufferList| l.get(0).and_then(|b| b.pts());
        let span = match (held.first().and_then(pts), held.last().and_then(pts)) {
            (Some(a), Some(b)) => Some(b.saturating_sub(a).nseconds()),
            _ => None,
        };
        let rate = release_rate(bytes, span);
        let start = Instant::now();
        let mut sent = 0u64;
        for list in held {
            sent = sent.saturating_add(list.calculate_size() as u64);
            let _ = self.send_list(pad, r, list);
            let due = Duration::from_secs_f64(sent as f64 * 8.0 / rate as f64);
            if let Some(wait) = due.checked_sub(start.elapsed()) {
                std::thread::sleep(wait);
            }
        }
    }

    fn send_list(
        &self,
        pad: &SessionSinkPad,
        r: &Running,
        list: gst::BufferList,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        let snapshot = r.snapshot.lock().unwrap().clone();
        let index = pad.index();
        let out = Outputs {
            index,
            wire: Wire::new(index, pad.imp().sealer.lock().unwrap().clone()),
            unicast: snapshot.channels.get(&index),
            group: snapshot.groups.get(&index),
            tcp: snapshot.tcp.get(&index).map_or(&[], |v| v.as_slice()),
            stats: &pad.imp().stats,
        };
        // Runs of packets for everyone go out together; a repair packet goes on its own.
        let mut maps: Vec<gst::BufferMap<'_, gst::buffer::Readable>> = Vec::new();
        let flush = |maps: &mut Vec<gst::BufferMap<'_, gst::buffer::Readable>>| {
            if maps.is_empty() {
                return;
            }
            let packets: Vec<&[u8]> = maps.iter().map(|m| m.as_slice()).collect();
            self.send_all(r, &out, &packets);
            maps.clear();
        };
        for buffer in list.iter() {
            out.stats.buffers.fetch_add(1, Ordering::Relaxed);
            out.stats
                .bytes
                .fetch_add(buffer.size() as u64, Ordering::Relaxed);
            let Ok(map) = buffer.map_readable() else {
                gst::warning!(CAT, imp = self, "unreadable buffer dropped");
                continue;
            };
            match packet_destination(buffer).and_then(|d| d.get::<u64>().ok()) {
                None => {
                    out.stats.stream_packets.fetch_add(1, Ordering::Relaxed);
                    maps.push(map)
                }
                Some(dest) => {
                    flush(&mut maps);
                    self.send_repair(r, &snapshot, &out, dest, map.as_slice());
                }
            }
        }
        flush(&mut maps);
        Ok(gst::FlowSuccess::Ok)
    }

    /// Packets for everyone: unicast copies, the group once, the TCP receivers' queues.
    fn send_all(&self, r: &Running, out: &Outputs, packets: &[&[u8]]) {
        out.wire
            .with(out.index, packets, false, |header, datagrams| {
                if let Some(targets) = out.unicast {
                    self.send(r, &r.fanout, header, datagrams, targets, out.stats);
                }
                if let Some(group) = out.group {
                    self.send_group(r, out, header, datagrams, group);
                }
                for conn in out.tcp {
                    for d in datagrams {
                        self.push_tcp(conn, out, header, d);
                    }
                }
            });
    }

    fn send_group(
        &self,
        r: &Running,
        out: &Outputs,
        header: &[u8],
        datagrams: &[&[u8]],
        group: &Targets,
    ) {
        let Some(fanout) = r.group_fanout(group.list()[0].addr) else {
            return;
        };
        let (sent, _) = fanout.send(header, datagrams, group);
        out.stats
            .group_datagrams
            .fetch_add(sent.datagrams, Ordering::Relaxed);
    }

    /// A quiet channel's group hears a DATA datagram with an empty payload: receivers
    /// waiting to see whether the group reaches them (`transport=auto`) learn it does before
    /// the stream starts, instead of falling back to unicast for want of data.
    pub(super) fn group_keepalive(&self, r: &Running, pad: &SessionSinkPad) {
        let Some(addr) = pad.group() else { return };
        let Some(fanout) = r.group_fanout(addr) else {
            return;
        };
        let group = Targets::new(vec![Arc::new(crate::fanout::Target {
            id: GROUP_DESTINATION,
            addr,
            stats: Arc::default(),
        })]);
        let wire = Wire::new(pad.index(), pad.imp().sealer.lock().unwrap().clone());
        let (sent, _) = wire.with(pad.index(), &[&[]], false, |header, datagrams| {
            fanout.send(header, datagrams, &group)
        });
        pad.imp()
            .stats
            .group_datagrams
            .fetch_add(sent.datagrams, Ordering::Relaxed);
    }

    /// One DATA datagram (`header ‖ body`) into a TCP receiver's queue.
    fn push_tcp(&self, conn: &Conn, out: &Outputs, header: &[u8], body: &[u8]) {
        if let Some(frame) = fanout_session::frame(&[header, body]) {
            out.stats.tcp_frames.fetch_add(1, Ordering::Relaxed);
            let st = &conn.target.stats;
            st.packets.fetch_add(1, Ordering::Relaxed);
            st.bytes.fetch_add(body.len() as u64, Ordering::Relaxed);
            conn.queue.push_data(frame);
        }
    }

    /// A repair packet for `dest`: the group, or one receiver of the channel within the
    /// credit its loss reports gave it.
    fn send_repair(&self, r: &Running, snap: &Snapshot, out: &Outputs, dest: u64, packet: &[u8]) {
        if dest == GROUP_DESTINATION {
            if let Some(group) = out.group {
                out.stats.repairs.fetch_add(1, Ordering::Relaxed);
                out.stats.group_repairs.fetch_add(1, Ordering::Relaxed);
                out.wire
                    .with(out.index, &[packet], false, |header, datagrams| {
                        self.send_group(r, out, header, datagrams, group)
                    });
            }
            return;
        }
        if !snap
            .members
            .get(&out.index)
            .is_some_and(|m| m.contains(&dest))
        {
            return;
        }
        let conn = snap.conns.get(&dest);
        let Some(target) = snap.by_id.get(&dest).or(conn.map(|c| &c.target)) else {
            return;
        };
        if !target.stats.take_repair_credit() {
            target.stats.repairs_refused.fetch_add(1, Ordering::Relaxed);
            return;
        }
        out.stats.repairs.fetch_add(1, Ordering::Relaxed);
        target.stats.repairs.fetch_add(1, Ordering::Relaxed);
        out.wire
            .with(out.index, &[packet], true, |header, datagrams| match conn {
                Some(c) => datagrams
                    .iter()
                    .for_each(|d| self.push_tcp(c, out, header, d)),
                None => {
                    let one = Targets::new(vec![target.clone()]);
                    self.send(r, &r.fanout, header, datagrams, &one, out.stats);
                }
            });
    }

    fn send(
        &self,
        r: &Running,
        fanout: &Fanout,
        header: &[u8],
        packets: &[&[u8]],
        targets: &Targets,
        stats: &ChannelStats,
    ) {
        let (sent, gso_refused) = fanout.send(header, packets, targets);
        stats.datagrams.fetch_add(sent.datagrams, Ordering::Relaxed);
        if gso_refused && !r.gso_refusal_told.swap(true, Ordering::Relaxed) {
            gst::debug!(
                CAT,
                imp = self,
                "the kernel refused UDP GSO: sending plain datagrams from now on"
            );
        }
        if sent.errors > 0 {
            let failing = targets
                .list()
                .iter()
                .filter(|t| t.stats.errors_in_a_row.load(Ordering::Relaxed) >= EVICT_AFTER_ERRORS)
                .map(|t| t.id);
            r.evict.lock().unwrap().extend(failing);
        }
    }

    fn sink_event(&self, pad: &SessionSinkPad, event: gst::Event) -> bool {
        match event.view() {
            gst::EventView::Caps(c) => {
                *pad.imp().caps.lock().unwrap() = c.caps().to_string();
                self.channel_changed(pad);
                return true;
            }
            gst::EventView::Eos(_) => {
                if let Some(r) = self.running() {
                    // The stream ended (or Ctrl-C): no point waiting for more receivers.
                    if r.hold.end() {
                        gst::info!(CAT, imp = self, "the stream ended while waiting for receivers: sending to those that joined");
                    }
                    self.send_held(pad, &r);
                    r.ended.lock().unwrap().push(pad.index());
                }
                pad.imp().eos.store(true, Ordering::SeqCst);
                return true;
            }
            gst::EventView::FlushStart(_) => {
                *pad.imp().held.lock().unwrap() = Default::default();
                pad.imp().flushing.store(true, Ordering::SeqCst);
                if let Some(r) = self.running() {
                    r.hold.wake_all();
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
        let (Some(r), Ok(addr)) = (self.running(), address.parse::<fanout_session::Peer>()) else {
            return false;
        };
        let mut server = r.server.lock().unwrap();
        let id = server.clients().find(|(_, a)| *a == addr).map(|(id, _)| id);
        id.is_some_and(|id| server.remove(id, fanout_session::RemoveReason::Removed))
    }
}

/// Where a channel's packets go, for one chain call.
struct Outputs<'a> {
    index: u16,
    wire: Wire,
    unicast: Option<&'a Targets>,
    group: Option<&'a Targets>,
    tcp: &'a [Arc<Conn>],
    stats: &'a ChannelStats,
}

/// Tells the server of `pad`'s channel, and gives the pad the key its data is sealed with.
fn register_channel(server: &mut Server, pad: &SessionSinkPad) {
    server.set_channel(pad.index(), &pad.channel_name(), &caps_of(pad), pad.group());
    *pad.imp().sealer.lock().unwrap() = server.sealer(pad.index());
}

fn caps_of(pad: &SessionSinkPad) -> String {
    pad.imp().caps.lock().unwrap().clone()
}

#[glib::object_subclass]
impl ObjectSubclass for SessionSink {
    const NAME: &'static str = "GstFanoutSessionSink";
    type Type = super::SessionSink;
    type ParentType = gst::Element;
    type Interfaces = (gst::ChildProxy,);

    fn new() -> Self {
        SessionSink {
            settings: Mutex::default(),
            running: Mutex::default(),
            thread: Mutex::default(),
            last_stats: Mutex::default(),
        }
    }
}

impl ObjectImpl for SessionSink {
    fn constructed(&self) {
        self.parent_constructed();
        self.obj().set_element_flags(gst::ElementFlags::SINK);
    }

    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            vec![
                glib::ParamSpecString::builder("address")
                    .nick("Address")
                    .blurb("Local IP address to listen on (IPv4 or IPv6)")
                    .default_value(Some(DEFAULT_ADDRESS))
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("port")
                    .nick("Port")
                    .blurb("UDP port receivers join on and data is sent from")
                    .maximum(u16::MAX.into())
                    .default_value(DEFAULT_PORT)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("secret")
                    .nick("Secret")
                    .blurb("Key of the address cookies; servers sharing it accept each other's cookies (never each other's session ids, random per start). Unset: random at every start")
                    .write_only()
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("max-clients")
                    .nick("Max clients")
                    .blurb("Receivers at most; further JOINs are refused as full")
                    .minimum(1)
                    .default_value(DEFAULT_MAX_CLIENTS as u32)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("max-clients-per-host")
                    .nick("Max clients per host")
                    .blurb("Receivers from one IP address at most, so one host cannot take every place (raise it for many receivers behind one NAT); further JOINs from it are refused as full. 0: no limit")
                    .default_value(DEFAULT_MAX_CLIENTS_PER_HOST as u32)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt64::builder("max-stay")
                    .nick("Max stay")
                    .blurb("The longest a JOIN is granted (ns); a JOIN asking for longer gets this. Receivers refresh before their time is up, so a receiver that vanished without a word is gone within it")
                    .minimum(1_000_000_000)
                    .default_value(nanos(DEFAULT_MAX_STAY))
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoolean::builder("authenticate")
                    .nick("Authenticate")
                    .blurb("Seal every DATA datagram with its channel's key (AES-GCM), given to receivers only in the answer to their proven JOIN: receivers drop and count anything else, whoever sends it. Off: anyone who can send to a receiver can inject data into it (receivers must set allow-unauthenticated)")
                    .default_value(true)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("passphrase")
                    .nick("Passphrase")
                    .blurb("Encrypt the stream too (AES-GCM), as srtsink does: receivers need the same passphrase (10 to 79 bytes). The channel keys travel wrapped by a key derived from it (PBKDF2-HMAC-SHA-256, 100 000 rounds, a salt random per start). Unset: authenticated only")
                    .write_only()
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("pbkeylen")
                    .nick("Key length")
                    .blurb("AES key length in bytes: 16, 24 or 32")
                    .minimum(16)
                    .maximum(32)
                    .default_value(16)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoolean::builder("gso")
                    .nick("GSO")
                    .blurb("Send runs of equal-size packets as UDP GSO super-datagrams (turned off by itself where the kernel refuses it)")
                    .default_value(true)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("max-repair-rate")
                    .nick("Max repair rate")
                    .blurb("Repair packets a second one receiver can ask for (after a burst of max-repair-burst)")
                    .default_value(DEFAULT_REPAIR_RATE)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("max-repair-burst")
                    .nick("Max repair burst")
                    .blurb("Repair packets one receiver can ask for at once")
                    .default_value(DEFAULT_REPAIR_BURST)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("max-channel-repair")
                    .nick("Max channel repair")
                    .blurb("Repair packets one channel sends in all (to every receiver and its group together), at most, per 100 of its own packets: a storm of loss reports draws at most this much more than the stream. Over it, asks are refused and counted (repairs-over-budget). 0: no such cap")
                    .default_value(DEFAULT_CHANNEL_REPAIR_PERCENT)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("ttl")
                    .nick("Multicast TTL")
                    .blurb("Time to live (IPv6: hop limit) of packets sent to multicast groups")
                    .minimum(1)
                    .maximum(255)
                    .default_value(DEFAULT_TTL)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("multicast-iface")
                    .nick("Multicast interface")
                    .blurb("Interface (name, or IPv4 address) multicast packets go out of; empty: as the routing table says")
                    .default_value(Some(""))
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoolean::builder("loop")
                    .nick("Multicast loopback")
                    .blurb("Deliver multicast packets to receivers on this host too")
                    .default_value(false)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoolean::builder("tcp")
                    .nick("TCP")
                    .blurb("Also listen on TCP port for receivers that get no UDP (session-src transport=tcp or auto): framed packets, no cookie round")
                    .default_value(false)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("tcp-queue")
                    .nick("TCP queue")
                    .blurb("Packets waiting for one TCP receiver at most; when it falls behind its oldest packets are dropped (counted in stats), nobody else waits")
                    .minimum(16)
                    .default_value(DEFAULT_TCP_QUEUE)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("tcp-queue-bytes")
                    .nick("TCP queue bytes")
                    .blurb("Bytes waiting for one TCP receiver at most (about a second of an 8 Mbit/s stream by default); past it, as past tcp-queue, its oldest packets are dropped. Given back when the receiver leaves")
                    .minimum(64 << 10)
                    .default_value(DEFAULT_TCP_QUEUE_BYTES)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("wait-for-clients")
                    .nick("Wait for clients")
                    .blurb("Hold the data of every channel until this many receivers have joined, or wait-timeout passed (then a warning), or the stream ended (EOS, as Ctrl-C under gst-launch -e sends): receivers started before the stream get it from its first byte. Held data is kept, up to 32 MB a channel (past that upstream waits), and goes out at four times the rate it came at, at least 20 Mbit/s. 0: send at once")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt64::builder("wait-timeout")
                    .nick("Wait timeout")
                    .blurb("How long (ns, from the start) wait-for-clients holds the data at most; 0: until they joined")
                    .default_value(DEFAULT_WAIT_TIMEOUT)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoxed::builder::<gst::Structure>("stats")
                    .nick("Statistics")
                    .blurb("fanout-session-sink-stats, also posted on the bus every second: clients, gso, datagrams-received, foreign, malformed, hellos, joins, bad-cookies, refused, leaves, unknown-session, lost-reports, repair-symbols-asked, repair-symbols-granted, repairs-over-budget, replies-withheld, group-repairs, group-reports-covered, tcp-connections; channels (one structure per channel: index, name, clients, buffers, bytes, datagrams, repairs, multicast-group, group-datagrams, group-repairs, tcp-frames); receivers (one per receiver: address, transport, queue-dropped, channels, packets, bytes, repairs, repairs-refused, gso-sends, send-errors). Python reads the lists with python3-gst-1.0 installed")
                    .read_only()
                    .build(),
            ]
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
        let mut s = self.settings.lock().unwrap();
        match pspec.name() {
            "address" => {
                s.address = value
                    .get::<Option<String>>()
                    .unwrap()
                    .unwrap_or_else(|| DEFAULT_ADDRESS.into())
            }
            "port" => s.port = value.get().unwrap(),
            "secret" => {
                s.secret = value
                    .get::<Option<String>>()
                    .unwrap()
                    .filter(|k| !k.is_empty())
            }
            "max-clients" => s.max_clients = value.get().unwrap(),
            "max-clients-per-host" => s.max_clients_per_host = value.get().unwrap(),
            "max-stay" => s.max_stay = value.get().unwrap(),
            "max-channel-repair" => s.channel_repair_percent = value.get().unwrap(),
            "authenticate" => s.authenticate = value.get().unwrap(),
            "passphrase" => {
                s.passphrase = value
                    .get::<Option<String>>()
                    .unwrap()
                    .filter(|k| !k.is_empty())
            }
            "pbkeylen" => s.pbkeylen = value.get().unwrap(),
            "gso" => s.gso = value.get().unwrap(),
            "max-repair-rate" => s.repair_rate = value.get().unwrap(),
            "max-repair-burst" => s.repair_burst = value.get().unwrap(),
            "ttl" => s.ttl = value.get().unwrap(),
            "multicast-iface" => {
                s.multicast_iface = value.get::<Option<String>>().unwrap().unwrap_or_default()
            }
            "loop" => s.multicast_loop = value.get().unwrap(),
            "tcp" => s.tcp = value.get().unwrap(),
            "tcp-queue" => s.tcp_queue = value.get().unwrap(),
            "tcp-queue-bytes" => s.tcp_queue_bytes = value.get().unwrap(),
            "wait-for-clients" => s.wait_for_clients = value.get().unwrap(),
            "wait-timeout" => s.wait_timeout = value.get().unwrap(),
            other => unreachable!("unknown property {other}"),
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let s = self.settings.lock().unwrap();
        match pspec.name() {
            "address" => s.address.to_value(),
            "port" => s.port.to_value(),
            "secret" => None::<String>.to_value(),
            "max-clients" => s.max_clients.to_value(),
            "max-clients-per-host" => s.max_clients_per_host.to_value(),
            "max-stay" => s.max_stay.to_value(),
            "max-channel-repair" => s.channel_repair_percent.to_value(),
            "authenticate" => s.authenticate.to_value(),
            "passphrase" => None::<String>.to_value(),
            "pbkeylen" => s.pbkeylen.to_value(),
            "gso" => s.gso.to_value(),
            "max-repair-rate" => s.repair_rate.to_value(),
            "max-repair-burst" => s.repair_burst.to_value(),
            "ttl" => s.ttl.to_value(),
            "multicast-iface" => s.multicast_iface.to_value(),
            "loop" => s.multicast_loop.to_value(),
            "tcp" => s.tcp.to_value(),
            "tcp-queue" => s.tcp_queue.to_value(),
            "tcp-queue-bytes" => s.tcp_queue_bytes.to_value(),
            "wait-for-clients" => s.wait_for_clients.to_value(),
            "wait-timeout" => s.wait_timeout.to_value(),
            "stats" => {
                drop(s);
                match self.running() {
                    Some(r) => control::stats(self, &r).to_value(),
                    None => self
                        .last_stats
                        .lock()
                        .unwrap()
                        .clone()
                        .unwrap_or_else(control::empty_stats)
                        .to_value(),
                }
            }
            other => unreachable!("unknown property {other}"),
        }
    }
}

impl GstObjectImpl for SessionSink {}

impl ChildProxyImpl for SessionSink {
    fn child_by_index(&self, index: u32) -> Option<glib::Object> {
        self.obj()
            .sink_pads()
            .into_iter()
            .nth(index as usize)
            .map(|p| p.upcast())
    }

    fn children_count(&self) -> u32 {
        self.obj().num_sink_pads() as u32
    }

    fn child_by_name(&self, name: &str) -> Option<glib::Object> {
        let obj = self.obj();
        // gst-launch sets pad properties before it links: the pad is requested now.
        obj.static_pad(name)
            .or_else(|| obj.request_pad_simple(name))
            .map(|p| p.upcast())
    }
}

impl ElementImpl for SessionSink {
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
        let name = match name {
            Some(n) => n.to_owned(),
            None => (0..u16::MAX)
                .map(|i| format!("sink_{i}"))
                .find(|n| obj.static_pad(n).is_none())?,
        };
        let index: u16 = name.strip_prefix("sink_")?.parse().ok()?;
        if index == u16::MAX || obj.static_pad(&name).is_some() {
            return None;
        }
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
                    || gst::Pad::query_default(pad, parent, query)
            })
            .build();
        if obj.current_state() >= gst::State::Paused {
            let _ = pad.set_active(true);
        }
        obj.add_pad(&pad).ok()?;
        obj.child_added(&pad, &name);
        self.channel_changed(&pad);
        Some(pad.upcast())
    }

    fn release_pad(&self, pad: &gst::Pad) {
        if let (Some(p), Some(r)) = (pad.downcast_ref::<SessionSinkPad>(), self.running()) {
            r.server.lock().unwrap().remove_channel(p.index());
        }
        let _ = pad.set_active(false);
        let _ = self.obj().remove_pad(pad);
        self.obj().child_removed(pad, &pad.name());
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
            if let Some(r) = self.running() {
                r.hold.stop();
            }
        }
        let ret = self.parent_change_state(transition);
        if transition == gst::StateChange::PausedToReady || ret.is_err() {
            self.stop();
        }
        ret
    }
}
