// SPDX-License-Identifier: MPL-2.0

//! The receiver side, sans-IO: HELLO → COOKIE → JOIN → JOINED, refreshed before it runs out,
//! started again when the server forgot the session (it restarted) or went silent.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use fanout_wire::time::{nanos, Mono};

use crate::message::{
    self, ChannelInfo, Cookie, Data, Datagram, LostEntry, Message, Reason, Security, Stay,
    DATA_HEADER_LEN, MAX_LOST_ENTRIES,
};
use crate::seal::{ChannelKey, KeyLen, Opener, PassphraseKey, Rejected};

/// First retransmission of an unanswered HELLO or JOIN; doubled each time up to the max.
pub const RETRY_FIRST: Duration = Duration::from_millis(200);
pub const RETRY_MAX: Duration = Duration::from_secs(2);
/// While nothing answers a handshake's HELLO, it is repeated this often for the first
/// [`EAGER_FOR`], so a receiver started before its server joins within about this long of
/// the server coming up (at most 50 HELLOs of 32 bytes per server); then it backs off. A
/// JOIN is repeated every [`RETRY_FIRST`] meanwhile, so loss both ways costs little time.
pub const RETRY_EAGER: Duration = Duration::from_millis(100);
pub const EAGER_FOR: Duration = Duration::from_secs(5);
/// A refresh starts this long before the time granted runs out (or 40 % of it, if more),
/// less up to 10 % of the time granted at random: room for slow answers on short sessions.
pub const REFRESH_MARGIN_MIN: Duration = Duration::from_secs(1);
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_JOIN_DURATION: Duration = Duration::from_secs(30);
/// Joined but nothing heard for this long: the server may have restarted, join again.
pub const DEFAULT_IDLE_REJOIN: Duration = Duration::from_secs(3);

#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Channel names; empty for every channel.
    pub channels: Vec<String>,
    pub token: Vec<u8>,
    pub stay: Stay,
    /// No answer for this long: [`ClientEvent::Unreachable`].
    pub timeout: Duration,
    pub idle_rejoin: Duration,
    /// Ask to take channels that have a multicast group from the group.
    pub multicast: bool,
    /// The server's passphrase: its DATA must be encrypted under it. `None`: the server's
    /// DATA must be authenticated, and not encrypted.
    pub passphrase: Option<String>,
    /// Take DATA that is neither authenticated nor encrypted (a server with
    /// `authenticate=false`); off, such a server is refused.
    pub allow_unauthenticated: bool,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            channels: Vec::new(),
            token: Vec::new(),
            stay: Stay::For(nanos(DEFAULT_JOIN_DURATION)),
            timeout: DEFAULT_TIMEOUT,
            idle_rejoin: DEFAULT_IDLE_REJOIN,
            multicast: false,
            passphrase: None,
            allow_unauthenticated: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientEvent {
    /// Every JOINED: the first, refreshes, and joins after a server restart (`new_session`).
    Joined {
        channels: Vec<ChannelInfo>,
        new_session: bool,
    },
    /// The server said no (not for a stale cookie or session: those are handled here).
    Refused { reason: Reason, text: String },
    /// No answer within the timeout; the client keeps trying.
    Unreachable,
    /// The channel's stream ended.
    Ended { channel: u16 },
    /// A joined channel's caps (or name) changed.
    Changed { channel: ChannelInfo },
    /// The server's data cannot be taken: a wrong or missing passphrase, or a server that
    /// does not protect its data as this receiver requires. The client stopped.
    Failed { text: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Hello { nonce: u64 },
    Join { nonce: u64, cookie: Cookie },
    Joined,
    Stopped,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ClientStats {
    pub datagrams: u64,
    pub data: u64,
    pub foreign: u64,
    pub malformed: u64,
    pub joins: u64,
    pub lost_reports: u64,
    pub lost_entries: u64,
    /// DATA dropped: its tag did not check out (forged or damaged), its counter was taken
    /// already (replayed), or it came for a channel without a key (yet).
    pub forged: u64,
    pub replayed: u64,
    pub unkeyed: u64,
}

impl std::ops::AddAssign for ClientStats {
    /// Totals over several sessions.
    fn add_assign(&mut self, o: ClientStats) {
        self.datagrams = self.datagrams.saturating_add(o.datagrams);
        self.data = self.data.saturating_add(o.data);
        self.foreign = self.foreign.saturating_add(o.foreign);
        self.malformed = self.malformed.saturating_add(o.malformed);
        self.joins = self.joins.saturating_add(o.joins);
        self.lost_reports = self.lost_reports.saturating_add(o.lost_reports);
        self.lost_entries = self.lost_entries.saturating_add(o.lost_entries);
        self.forged = self.forged.saturating_add(o.forged);
        self.replayed = self.replayed.saturating_add(o.replayed);
        self.unkeyed = self.unkeyed.saturating_add(o.unkeyed);
    }
}

/// When to start refreshing a session granted `granted`: `granted − max(1 s, 40 %)` (but
/// not before half of it), less `jitter` (at most 10 % of `granted`), so receivers that
/// joined together spread out.
pub fn refresh_after(granted: Duration, jitter: Duration) -> Duration {
    let (granted, jitter) = (nanos(granted), nanos(jitter));
    let margin = (granted / 5 * 2)
        .max(nanos(REFRESH_MARGIN_MIN))
        .min(granted / 2);
    Duration::from_nanos(granted.saturating_sub(margin).saturating_sub(jitter))
}

pub struct Client {
    cfg: ClientConfig,
    /// Over a TCP connection: no cookie round, the connection proves the address.
    stream: bool,
    phase: Phase,
    session: Option<u64>,
    /// Start of the handshake in flight, for the timeout.
    started: Mono,
    retry_at: Mono,
    retry: Duration,
    unreachable_told: bool,
    refresh_at: Mono,
    last_heard: Mono,
    rng: u64,
    transmits: VecDeque<Vec<u8>>,
    events: VecDeque<ClientEvent>,
    /// How the server protects DATA, from its last JOINED.
    security: Option<Security>,
    /// Each joined channel's key.
    openers: HashMap<u16, Opener>,
    /// The passphrase's key for the server's salt and rounds, derived once.
    kek: Option<(Security, PassphraseKey)>,
    pub stats: ClientStats,
}

impl Client {
    /// Starts joining at `now`; `seed` makes nonces and jitter (take it from a system RNG).
    pub fn new(cfg: ClientConfig, now: Mono, seed: u64) -> Client {
        Client::start(cfg, false, now, seed)
    }

    /// A client on a TCP connection (frames as docs/session-protocol.md gives them): its
    /// first message is the JOIN.
    pub fn new_stream(cfg: ClientConfig, now: Mono, seed: u64) -> Client {
        Client::start(cfg, true, now, seed)
    }

    fn start(cfg: ClientConfig, stream: bool, now: Mono, seed: u64) -> Client {
        let mut c = Client {
            cfg,
            stream,
            phase: Phase::Stopped,
            session: None,
            started: now,
            retry_at: now,
            retry: RETRY_FIRST,
            unreachable_told: false,
            refresh_at: Mono::MAX,
            last_heard: now,
            rng: seed,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            security: None,
            openers: HashMap::new(),
            kek: None,
            stats: ClientStats::default(),
        };
        c.handshake(now);
        c
    }

    pub fn is_joined(&self) -> bool {
        self.session.is_some()
    }

    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.transmits.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.events.pop_front()
    }

    fn random(&mut self) -> u64 {
        // splitmix64
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Something arrived from the server by another way (its multicast group): it is alive.
    pub fn heard(&mut self, now: Mono) {
        self.last_heard = self.last_heard.max(now);
    }

    pub fn multicast(&self) -> bool {
        self.cfg.multicast
    }

    /// Asks for the group (or for unicast copies) from now on: joins again at once.
    pub fn set_multicast(&mut self, on: bool, now: Mono) {
        if self.cfg.multicast == on {
            return;
        }
        self.cfg.multicast = on;
        if self.phase != Phase::Stopped {
            self.handshake(now);
        }
    }

    /// Joins again now (a new connection to the server): a handshake in flight starts
    /// over and keeps its timeout.
    pub fn rejoin_now(&mut self, now: Mono) {
        if self.phase == Phase::Stopped {
            return;
        }
        let joined = self.phase == Phase::Joined;
        let (started, told) = (self.started, self.unreachable_told);
        self.handshake(now);
        if !joined {
            self.started = started;
            self.unreachable_told = told;
        }
    }

    fn handshake(&mut self, now: Mono) {
        let nonce = self.random();
        self.phase = match self.stream {
            false => Phase::Hello { nonce },
            true => Phase::Join {
                nonce,
                cookie: [0; message::COOKIE_LEN],
            },
        };
        self.started = now;
        self.retry = RETRY_FIRST;
        self.unreachable_told = false;
        self.send_current(now);
    }

    fn send_current(&mut self, now: Mono) {
        let m = match self.phase {
            Phase::Hello { nonce } => Message::Hello { nonce },
            Phase::Join { nonce, cookie } => {
                self.stats.joins += 1;
                Message::Join {
                    nonce,
                    cookie,
                    stay: self.cfg.stay,
                    multicast: self.cfg.multicast,
                    token: self.cfg.token.clone(),
                    channels: self.cfg.channels.clone(),
                }
            }
            Phase::Joined | Phase::Stopped => return,
        };
        self.transmits.push_back(message::write(&m));
        if now.saturating_duration_since(self.started) < EAGER_FOR {
            let every = match self.phase {
                Phase::Hello { .. } => RETRY_EAGER,
                _ => RETRY_FIRST,
            };
            self.retry_at = now + every;
            return;
        }
        self.retry_at = now + self.retry;
        self.retry = (self.retry * 2).min(RETRY_MAX);
    }

    /// Takes one datagram from the server; gives back a DATA payload once joined, checked
    /// against its channel's key (and decrypted in place).
    pub fn handle_datagram<'a>(&mut self, now: Mono, data: &'a mut [u8]) -> Option<Data<'a>> {
        self.stats.datagrams += 1;
        let m = match message::parse(data) {
            Ok(Datagram::Data(d)) => {
                let (channel, counter, answer) = (d.channel, d.counter, d.answer);
                return self.open(now, channel, counter, data).map(|payload| Data {
                    channel,
                    counter,
                    answer,
                    payload,
                });
            }
            Ok(Datagram::Control(m)) => m,
            Err(message::ParseError::Foreign) => {
                self.stats.foreign += 1;
                return None;
            }
            Err(_) => {
                self.stats.malformed += 1;
                return None;
            }
        };
        match (self.phase, m) {
            (Phase::Hello { nonce }, Message::Cookie { nonce: n, cookie }) if n == nonce => {
                self.last_heard = now;
                self.phase = Phase::Join { nonce, cookie };
                self.retry = RETRY_FIRST;
                self.send_current(now);
            }
            (
                Phase::Join { nonce, .. },
                Message::Joined {
                    nonce: n,
                    session,
                    expires_in,
                    security,
                    channels,
                    keys,
                },
            ) if n == nonce => {
                if let Err(text) = self.take_keys(security, &channels, &keys) {
                    // Out at once, rather than sent data it cannot take until it expires.
                    let leave = Message::Leave { session };
                    self.transmits.push_back(message::write(&leave));
                    self.phase = Phase::Stopped;
                    self.session = None;
                    self.events.push_back(ClientEvent::Failed { text });
                    return None;
                }
                self.last_heard = now;
                let new_session = self.session != Some(session);
                self.session = Some(session);
                self.phase = Phase::Joined;
                let jitter = self.random() % (expires_in / 10 + 1);
                let (granted, jitter) = (
                    Duration::from_nanos(expires_in),
                    Duration::from_nanos(jitter),
                );
                self.refresh_at = now + refresh_after(granted, jitter);
                self.events.push_back(ClientEvent::Joined {
                    channels,
                    new_session,
                });
            }
            (phase, Message::Refused { nonce, reason, .. })
                if matches!(reason, Reason::BadCookie | Reason::UnknownSession)
                    && self.is_ours(phase, nonce) =>
            {
                self.last_heard = now;
                if reason == Reason::UnknownSession {
                    self.session = None;
                }
                self.handshake(now);
            }
            (
                phase,
                Message::Refused {
                    nonce,
                    reason,
                    text,
                },
            ) if self.is_ours(phase, nonce) => {
                self.phase = Phase::Stopped;
                self.session = None;
                self.events.push_back(ClientEvent::Refused { reason, text });
            }
            (_, Message::End { session, channel }) if Some(session) == self.session => {
                self.last_heard = now;
                // Its key goes with it: a channel made again under this number has another.
                self.openers.remove(&channel);
                self.events.push_back(ClientEvent::Ended { channel });
            }
            (_, Message::Channel { session, info }) if Some(session) == self.session => {
                self.last_heard = now;
                // A channel added since JOINED (this receiver asked for every channel): its key
                // comes only in JOINED, so join again at once.
                let keyed =
                    self.security == Some(Security::None) || self.openers.contains_key(&info.index);
                self.events
                    .push_back(ClientEvent::Changed { channel: info });
                if !keyed && self.phase == Phase::Joined {
                    self.handshake(now);
                }
            }
            _ => self.stats.malformed += 1,
        }
        None
    }

    fn open<'a>(
        &mut self,
        now: Mono,
        channel: u16,
        counter: u64,
        data: &'a mut [u8],
    ) -> Option<&'a [u8]> {
        if self.session.is_none() || self.phase == Phase::Stopped {
            return None;
        }
        let payload = match self.security {
            Some(Security::None) => &data[DATA_HEADER_LEN..],
            _ => {
                let Some(opener) = self.openers.get_mut(&channel) else {
                    self.stats.unkeyed += 1;
                    return None;
                };
                match opener.open(counter, data) {
                    Ok(p) => p,
                    Err(Rejected::Forged) => {
                        self.stats.forged += 1;
                        return None;
                    }
                    Err(Rejected::Replayed) => {
                        self.stats.replayed += 1;
                        return None;
                    }
                }
            }
        };
        // Only the server's own data says it is alive.
        self.last_heard = now;
        self.stats.data += 1;
        Some(payload)
    }

    /// Takes the keys of a JOINED: every channel's, checked against what this receiver
    /// requires. Why not, if they cannot be taken.
    fn take_keys(
        &mut self,
        security: Security,
        channels: &[ChannelInfo],
        keys: &[Vec<u8>],
    ) -> Result<(), String> {
        let kek = match (security, &self.cfg.passphrase) {
            (Security::None, _) if !self.cfg.allow_unauthenticated => {
                return Err("the server does not authenticate its data; refused".into())
            }
            (Security::None | Security::Authenticated { .. }, Some(_)) => {
                return Err("the server does not encrypt its data, but a passphrase is set".into())
            }
            (Security::Encrypted { .. }, None) => {
                return Err("the server encrypts its data: set its passphrase".into())
            }
            (
                Security::Encrypted {
                    key_len,
                    kdf_salt,
                    iterations,
                },
                Some(pass),
            ) => {
                if self.kek.as_ref().is_none_or(|(s, _)| *s != security) {
                    let len = KeyLen::new(u32::from(key_len)).ok_or("bad key length")?;
                    let kek = PassphraseKey::derive(pass, &kdf_salt, iterations, len);
                    self.kek = Some((security, kek));
                }
                self.kek.as_ref().map(|(_, k)| k)
            }
            _ => None,
        };
        let encrypt = kek.is_some();
        let mut openers = HashMap::new();
        for (c, block) in channels.iter().zip(keys) {
            if security == Security::None {
                break;
            }
            let material = match kek {
                Some(kek) => kek.unwrap(block).ok_or("wrong passphrase")?,
                None => block.clone(),
            };
            // A refresh hands the same key again: keep the counters seen.
            let opener = match self.openers.remove(&c.index) {
                Some(o) if o.material() == material.as_slice() => o,
                _ => Opener::new(
                    ChannelKey::from_material(&material, encrypt).ok_or("bad channel key")?,
                ),
            };
            openers.insert(c.index, opener);
        }
        self.openers = openers;
        self.security = Some(security);
        Ok(())
    }

    /// Whether a REFUSED names what we sent: the handshake's nonce, or our session id (the
    /// server's answer to a LOST it does not know).
    fn is_ours(&self, phase: Phase, nonce: u64) -> bool {
        match phase {
            Phase::Hello { nonce: n } | Phase::Join { nonce: n, .. } => n == nonce,
            Phase::Joined => self.session == Some(nonce),
            Phase::Stopped => false,
        }
    }

    /// Retransmits, refreshes or rejoins if [`poll_timeout`](Self::poll_timeout) has
    /// passed; calling it earlier does nothing.
    pub fn handle_timeout(&mut self, now: Mono) {
        match self.phase {
            Phase::Hello { .. } | Phase::Join { .. } => {
                if now < self.retry_at {
                    return;
                }
                let waited = now.saturating_duration_since(self.started);
                if !self.unreachable_told && waited >= self.cfg.timeout {
                    self.unreachable_told = true;
                    self.events.push_back(ClientEvent::Unreachable);
                }
                // A lost COOKIE or JOINED: start over, the cookie may be stale by now.
                if matches!(self.phase, Phase::Join { .. }) && self.retry >= RETRY_MAX {
                    let started = self.started;
                    let told = self.unreachable_told;
                    self.handshake(now);
                    self.started = started;
                    self.unreachable_told = told;
                    return;
                }
                self.send_current(now);
            }
            Phase::Joined => {
                let idle = now.saturating_duration_since(self.last_heard) >= self.cfg.idle_rejoin;
                if now >= self.refresh_at || idle {
                    self.handshake(now);
                }
            }
            Phase::Stopped => (),
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) next needs calling: the next
    /// retransmission of a HELLO or JOIN, or, joined, the refresh or the rejoin of a silent
    /// server, whichever comes first. `None` once stopped.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Mono> {
        match self.phase {
            Phase::Hello { .. } | Phase::Join { .. } => Some(self.retry_at),
            Phase::Joined => Some(self.refresh_at.min(self.last_heard + self.cfg.idle_rejoin)),
            Phase::Stopped => None,
        }
    }

    /// Tells the server the share of `channel`'s packets lost lately (0 to 1; sent as at
    /// most 0.5): it sends repair up front for it. Sent at once, if joined.
    pub fn report_loss(&mut self, channel: u16, loss: f64) {
        let Some(session) = self.session else { return };
        let loss = (loss.clamp(0.0, 1.0) * 10_000.0).round() as u16;
        self.transmits.push_back(message::write(&Message::Loss {
            session,
            channel,
            loss: loss.min(message::MAX_LOSS),
        }));
    }

    /// Reports blocks still missing; sent at once, in as few LOST messages as fit.
    pub fn report_lost(&mut self, entries: &[LostEntry]) {
        let Some(session) = self.session else { return };
        for chunk in entries.chunks(MAX_LOST_ENTRIES) {
            self.stats.lost_reports += 1;
            self.stats.lost_entries += chunk.len() as u64;
            self.transmits.push_back(message::write(&Message::Lost {
                session,
                entries: chunk.to_vec(),
            }));
        }
    }

    /// Leaves (a LEAVE to send if joined) and stops.
    pub fn leave(&mut self) {
        if let Some(session) = self.session.take() {
            self.transmits
                .push_back(message::write(&Message::Leave { session }));
        }
        self.phase = Phase::Stopped;
    }
}
