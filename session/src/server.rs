// SPDX-License-Identifier: MPL-2.0

//! The server side, sans-IO: fed datagrams with their source address and the time, it
//! queues datagrams to send and events. No state is created for an address before it
//! proved, with a cookie, that it receives what is sent to it.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::cookie::CookieJar;
use crate::message::{
    self, ChannelInfo, Datagram, LostEntry, Message, ParseError, Reason, Stay, MAX_CONTROL_LEN,
};

pub const DEFAULT_COOKIE_BUCKET: u64 = 30_000_000_000;
pub const DEFAULT_MAX_STAY: u64 = 24 * 3600 * 1_000_000_000;
pub const DEFAULT_REPAIR_RATE: u32 = 2000;
pub const DEFAULT_REPAIR_BURST: u32 = 1000;
pub const DEFAULT_MAX_CLIENTS: usize = 1000;

#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Key of the cookie and session-id HMACs.
    pub secret: Vec<u8>,
    pub max_clients: usize,
    /// A cookie lives one to two buckets (ns).
    pub cookie_bucket: u64,
    /// The longest a JOIN may stay (ns); longer ones are cut to it.
    pub max_stay: u64,
    /// Repair symbols a second one receiver may have (token bucket rate, and its depth).
    pub repair_rate: u32,
    pub repair_burst: u32,
}

impl ServerConfig {
    pub fn new(secret: Vec<u8>) -> ServerConfig {
        ServerConfig {
            secret,
            max_clients: DEFAULT_MAX_CLIENTS,
            cookie_bucket: DEFAULT_COOKIE_BUCKET,
            max_stay: DEFAULT_MAX_STAY,
            repair_rate: DEFAULT_REPAIR_RATE,
            repair_burst: DEFAULT_REPAIR_BURST,
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
    pub to: SocketAddr,
    pub data: Vec<u8>,
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
        addr: SocketAddr,
    },
    Removed {
        id: u64,
        addr: SocketAddr,
        reason: RemoveReason,
    },
    /// Send `count` fresh repair symbols of `block` of `flow` on `channel` to receiver `id`.
    Repair {
        id: u64,
        channel: u16,
        flow: u32,
        block: u64,
        count: u32,
    },
}

/// A JOIN whose cookie checked out, waiting for the application to accept or refuse it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinRequest {
    pub addr: SocketAddr,
    pub token: Vec<u8>,
    /// Channel indices.
    pub channels: Vec<u16>,
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
    /// Replies not sent because they would have been larger than the unverified request.
    pub replies_withheld: u64,
}

struct Channel {
    info: ChannelInfo,
}

struct Client {
    id: u64,
    session: u64,
    channels: Vec<u16>,
    expires: u64,
    tokens: u64,
    refilled: u64,
}

pub struct Server {
    cfg: ServerConfig,
    jar: CookieJar,
    ids: Hmac<Sha256>,
    channels: Vec<Channel>,
    clients: HashMap<SocketAddr, Client>,
    by_id: HashMap<u64, SocketAddr>,
    next_id: u64,
    generation: u64,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    pub stats: ServerStats,
}

impl Server {
    pub fn new(cfg: ServerConfig) -> Server {
        Server {
            jar: CookieJar::new(&cfg.secret, cfg.cookie_bucket),
            ids: Hmac::new_from_slice(&cfg.secret)
                .expect("HMAC takes any key length")
                .chain_update(b"session ids"),
            cfg,
            channels: Vec::new(),
            clients: HashMap::new(),
            by_id: HashMap::new(),
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

    /// Adds or updates a channel; its receivers are told of a change (CHANNEL).
    pub fn set_channel(&mut self, index: u16, name: &str, caps: &str) {
        let info = ChannelInfo {
            index,
            name: name.to_owned(),
            caps: caps.to_owned(),
        };
        match self.channels.iter_mut().find(|c| c.info.index == index) {
            Some(c) if c.info == info => return,
            Some(c) => c.info = info.clone(),
            None => {
                self.channels.push(Channel { info });
                return;
            }
        }
        for (addr, c) in &self.clients {
            if c.channels.contains(&index) {
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

    pub fn remove_channel(&mut self, index: u16) {
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

    /// Receivers of `channel`: (id, address).
    pub fn members(&self, channel: u16) -> impl Iterator<Item = (u64, SocketAddr)> + '_ {
        self.clients
            .iter()
            .filter(move |(_, c)| c.channels.contains(&channel))
            .map(|(a, c)| (c.id, *a))
    }

    /// Every receiver: (id, address).
    pub fn clients(&self) -> impl Iterator<Item = (u64, SocketAddr)> + '_ {
        self.clients.iter().map(|(a, c)| (c.id, *a))
    }

    /// Channel indices receiver `id` is in.
    pub fn channels_of(&self, id: u64) -> &[u16] {
        self.by_id
            .get(&id)
            .and_then(|a| self.clients.get(a))
            .map_or(&[], |c| c.channels.as_slice())
    }

    pub fn address_of(&self, id: u64) -> Option<SocketAddr> {
        self.by_id.get(&id).copied()
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Takes one datagram from `from`. A JOIN whose cookie checks out comes back for the
    /// application to [`accept`](Self::accept) or [`refuse`](Self::refuse).
    pub fn handle_datagram(
        &mut self,
        now: Now,
        from: SocketAddr,
        data: &[u8],
    ) -> Option<JoinRequest> {
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
                let cookie = self.jar.make(from, now.mono);
                self.reply_unverified(from, data.len(), &Message::Cookie { nonce, cookie });
                None
            }
            Message::Join {
                nonce,
                cookie,
                stay,
                token,
                channels,
            } => {
                self.stats.joins += 1;
                if !self.jar.check(from, now.mono, &cookie) {
                    self.stats.bad_cookies += 1;
                    let m = refused(nonce, Reason::BadCookie, "");
                    self.reply_unverified(from, data.len(), &m);
                    return None;
                }
                self.join_request(now, from, nonce, stay, token, channels)
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
        from: SocketAddr,
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
        if !self.clients.contains_key(&from) && self.clients.len() >= self.cfg.max_clients {
            self.refuse_to(from, nonce, Reason::Full, "");
            return None;
        }
        let duration = match stay {
            Stay::For(d) => d,
            Stay::Until(t) => t.saturating_sub(now.unix),
        };
        let req = JoinRequest {
            addr: from,
            token,
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
        Message::Joined {
            nonce: req.nonce,
            session,
            expires_in: req.expires.saturating_sub(now.mono),
            // In the order asked for: receivers number their pads by it.
            channels: req
                .channels
                .iter()
                .filter_map(|i| self.channels.iter().find(|c| c.info.index == *i))
                .map(|c| c.info.clone())
                .collect(),
        }
    }

    /// Lets a checked JOIN in: a new receiver, or a refresh (new expiry, new channel list).
    pub fn accept(&mut self, now: Now, req: JoinRequest) {
        if !self.clients.contains_key(&req.addr) {
            if self.clients.len() >= self.cfg.max_clients {
                self.refuse_to(req.addr, req.nonce, Reason::Full, "");
                return;
            }
            let id = self.next_id;
            self.next_id += 1;
            let session = self.new_session(id);
            self.clients.insert(
                req.addr,
                Client {
                    id,
                    session,
                    channels: Vec::new(),
                    expires: 0,
                    tokens: u64::from(self.cfg.repair_burst),
                    refilled: now.mono,
                },
            );
            self.by_id.insert(id, req.addr);
            self.events.push_back(Event::Added { id, addr: req.addr });
        }
        let client = self.clients.get_mut(&req.addr).unwrap();
        client.expires = req.expires;
        // Channels removed since the request was checked are not joined.
        let known: Vec<u16> = req
            .channels
            .iter()
            .copied()
            .filter(|i| self.channels.iter().any(|c| c.info.index == *i))
            .collect();
        if client.channels != known {
            client.channels = known;
            self.generation += 1;
        }
        let session = client.session;
        let m = self.joined(&req, now, session);
        self.transmits.push_back(Transmit {
            to: req.addr,
            data: message::write(&m),
        });
        if req.expires <= now.mono {
            self.remove_addr(req.addr, RemoveReason::Expired);
        }
    }

    pub fn refuse(&mut self, req: JoinRequest, reason: Reason, text: &str) {
        self.refuse_to(req.addr, req.nonce, reason, text);
    }

    fn refuse_to(&mut self, to: SocketAddr, nonce: u64, reason: Reason, text: &str) {
        self.stats.refused += 1;
        self.transmits.push_back(Transmit {
            to,
            data: message::write(&refused(nonce, reason, text)),
        });
    }

    /// A reply to an address not proven yet: never more bytes than it sent.
    fn reply_unverified(&mut self, to: SocketAddr, request_len: usize, m: &Message) {
        let data = message::write(m);
        if data.len() > request_len {
            self.stats.replies_withheld += 1;
            return;
        }
        self.transmits.push_back(Transmit { to, data });
    }

    fn new_session(&self, id: u64) -> u64 {
        let tag = self.ids.clone().chain_update(id.to_be_bytes()).finalize();
        u64::from_be_bytes(tag.into_bytes()[..8].try_into().unwrap())
    }

    fn session_of(&self, addr: SocketAddr) -> Option<u64> {
        self.clients.get(&addr).map(|c| c.session)
    }

    fn lost(&mut self, now: Now, from: SocketAddr, entries: &[LostEntry]) {
        let cfg = &self.cfg;
        let client = self.clients.get_mut(&from).unwrap();
        let elapsed = now.mono.saturating_sub(client.refilled);
        let refill = u128::from(elapsed) * u128::from(cfg.repair_rate) / 1_000_000_000;
        if refill > 0 {
            client.tokens =
                (client.tokens as u128 + refill).min(u128::from(cfg.repair_burst)) as u64;
            client.refilled = now.mono;
        }
        for e in entries {
            if !client.channels.contains(&e.channel) || e.needed == 0 {
                continue;
            }
            self.stats.repair_symbols_asked += u64::from(e.needed);
            let count = u64::from(e.needed).min(client.tokens);
            if count == 0 {
                continue;
            }
            client.tokens -= count;
            self.stats.repair_symbols_granted += count;
            self.events.push_back(Event::Repair {
                id: client.id,
                channel: e.channel,
                flow: e.flow,
                block: e.block,
                count: count as u32,
            });
        }
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

    fn remove_addr(&mut self, addr: SocketAddr, reason: RemoveReason) {
        if let Some(c) = self.clients.remove(&addr) {
            self.by_id.remove(&c.id);
            self.generation += 1;
            self.events.push_back(Event::Removed {
                id: c.id,
                addr,
                reason,
            });
        }
    }

    /// Removes receivers whose time is up.
    pub fn handle_timeout(&mut self, now: Now) {
        let expired: Vec<SocketAddr> = self
            .clients
            .iter()
            .filter(|(_, c)| c.expires <= now.mono)
            .map(|(a, _)| *a)
            .collect();
        for a in expired {
            self.remove_addr(a, RemoveReason::Expired);
        }
    }

    /// When the next receiver expires (monotonic ns).
    pub fn next_timeout(&self) -> Option<u64> {
        self.clients.values().map(|c| c.expires).min()
    }
}

fn refused(nonce: u64, reason: Reason, text: &str) -> Message {
    Message::Refused {
        nonce,
        reason,
        text: text.to_owned(),
    }
}
