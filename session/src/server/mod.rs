// SPDX-License-Identifier: MPL-2.0

//! The server side, sans-IO: fed datagrams with their source address and the time, it
//! queues datagrams to send and events. No state is created for an address before it
//! proved, with a cookie, that it receives what is sent to it (or connected over TCP, which
//! proves the same).

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use fanout_wire::time::{nanos, Mono};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::cookie::CookieJar;
use crate::message::{
    self, Datagram, Message, ParseError, Reason, Security, Stay, MAX_CONTROL_LEN,
};
use crate::seal::{PassphraseKey, KDF_SALT_LEN};

mod budget;
mod channel;
mod config;
mod event;
mod gather;
mod loss;
mod peer;
mod repair;

use budget::Bucket;
use channel::Channel;
pub use config::{
    ServerConfig, DEFAULT_CHANNEL_REPAIR_PERCENT, DEFAULT_COOKIE_BUCKET, DEFAULT_GROUP_HOLD,
    DEFAULT_GROUP_WINDOW, DEFAULT_MAX_CLIENTS, DEFAULT_MAX_CLIENTS_PER_HOST, DEFAULT_MAX_STAY,
    DEFAULT_REPAIR_BURST, DEFAULT_REPAIR_RATE, DEFAULT_TOP_UP_CONFIDENCE,
};
pub use event::{Event, RemoveReason, RepairTo, Transmit};
use gather::Gathering;
pub use peer::Peer;

/// The time, twice: a monotonic clock for everything, and Unix time (ns since 1970) for
/// JOINs that stay until an absolute time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    pub mono: Mono,
    pub unix: u64,
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
    expires: Mono,
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
    /// LOSS messages taken, and repair symbols sent up front for the loss they told.
    pub loss_reports: u64,
    pub top_up_symbols: u64,
    /// Repair symbols sent to a group, and reports a group repair already covered.
    pub group_repairs: u64,
    pub group_reports_covered: u64,
    /// Replies not sent because they would have been larger than the unverified request.
    pub replies_withheld: u64,
    /// Repair symbols asked for that the channel's overall budget refused.
    pub repairs_over_budget: u64,
}

struct Client {
    id: u64,
    session: u64,
    channels: Vec<u16>,
    /// It asked for every channel: one added later is its too.
    every: bool,
    multicast: bool,
    expires: Mono,
    bucket: Bucket,
    /// What it said it loses lately, per channel (LOSS).
    losses: loss::Losses,
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
    /// Loss reports of multicast receivers being gathered.
    gathering: Gathering,
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
            gathering: Gathering::default(),
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
            Message::Loss {
                session,
                channel,
                loss,
            } => {
                self.stats.loss_reports += 1;
                match self.clients.get_mut(&from) {
                    Some(c) if c.session == session => {
                        if c.channels.contains(&channel) {
                            c.losses.set(channel, loss, now.mono);
                        }
                    }
                    // No answer: a LOSS comes every second, and a LOST says REFUSED already.
                    _ => self.stats.unknown_session += 1,
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
            expires: now.mono + Duration::from_nanos(duration).min(self.cfg.max_stay),
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
            expires_in: nanos(req.expires.saturating_duration_since(now.mono)),
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
                    expires: Mono::ZERO,
                    bucket: Bucket::full(&self.cfg, now.mono),
                    losses: loss::Losses::default(),
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

    /// When [`handle_timeout`](Self::handle_timeout) next needs calling: the
    /// next receiver's expiry or the close of the next round of gathered loss reports.
    /// `None`: nothing is due until a datagram or a call changes that.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Mono> {
        let rounds = self.gathering.next_close();
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
