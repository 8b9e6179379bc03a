// SPDX-License-Identifier: MPL-2.0

//! The server side, sans-IO: fed datagrams with their source address and the time, it
//! queues datagrams to send and events. No state is created for an address before it
//! proved, with a cookie, that it receives what is sent to it (or connected over TCP, which
//! proves the same).

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::cookie::CookieJar;
use crate::message::{
    self, ChannelInfo, Datagram, LostEntry, Message, ParseError, Reason, Security, Stay,
    MAX_CONTROL_LEN,
};
use crate::seal::{
    ChannelKey, KeyLen, PassphraseKey, Sealer, DEFAULT_KDF_ITERATIONS, KDF_SALT_LEN,
};

pub const DEFAULT_COOKIE_BUCKET: u64 = 30_000_000_000;
/// A receiver that vanished (its sockets gone, nothing said) leaves within this: every
/// receiver refreshes before it, and a JOIN asking for longer gets this.
pub const DEFAULT_MAX_STAY: u64 = 60_000_000_000;
pub const DEFAULT_REPAIR_RATE: u32 = 2000;
pub const DEFAULT_REPAIR_BURST: u32 = 1000;
/// Repair packets a channel sends in all, at most, per 100 of its own packets: a loss-report
/// storm from many receivers (or an edge's) draws at most this much more than the stream.
pub const DEFAULT_CHANNEL_REPAIR_PERCENT: u32 = 400;
pub const DEFAULT_MAX_CLIENTS: usize = 1000;
/// Receivers from one IP address at most: one host cannot take every place.
pub const DEFAULT_MAX_CLIENTS_PER_HOST: usize = 64;
/// Reports of one block from multicast receivers are gathered this long, then answered once.
/// Longer than the receivers' back-off ([`crate::report::DEFAULT_BACKOFF`]), so that the
/// reports of one loss land in one round.
pub const DEFAULT_GROUP_WINDOW: u64 = 15_000_000;
/// After a group repair, reports of that block asking no more than it sent are taken as
/// sent before it arrived, for this long: a round trip on a LAN with room to spare. Any
/// longer and it drops the reports of receivers that lost some of the repair itself (a
/// receiver's report counts down the symbols that arrive meanwhile, so a report sent after
/// the repair arrived asks only for what is still missing); over a longer path, a report
/// already on its way costs one more repair at worst.
pub const DEFAULT_GROUP_HOLD: u64 = 5_000_000;
/// Blocks whose reports are being gathered at once; more are answered per receiver.
const MAX_ROUNDS: usize = 4096;

/// Where a receiver is: a UDP address, or a TCP connection's peer address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Peer {
    Udp(SocketAddr),
    Tcp(SocketAddr),
}

impl Peer {
    pub fn addr(&self) -> SocketAddr {
        match *self {
            Peer::Udp(a) | Peer::Tcp(a) => a,
        }
    }

    pub fn is_tcp(&self) -> bool {
        matches!(self, Peer::Tcp(_))
    }
}

/// `ip:port` for UDP, `tcp:ip:port` for TCP.
impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Peer::Udp(a) => write!(f, "{a}"),
            Peer::Tcp(a) => write!(f, "tcp:{a}"),
        }
    }
}

impl FromStr for Peer {
    type Err = std::net::AddrParseError;
    fn from_str(s: &str) -> Result<Peer, Self::Err> {
        match s.strip_prefix("tcp:") {
            Some(a) => a.parse().map(Peer::Tcp),
            None => s.parse().map(Peer::Udp),
        }
    }
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Key of the cookie and session-id HMACs.
    pub secret: Vec<u8>,
    pub max_clients: usize,
    /// Receivers from one IP address at most (0: no limit).
    pub max_clients_per_host: usize,
    /// A cookie lives one to two buckets (ns).
    pub cookie_bucket: u64,
    /// The longest a JOIN may stay (ns); longer ones are cut to it.
    pub max_stay: u64,
    /// Repair symbols a second one receiver may have (token bucket rate, and its depth).
    pub repair_rate: u32,
    pub repair_burst: u32,
    /// All of a channel's repairs together (to receivers and its group), per 100 packets of
    /// the channel ([`Server::note_sent`]); 0: no such cap.
    pub channel_repair_percent: u32,
    /// Multicast repair: how long reports of a block are gathered (ns), and how long after a
    /// group repair reports it already covers are dropped (ns).
    pub group_window: u64,
    pub group_hold: u64,
    /// Seal every DATA datagram with its channel's key (off: anyone can inject data).
    pub authenticate: bool,
    /// Encrypt DATA too, the keys wrapped by this passphrase's key (implies `authenticate`).
    pub passphrase: Option<String>,
    pub key_len: KeyLen,
    /// PBKDF2 rounds for the passphrase.
    pub kdf_iterations: u32,
}

impl ServerConfig {
    pub fn new(secret: Vec<u8>) -> ServerConfig {
        ServerConfig {
            secret,
            max_clients: DEFAULT_MAX_CLIENTS,
            max_clients_per_host: DEFAULT_MAX_CLIENTS_PER_HOST,
            cookie_bucket: DEFAULT_COOKIE_BUCKET,
            max_stay: DEFAULT_MAX_STAY,
            repair_rate: DEFAULT_REPAIR_RATE,
            repair_burst: DEFAULT_REPAIR_BURST,
            channel_repair_percent: DEFAULT_CHANNEL_REPAIR_PERCENT,
            group_window: DEFAULT_GROUP_WINDOW,
            group_hold: DEFAULT_GROUP_HOLD,
            authenticate: true,
            passphrase: None,
            key_len: KeyLen::DEFAULT,
            kdf_iterations: DEFAULT_KDF_ITERATIONS,
        }
    }
}

/// The time, twice: a monotonic clock for everything, and Unix time for JOINs that stay
/// until an absolute time. Both in ns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    pub mono: u64,
    pub unix: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    pub to: Peer,
    pub data: Vec<u8>,
}

/// Who a repair goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RepairTo {
    Receiver(u64),
    /// The channel's multicast group: several of its receivers miss the block.
    Group,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoveReason {
    Left,
    Expired,
    /// Taken out by the server itself (its sends kept failing).
    Evicted,
    /// Taken out by the application.
    Removed,
}

impl RemoveReason {
    pub fn as_str(self) -> &'static str {
        match self {
            RemoveReason::Left => "left",
            RemoveReason::Expired => "expired",
            RemoveReason::Evicted => "evicted",
            RemoveReason::Removed => "removed",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Added {
        id: u64,
        peer: Peer,
    },
    Removed {
        id: u64,
        peer: Peer,
        reason: RemoveReason,
    },
    /// Send `count` fresh repair symbols of `block` of `flow` on `channel` to `to`.
    Repair {
        to: RepairTo,
        channel: u16,
        flow: u32,
        block: u64,
        count: u32,
    },
}

/// A JOIN whose cookie checked out, waiting for the application to accept or refuse it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinRequest {
    pub peer: Peer,
    /// Takes channels with a group from the group.
    pub multicast: bool,
    pub token: Vec<u8>,
    /// Channel indices.
    pub channels: Vec<u16>,
    /// Every channel was asked for (a channel count of 0).
    every: bool,
    nonce: u64,
    expires: u64,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ServerStats {
    pub datagrams: u64,
    pub foreign: u64,
    pub malformed: u64,
    pub hellos: u64,
    pub joins: u64,
    pub bad_cookies: u64,
    pub refused: u64,
    pub leaves: u64,
    pub unknown_session: u64,
    pub lost_reports: u64,
    pub repair_symbols_asked: u64,
    pub repair_symbols_granted: u64,
    /// Repair symbols sent to a group, and reports a group repair already covered.
    pub group_repairs: u64,
    pub group_reports_covered: u64,
    /// Replies not sent because they would have been larger than the unverified request.
    pub replies_withheld: u64,
    /// Repair symbols asked for that the channel's overall budget refused.
    pub repairs_over_budget: u64,
}

struct Channel {
    info: ChannelInfo,
    /// Seals its DATA; `None` without authentication.
    sealer: Option<Arc<Sealer>>,
    /// Repair credit of the channel's group, like a receiver's.
    bucket: Bucket,
    /// Repair credit of the whole channel, earned by the packets it sends.
    budget: Budget,
}

/// A channel's overall repair credit, in hundredths of a packet: each packet the channel
/// sends earns `channel_repair_percent`, up to four bursts' worth.
#[derive(Clone, Copy)]
struct Budget {
    centi: u64,
    sent_seen: u64,
}

impl Budget {
    fn full(cfg: &ServerConfig) -> Budget {
        Budget {
            centi: Budget::cap(cfg),
            sent_seen: 0,
        }
    }

    fn cap(cfg: &ServerConfig) -> u64 {
        u64::from(cfg.repair_burst).saturating_mul(4 * 100)
    }

    /// The channel sent `total` packets so far.
    fn earn(&mut self, cfg: &ServerConfig, total: u64) {
        let new = total.saturating_sub(self.sent_seen);
        self.sent_seen = self.sent_seen.max(total);
        let earned = new.saturating_mul(u64::from(cfg.channel_repair_percent));
        self.centi = self.centi.saturating_add(earned).min(Budget::cap(cfg));
    }

    /// Up to `n` symbols; how many it allows.
    fn allow(&self, cfg: &ServerConfig, n: u64) -> u64 {
        match cfg.channel_repair_percent {
            0 => n,
            _ => n.min(self.centi / 100),
        }
    }

    fn spend(&mut self, n: u64) {
        self.centi = self.centi.saturating_sub(n.saturating_mul(100));
    }
}

/// A token bucket: `repair_rate` a second, at most `repair_burst`.
#[derive(Clone, Copy)]
struct Bucket {
    tokens: u64,
    refilled: u64,
}

impl Bucket {
    fn full(cfg: &ServerConfig, now: u64) -> Bucket {
        Bucket {
            tokens: u64::from(cfg.repair_burst),
            refilled: now,
        }
    }

    /// Takes up to `n` tokens; how many it got.
    fn take(&mut self, cfg: &ServerConfig, now: u64, n: u64) -> u64 {
        let elapsed = now.saturating_sub(self.refilled);
        let refill = u128::from(elapsed) * u128::from(cfg.repair_rate) / 1_000_000_000;
        if refill > 0 {
            self.tokens = (self.tokens as u128 + refill).min(u128::from(cfg.repair_burst)) as u64;
            self.refilled = now;
        }
        let got = n.min(self.tokens);
        self.tokens -= got;
        got
    }
}

struct Client {
    id: u64,
    session: u64,
    channels: Vec<u16>,
    /// It asked for every channel: one added later is its too.
    every: bool,
    multicast: bool,
    expires: u64,
    bucket: Bucket,
}

type BlockKey = (u16, u32, u64);

/// Reports of one block from a channel's multicast receivers, being gathered.
struct Round {
    closes: u64,
    needed: u16,
    /// The first reporter, and whether anyone else reported.
    first: u64,
    several: bool,
}

/// The last group repair of a block.
struct Served {
    until: u64,
    count: u16,
}

pub struct Server {
    cfg: ServerConfig,
    security: Security,
    /// Wraps the channel keys in JOINED, under a passphrase.
    kek: Option<PassphraseKey>,
    jar: CookieJar,
    ids: Hmac<Sha256>,
    channels: Vec<Channel>,
    clients: HashMap<Peer, Client>,
    by_id: HashMap<u64, Peer>,
    /// Receivers in per IP address.
    per_host: HashMap<IpAddr, usize>,
    rounds: HashMap<BlockKey, Round>,
    served: HashMap<BlockKey, Served>,
    next_id: u64,
    generation: u64,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    pub stats: ServerStats,
}

impl Server {
    /// A server; deriving the passphrase's key takes a moment (PBKDF2).
    pub fn new(cfg: ServerConfig) -> Server {
        let key_len = u8::try_from(cfg.key_len.bytes()).expect("16, 24 or 32");
        let (security, kek) = match &cfg.passphrase {
            Some(pass) => {
                let mut kdf_salt = [0u8; KDF_SALT_LEN];
                getrandom::fill(&mut kdf_salt).expect("the system's random numbers");
                let kek = PassphraseKey::derive(pass, &kdf_salt, cfg.kdf_iterations, cfg.key_len);
                let security = Security::Encrypted {
                    key_len,
                    kdf_salt,
                    iterations: cfg.kdf_iterations,
                };
                (security, Some(kek))
            }
            None if cfg.authenticate => (Security::Authenticated { key_len }, None),
            None => (Security::None, None),
        };
        Server {
            security,
            kek,
            jar: CookieJar::new(&cfg.secret, cfg.cookie_bucket),
            // Random per start, even with a configured secret: servers sharing a secret make
            // the same cookies but never the same session ids.
            ids: Hmac::new_from_slice(&cfg.secret)
                .expect("HMAC takes any key length")
                .chain_update(b"session ids")
                .chain_update(start_salt()),
            cfg,
            channels: Vec::new(),
            clients: HashMap::new(),
            by_id: HashMap::new(),
            per_host: HashMap::new(),
            rounds: HashMap::new(),
            served: HashMap::new(),
            next_id: 1,
            generation: 0,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            stats: ServerStats::default(),
        }
    }

    pub fn config(&self) -> &ServerConfig {
        &self.cfg
    }

    /// Channel `index` has sent `total` packets so far (repairs not counted): its overall
    /// repair budget grows with them.
    pub fn note_sent(&mut self, index: u16, total: u64) {
        if let Some(c) = self.channels.iter_mut().find(|c| c.info.index == index) {
            c.budget.earn(&self.cfg, total);
        }
    }

    /// What seals channel `index`'s DATA; `None` without authentication or such a channel.
    /// The same for the channel's whole life: senders keep it.
    pub fn sealer(&self, index: u16) -> Option<Arc<Sealer>> {
        let c = self.channels.iter().find(|c| c.info.index == index)?;
        c.sealer.clone()
    }

    /// Adds or updates a channel; its receivers are told of a change (CHANNEL).
    pub fn set_channel(&mut self, index: u16, name: &str, caps: &str, group: Option<SocketAddr>) {
        let info = ChannelInfo {
            index,
            name: name.to_owned(),
            caps: caps.to_owned(),
            group,
        };
        match self.channels.iter_mut().find(|c| c.info.index == index) {
            Some(c) if c.info == info => return,
            Some(c) => {
                if c.info.group != info.group {
                    // Who takes unicast copies changes.
                    self.generation += 1;
                }
                c.info = info.clone();
            }
            None => {
                let sealer = (self.security != Security::None).then(|| {
                    let key = ChannelKey::random(self.cfg.key_len, self.kek.is_some());
                    Arc::new(Sealer::new(key))
                });
                self.channels.push(Channel {
                    info: info.clone(),
                    sealer,
                    bucket: Bucket::full(&self.cfg, 0),
                    budget: Budget::full(&self.cfg),
                });
                // Receivers that asked for every channel before this one existed (an edge
                // that has not joined its origin yet) take it too; CHANNEL tells them, and
                // they join again for its key.
                let mut added = false;
                for c in self.clients.values_mut().filter(|c| c.every) {
                    c.channels.push(index);
                    added = true;
                }
                if added {
                    self.generation += 1;
                    self.tell_members(&info);
                }
                return;
            }
        }
        self.tell_members(&info);
    }

    /// A channel that sent nothing for a while: its receivers get CHANNEL again, unchanged,
    /// so they know the server is there and keep their sessions without a new handshake.
    pub fn keepalive(&mut self, channel: u16) {
        if let Some(c) = self.channels.iter().find(|c| c.info.index == channel) {
            let info = c.info.clone();
            self.tell_members(&info);
        }
    }

    fn tell_members(&mut self, info: &ChannelInfo) {
        for (addr, c) in &self.clients {
            if c.channels.contains(&info.index) {
                let m = Message::Channel {
                    session: c.session,
                    info: info.clone(),
                };
                self.transmits.push_back(Transmit {
                    to: *addr,
                    data: message::write(&m),
                });
            }
        }
    }

    /// Removes a channel; its receivers get END (and drop its key: a channel made again
    /// under the same number has a new one).
    pub fn remove_channel(&mut self, index: u16) {
        self.end_channel(index);
        self.channels.retain(|c| c.info.index != index);
        for c in self.clients.values_mut() {
            c.channels.retain(|&i| i != index);
        }
        self.generation += 1;
    }

    /// Changes whenever a receiver comes, goes or changes channels.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    pub fn client_count(&self) -> usize {
        self.clients.len()
    }

    /// Receivers of `channel`: (id, peer).
    pub fn members(&self, channel: u16) -> impl Iterator<Item = (u64, Peer)> + '_ {
        self.clients
            .iter()
            .filter(move |(_, c)| c.channels.contains(&channel))
            .map(|(a, c)| (c.id, *a))
    }

    /// Receivers of `channel` that take its packets as unicast copies: all of them but the
    /// multicast receivers of a channel with a group.
    pub fn unicast_members(&self, channel: u16) -> impl Iterator<Item = (u64, Peer)> + '_ {
        let grouped = self.group_of(channel).is_some();
        self.members(channel)
            .filter(move |(id, _)| !(grouped && self.is_multicast(*id)))
    }

    /// Every receiver: (id, peer).
    pub fn clients(&self) -> impl Iterator<Item = (u64, Peer)> + '_ {
        self.clients.iter().map(|(a, c)| (c.id, *a))
    }

    /// Whether the receiver at `peer` is in.
    pub fn has(&self, peer: Peer) -> bool {
        self.clients.contains_key(&peer)
    }

    pub fn is_multicast(&self, id: u64) -> bool {
        self.by_id
            .get(&id)
            .and_then(|a| self.clients.get(a))
            .is_some_and(|c| c.multicast)
    }

    pub fn group_of(&self, channel: u16) -> Option<SocketAddr> {
        self.channels
            .iter()
            .find(|c| c.info.index == channel)
            .and_then(|c| c.info.group)
    }

    /// Channel indices receiver `id` is in.
    pub fn channels_of(&self, id: u64) -> &[u16] {
        self.by_id
            .get(&id)
            .and_then(|a| self.clients.get(a))
            .map_or(&[], |c| c.channels.as_slice())
    }

    pub fn address_of(&self, id: u64) -> Option<Peer> {
        self.by_id.get(&id).copied()
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Takes one UDP datagram from `from`. A JOIN whose cookie checks out comes back for
    /// the application to [`accept`](Self::accept) or [`refuse`](Self::refuse).
    pub fn handle_datagram(
        &mut self,
        now: Now,
        from: SocketAddr,
        data: &[u8],
    ) -> Option<JoinRequest> {
        self.handle(now, Peer::Udp(from), data)
    }

    /// Takes one message (a frame's contents) from the TCP connection of `from`. The
    /// connection proved the address: a JOIN's cookie is not checked.
    pub fn handle_stream(
        &mut self,
        now: Now,
        from: SocketAddr,
        data: &[u8],
    ) -> Option<JoinRequest> {
        self.handle(now, Peer::Tcp(from), data)
    }

    fn handle(&mut self, now: Now, from: Peer, data: &[u8]) -> Option<JoinRequest> {
        self.stats.datagrams += 1;
        let m = match message::parse(data) {
            Ok(Datagram::Control(m)) => m,
            Ok(Datagram::Data(_)) | Err(ParseError::Malformed) | Err(ParseError::Version(_)) => {
                self.stats.malformed += 1;
                return None;
            }
            Err(ParseError::Foreign) => {
                self.stats.foreign += 1;
                return None;
            }
        };
        match m {
            Message::Hello { nonce } => {
                self.stats.hellos += 1;
                let cookie = self.jar.make(from.addr(), now.mono);
                self.reply_unverified(from, data.len(), &Message::Cookie { nonce, cookie });
                None
            }
            Message::Join {
                nonce,
                cookie,
                stay,
                multicast,
                token,
                channels,
            } => {
                self.stats.joins += 1;
                if !from.is_tcp() && !self.jar.check(from.addr(), now.mono, &cookie) {
                    self.stats.bad_cookies += 1;
                    let m = refused(nonce, Reason::BadCookie, "");
                    self.reply_unverified(from, data.len(), &m);
                    return None;
                }
                let req = self.join_request(now, from, nonce, stay, token, channels);
                req.map(|r| JoinRequest { multicast, ..r })
            }
            Message::Leave { session } => {
                self.stats.leaves += 1;
                if self.session_of(from) == Some(session) {
                    self.remove_addr(from, RemoveReason::Left);
                } else {
                    self.stats.unknown_session += 1;
                }
                None
            }
            Message::Lost { session, entries } => {
                self.stats.lost_reports += 1;
                if self.session_of(from) == Some(session) {
                    self.lost(now, from, &entries);
                } else {
                    self.stats.unknown_session += 1;
                    let m = refused(session, Reason::UnknownSession, "");
                    self.reply_unverified(from, data.len(), &m);
                }
                None
            }
            Message::Cookie { .. }
            | Message::Joined { .. }
            | Message::Refused { .. }
            | Message::End { .. }
            | Message::Channel { .. } => {
                self.stats.malformed += 1;
                None
            }
        }
    }

    fn join_request(
        &mut self,
        now: Now,
        from: Peer,
        nonce: u64,
        stay: Stay,
        token: Vec<u8>,
        names: Vec<String>,
    ) -> Option<JoinRequest> {
        let mut channels = Vec::new();
        if names.is_empty() {
            channels.extend(self.channels.iter().map(|c| c.info.index));
        }
        for name in &names {
            match self.channels.iter().find(|c| &c.info.name == name) {
                Some(c) if !channels.contains(&c.info.index) => channels.push(c.info.index),
                Some(_) => (),
                None => {
                    let text = format!("no channel {name}");
                    self.refuse_to(from, nonce, Reason::UnknownChannel, &text);
                    return None;
                }
            }
        }
        if let Some(text) = self.full_for(from) {
            self.refuse_to(from, nonce, Reason::Full, text);
            return None;
        }
        let duration = match stay {
            Stay::For(d) => d,
            Stay::Until(t) => t.saturating_sub(now.unix),
        };
        let req = JoinRequest {
            peer: from,
            multicast: false,
            token,
            every: names.is_empty(),
            channels,
            nonce,
            expires: now.mono.saturating_add(duration.min(self.cfg.max_stay)),
        };
        if message::write(&self.joined(&req, now, 0)).len() > MAX_CONTROL_LEN {
            self.refuse_to(
                from,
                nonce,
                Reason::TooLarge,
                "too many channels for one reply",
            );
            return None;
        }
        Some(req)
    }

    fn joined(&self, req: &JoinRequest, now: Now, session: u64) -> Message {
        // In the order asked for: receivers number their pads by it.
        let channels: Vec<&Channel> = req
            .channels
            .iter()
            .filter_map(|i| self.channels.iter().find(|c| c.info.index == *i))
            .collect();
        let key = |c: &Channel| match (&c.sealer, &self.kek) {
            (None, _) => Vec::new(),
            (Some(s), None) => s.key().material().to_vec(),
            (Some(s), Some(kek)) => kek.wrap(s.key().material()),
        };
        Message::Joined {
            nonce: req.nonce,
            session,
            expires_in: req.expires.saturating_sub(now.mono),
            security: self.security,
            keys: channels.iter().map(|c| key(c)).collect(),
            channels: channels.iter().map(|c| c.info.clone()).collect(),
        }
    }

    /// Lets a checked JOIN in: a new receiver, or a refresh (new expiry, new channel list).
    pub fn accept(&mut self, now: Now, req: JoinRequest) {
        if !self.clients.contains_key(&req.peer) {
            if let Some(text) = self.full_for(req.peer) {
                self.refuse_to(req.peer, req.nonce, Reason::Full, text);
                return;
            }
            *self.per_host.entry(req.peer.addr().ip()).or_default() += 1;
            let id = self.next_id;
            self.next_id += 1;
            let session = self.new_session(id);
            self.clients.insert(
                req.peer,
                Client {
                    id,
                    session,
                    channels: Vec::new(),
                    every: false,
                    multicast: false,
                    expires: 0,
                    bucket: Bucket::full(&self.cfg, now.mono),
                },
            );
            self.by_id.insert(id, req.peer);
            self.events.push_back(Event::Added { id, peer: req.peer });
        }
        let client = self.clients.get_mut(&req.peer).unwrap();
        client.expires = req.expires;
        client.every = req.every;
        // Channels removed since the request was checked are not joined.
        let known: Vec<u16> = req
            .channels
            .iter()
            .copied()
            .filter(|i| self.channels.iter().any(|c| c.info.index == *i))
            .collect();
        if client.channels != known || client.multicast != req.multicast {
            client.channels = known;
            client.multicast = req.multicast;
            self.generation += 1;
        }
        let session = client.session;
        let m = self.joined(&req, now, session);
        self.transmits.push_back(Transmit {
            to: req.peer,
            data: message::write(&m),
        });
        if req.expires <= now.mono {
            self.remove_addr(req.peer, RemoveReason::Expired);
        }
    }

    pub fn refuse(&mut self, req: JoinRequest, reason: Reason, text: &str) {
        self.refuse_to(req.peer, req.nonce, reason, text);
    }

    fn refuse_to(&mut self, to: Peer, nonce: u64, reason: Reason, text: &str) {
        self.stats.refused += 1;
        self.transmits.push_back(Transmit {
            to,
            data: message::write(&refused(nonce, reason, text)),
        });
    }

    /// A reply to an address not proven yet: never more bytes than it sent.
    fn reply_unverified(&mut self, to: Peer, request_len: usize, m: &Message) {
        let data = message::write(m);
        if data.len() > request_len {
            self.stats.replies_withheld += 1;
            return;
        }
        self.transmits.push_back(Transmit { to, data });
    }

    /// Why a receiver not in yet cannot come in, if it cannot: every place taken, or every
    /// place one host may have. A receiver already in is never refused as full.
    fn full_for(&self, peer: Peer) -> Option<&'static str> {
        if self.clients.contains_key(&peer) {
            return None;
        }
        if self.clients.len() >= self.cfg.max_clients {
            return Some("");
        }
        let max = self.cfg.max_clients_per_host;
        let from_host = self.per_host.get(&peer.addr().ip()).copied().unwrap_or(0);
        (max > 0 && from_host >= max).then_some("too many receivers from this host")
    }

    fn new_session(&self, id: u64) -> u64 {
        let tag = self.ids.clone().chain_update(id.to_be_bytes()).finalize();
        u64::from_be_bytes(tag.into_bytes()[..8].try_into().unwrap())
    }

    fn session_of(&self, addr: Peer) -> Option<u64> {
        self.clients.get(&addr).map(|c| c.session)
    }

    fn lost(&mut self, now: Now, from: Peer, entries: &[LostEntry]) {
        let client = &self.clients[&from];
        let (id, multicast) = (client.id, client.multicast);
        for e in entries {
            if !self.clients[&from].channels.contains(&e.channel) || e.needed == 0 {
                continue;
            }
            self.stats.repair_symbols_asked += u64::from(e.needed);
            let key = (e.channel, e.flow, e.block);
            if multicast && self.group_of(e.channel).is_some() {
                self.gather(now, id, key, e.needed);
            } else {
                self.repair_receiver(now, id, key, e.needed);
            }
        }
    }

    fn repair_receiver(&mut self, now: Now, id: u64, key: BlockKey, needed: u16) {
        let Some(channel) = self.channels.iter_mut().find(|c| c.info.index == key.0) else {
            return;
        };
        let allowed = channel.budget.allow(&self.cfg, u64::from(needed));
        self.stats.repairs_over_budget += u64::from(needed) - allowed;
        let Some(client) = self.by_id.get(&id).and_then(|p| self.clients.get_mut(p)) else {
            return;
        };
        let count = client.bucket.take(&self.cfg, now.mono, allowed);
        channel.budget.spend(count);
        if count == 0 {
            return;
        }
        self.stats.repair_symbols_granted += count;
        self.events.push_back(Event::Repair {
            to: RepairTo::Receiver(id),
            channel: key.0,
            flow: key.1,
            block: key.2,
            count: count as u32,
        });
    }

    /// A multicast receiver's report: gathered with the others' of the same block, so
    /// that one group repair answers all of them.
    fn gather(&mut self, now: Now, id: u64, key: BlockKey, needed: u16) {
        if let Some(s) = self.served.get(&key) {
            if now.mono < s.until && needed <= s.count {
                // Sent before the group repair reached it.
                self.stats.group_reports_covered += 1;
                return;
            }
        }
        if let Some(r) = self.rounds.get_mut(&key) {
            r.needed = r.needed.max(needed);
            r.several |= r.first != id;
            return;
        }
        if self.rounds.len() >= MAX_ROUNDS {
            self.repair_receiver(now, id, key, needed);
            return;
        }
        self.rounds.insert(
            key,
            Round {
                closes: now.mono.saturating_add(self.cfg.group_window),
                needed,
                first: id,
                several: false,
            },
        );
    }

    /// Answers the rounds whose window is over: one reporter gets its own repair, several
    /// get the largest need, once, to the group.
    fn close_rounds(&mut self, now: Now) {
        let due: Vec<BlockKey> = self
            .rounds
            .iter()
            .filter(|(_, r)| r.closes <= now.mono)
            .map(|(k, _)| *k)
            .collect();
        for key in due {
            let r = self.rounds.remove(&key).unwrap();
            if !r.several {
                self.repair_receiver(now, r.first, key, r.needed);
                continue;
            }
            let Some(c) = self.channels.iter_mut().find(|c| c.info.index == key.0) else {
                continue;
            };
            let allowed = c.budget.allow(&self.cfg, u64::from(r.needed));
            self.stats.repairs_over_budget += u64::from(r.needed) - allowed;
            let count = c.bucket.take(&self.cfg, now.mono, allowed);
            c.budget.spend(count);
            if count == 0 {
                continue;
            }
            self.stats.group_repairs += count;
            self.stats.repair_symbols_granted += count;
            self.served.insert(
                key,
                Served {
                    until: now.mono.saturating_add(self.cfg.group_hold),
                    count: count as u16,
                },
            );
            self.events.push_back(Event::Repair {
                to: RepairTo::Group,
                channel: key.0,
                flow: key.1,
                block: key.2,
                count: count as u32,
            });
        }
        self.served.retain(|_, s| s.until > now.mono);
    }

    /// Tells every receiver of `channel` that its stream ended. END is not acknowledged:
    /// callers send it a few times.
    pub fn end_channel(&mut self, channel: u16) {
        for (addr, c) in &self.clients {
            if c.channels.contains(&channel) {
                let m = Message::End {
                    session: c.session,
                    channel,
                };
                self.transmits.push_back(Transmit {
                    to: *addr,
                    data: message::write(&m),
                });
            }
        }
    }

    /// Takes receiver `id` out (`Evicted` or `Removed`); false if it is not in.
    pub fn remove(&mut self, id: u64, reason: RemoveReason) -> bool {
        match self.by_id.get(&id).copied() {
            Some(addr) => {
                self.remove_addr(addr, reason);
                true
            }
            None => false,
        }
    }

    fn remove_addr(&mut self, peer: Peer, reason: RemoveReason) {
        if let Some(c) = self.clients.remove(&peer) {
            let ip = peer.addr().ip();
            if let Some(n) = self.per_host.get_mut(&ip) {
                *n -= 1;
                if *n == 0 {
                    self.per_host.remove(&ip);
                }
            }
            self.by_id.remove(&c.id);
            self.generation += 1;
            self.events.push_back(Event::Removed {
                id: c.id,
                peer,
                reason,
            });
        }
    }

    /// A TCP receiver's connection closed: it left.
    pub fn connection_closed(&mut self, from: SocketAddr) {
        self.remove_addr(Peer::Tcp(from), RemoveReason::Left);
    }

    /// Removes receivers whose time is up, answers gathered loss reports.
    pub fn handle_timeout(&mut self, now: Now) {
        self.close_rounds(now);
        let expired: Vec<Peer> = self
            .clients
            .iter()
            .filter(|(_, c)| c.expires <= now.mono)
            .map(|(a, _)| *a)
            .collect();
        for a in expired {
            self.remove_addr(a, RemoveReason::Expired);
        }
    }

    /// When the next receiver expires or gathered reports are due (monotonic ns).
    pub fn next_timeout(&self) -> Option<u64> {
        let rounds = self.rounds.values().map(|r| r.closes);
        self.clients.values().map(|c| c.expires).chain(rounds).min()
    }
}

/// 16 random bytes, new at every start.
fn start_salt() -> [u8; 16] {
    let mut salt = [0u8; 16];
    // Without the system's randomness, ids are still unique per server, only guessable.
    let _ = getrandom::fill(&mut salt);
    salt
}

fn refused(nonce: u64, reason: Reason, text: &str) -> Message {
    Message::Refused {
        nonce,
        reason,
        text: text.to_owned(),
    }
}
