// SPDX-License-Identifier: MPL-2.0

//! The session protocol's datagrams, byte by byte as docs/session-protocol.md gives them.
//! Parsing is strict: a datagram is one message, every length is checked, trailing bytes
//! (but HELLO's padding) make it malformed.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::seal;

/// First two bytes of every datagram: "FS".
pub const MAGIC: [u8; 2] = *b"FS";
/// 2: DATA sealed (counter and tag), keys in JOINED.
pub const VERSION: u8 = 2;
/// Magic, version and type.
pub const HEADER_LEN: usize = 4;
/// A HELLO is padded to at least this, so that the COOKIE answering it is never larger.
pub const HELLO_LEN: usize = 32;
pub const COOKIE_LEN: usize = 16;
/// Bytes before a DATA datagram's body: magic, version, type, channel, counter.
pub const DATA_HEADER_LEN: usize = 12;
pub const MAX_NAME_LEN: usize = 64;
pub const MAX_TOKEN_LEN: usize = 255;
pub const MAX_CAPS_LEN: usize = 1024;
pub const MAX_REASON_LEN: usize = 200;
pub const MAX_JOIN_CHANNELS: usize = 16;
pub const MAX_LOST_ENTRIES: usize = 32;
/// The largest control message either side sends or takes (DATA is not a control message).
pub const MAX_CONTROL_LEN: usize = 1400;

const HELLO: u8 = 1;
const COOKIE: u8 = 2;
const JOIN: u8 = 3;
const JOINED: u8 = 4;
const REFUSED: u8 = 5;
const LEAVE: u8 = 6;
const LOST: u8 = 7;
const END: u8 = 8;
const CHANNEL: u8 = 9;
const LOSS: u8 = 10;
const DATA: u8 = 16;

/// JOIN flag: `time` is an absolute Unix time (ns) instead of a duration.
const JOIN_UNTIL: u8 = 1;
/// JOIN flag: the receiver takes channels that have a multicast group from the group, not
/// as unicast copies.
const JOIN_MULTICAST: u8 = 2;
/// A channel's group address family in [`ChannelInfo`]: none, IPv4, IPv6.
const GROUP_NONE: u8 = 0;
const GROUP_V4: u8 = 4;
const GROUP_V6: u8 = 6;

pub type Cookie = [u8; COOKIE_LEN];

/// How long a JOIN asks to stay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stay {
    /// Nanoseconds from when the server takes the JOIN.
    For(u64),
    /// Until this Unix time, in nanoseconds.
    Until(u64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Reason {
    /// The cookie is wrong or expired: start again with a HELLO.
    BadCookie = 1,
    /// `max-clients` receivers are in already.
    Full = 2,
    /// The server's application refused this address or token.
    NotAuthorized = 3,
    /// A channel asked for does not exist.
    UnknownChannel = 4,
    /// The session id is not (any more) known: the server restarted or the session expired.
    UnknownSession = 5,
    /// The answer would not fit one datagram.
    TooLarge = 6,
}

impl Reason {
    fn from_u8(v: u8) -> Option<Reason> {
        Some(match v {
            1 => Reason::BadCookie,
            2 => Reason::Full,
            3 => Reason::NotAuthorized,
            4 => Reason::UnknownChannel,
            5 => Reason::UnknownSession,
            6 => Reason::TooLarge,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::BadCookie => "bad or expired cookie",
            Reason::Full => "server full",
            Reason::NotAuthorized => "not authorized",
            Reason::UnknownChannel => "unknown channel",
            Reason::UnknownSession => "unknown session",
            Reason::TooLarge => "reply too large",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelInfo {
    /// Number used in DATA, LOST and END.
    pub index: u16,
    pub name: String,
    /// GStreamer caps string; empty while the server does not know them yet.
    pub caps: String,
    /// The multicast group every packet of the channel also goes to.
    pub group: Option<SocketAddr>,
}

/// How a server's DATA is protected, as its JOINED says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    /// Nothing: DATA bodies are the packets, no tag (`session-sink authenticate=false`).
    None,
    /// Every DATA body is followed by a GCM tag under the channel's key, sent in clear in
    /// JOINED.
    Authenticated { key_len: u8 },
    /// DATA bodies are encrypted and tagged; JOINED's keys are wrapped by the key the
    /// passphrase gives with this salt and PBKDF2 rounds.
    Encrypted {
        key_len: u8,
        kdf_salt: [u8; seal::KDF_SALT_LEN],
        iterations: u32,
    },
}

impl Security {
    /// Bytes of one channel's key block in JOINED.
    pub fn key_block_len(&self) -> usize {
        match *self {
            Security::None => 0,
            Security::Authenticated { key_len } => usize::from(key_len) + seal::NONCE_SALT_LEN,
            Security::Encrypted { key_len, .. } => {
                seal::WRAP_NONCE_LEN + usize::from(key_len) + seal::NONCE_SALT_LEN + seal::TAG_LEN
            }
        }
    }

    fn code(&self) -> u8 {
        match self {
            Security::None => 0,
            Security::Authenticated { .. } => 1,
            Security::Encrypted { .. } => 2,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LostEntry {
    pub channel: u16,
    pub flow: u32,
    pub block: u64,
    /// Symbols the receiver still needs.
    pub needed: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Hello {
        nonce: u64,
    },
    Cookie {
        nonce: u64,
        cookie: Cookie,
    },
    Join {
        nonce: u64,
        cookie: Cookie,
        stay: Stay,
        /// Take channels that have a group from the group (no unicast copies).
        multicast: bool,
        token: Vec<u8>,
        /// Empty: every channel.
        channels: Vec<String>,
    },
    Joined {
        nonce: u64,
        session: u64,
        /// Nanoseconds from now the session lasts unless refreshed.
        expires_in: u64,
        security: Security,
        channels: Vec<ChannelInfo>,
        /// Each channel's key block ([`Security::key_block_len`] bytes), in channel order.
        keys: Vec<Vec<u8>>,
    },
    Refused {
        nonce: u64,
        reason: Reason,
        text: String,
    },
    Leave {
        session: u64,
    },
    Lost {
        session: u64,
        entries: Vec<LostEntry>,
    },
    End {
        session: u64,
        channel: u16,
    },
    /// A joined channel's name or caps changed (or became known).
    Channel {
        session: u64,
        info: ChannelInfo,
    },
    /// The share of a channel's packets the receiver loses lately.
    Loss {
        session: u64,
        channel: u16,
        /// In units of 1/10000, at most [`MAX_LOSS`].
        loss: u16,
    },
}

/// The highest loss LOSS carries: 50 % (in units of 1/10000).
pub const MAX_LOSS: u16 = 5000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseError {
    /// Not this protocol: other magic (or too short to have one).
    Foreign,
    /// Another version of this protocol.
    Version(u8),
    /// Truncated, unknown type, bad length or value, trailing bytes.
    Malformed,
}

/// The top bit of DATA's 6-byte counter field: the datagram went to one receiver only, in
/// answer to its LOST (an edge relay passes it on to the receiver that asked).
pub const DATA_ANSWER: u64 = 1 << 47;

/// A DATA datagram: a channel's packet. Parsed, `payload` is the body as it came (sealed:
/// the packet, encrypted or not, then the tag); from [`crate::Client`], the packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Data<'a> {
    pub channel: u16,
    /// The counter, without the answer bit.
    pub counter: u64,
    /// Sent to this receiver only, in answer to its LOST.
    pub answer: bool,
    pub payload: &'a [u8],
}

/// The 12 bytes put before the body of every DATA datagram of `channel`: the counter (below
/// 2^47) in 6 bytes, its top bit set for an `answer`.
pub fn data_header(channel: u16, counter: u64, answer: bool) -> [u8; DATA_HEADER_LEN] {
    let c = channel.to_be_bytes();
    let flag = if answer { DATA_ANSWER } else { 0 };
    let n = ((counter & (DATA_ANSWER - 1)) | flag).to_be_bytes();
    [
        MAGIC[0], MAGIC[1], VERSION, DATA, c[0], c[1], n[2], n[3], n[4], n[5], n[6], n[7],
    ]
}

/// What a datagram is, from its first bytes.
pub enum Datagram<'a> {
    Data(Data<'a>),
    Control(Message),
}

pub fn parse(b: &[u8]) -> Result<Datagram<'_>, ParseError> {
    if b.len() < HEADER_LEN || b[..2] != MAGIC {
        return Err(ParseError::Foreign);
    }
    if b[2] != VERSION {
        return Err(ParseError::Version(b[2]));
    }
    if b[3] == DATA {
        if b.len() < DATA_HEADER_LEN {
            return Err(ParseError::Malformed);
        }
        let mut counter = [0u8; 8];
        counter[2..].copy_from_slice(&b[6..DATA_HEADER_LEN]);
        let counter = u64::from_be_bytes(counter);
        return Ok(Datagram::Data(Data {
            channel: u16::from_be_bytes([b[4], b[5]]),
            counter: counter & (DATA_ANSWER - 1),
            answer: counter & DATA_ANSWER != 0,
            payload: &b[DATA_HEADER_LEN..],
        }));
    }
    if b.len() > MAX_CONTROL_LEN {
        return Err(ParseError::Malformed);
    }
    parse_control(b[3], &b[HEADER_LEN..])
        .map(Datagram::Control)
        .ok_or(ParseError::Malformed)
}

/// A control message only (DATA is malformed here).
pub fn parse_message(b: &[u8]) -> Result<Message, ParseError> {
    match parse(b)? {
        Datagram::Control(m) => Ok(m),
        Datagram::Data(_) => Err(ParseError::Malformed),
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }
    fn u8(&mut self) -> Option<u8> {
        self.bytes(1).map(|b| b[0])
    }
    fn u16(&mut self) -> Option<u16> {
        self.bytes(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Option<u32> {
        self.bytes(4)
            .map(|b| u32::from_be_bytes(b.try_into().unwrap()))
    }
    fn u64(&mut self) -> Option<u64> {
        self.bytes(8)
            .map(|b| u64::from_be_bytes(b.try_into().unwrap()))
    }
    fn cookie(&mut self) -> Option<Cookie> {
        self.bytes(COOKIE_LEN).map(|b| b.try_into().unwrap())
    }
    /// UTF-8 text with a one-byte length, at most `max` bytes.
    fn text8(&mut self, max: usize) -> Option<String> {
        let n = usize::from(self.u8()?);
        if n > max {
            return None;
        }
        String::from_utf8(self.bytes(n)?.to_vec()).ok()
    }
    fn name(&mut self) -> Option<String> {
        self.text8(MAX_NAME_LEN).filter(|n| !n.is_empty())
    }
    fn channel_info(&mut self) -> Option<ChannelInfo> {
        let index = self.u16()?;
        let name = self.name()?;
        let n = usize::from(self.u16()?);
        if n > MAX_CAPS_LEN {
            return None;
        }
        let caps = String::from_utf8(self.bytes(n)?.to_vec()).ok()?;
        let ip = match self.u8()? {
            GROUP_NONE => None,
            GROUP_V4 => Some(IpAddr::V4(Ipv4Addr::from(self.u32()?))),
            GROUP_V6 => {
                let b: [u8; 16] = self.bytes(16)?.try_into().unwrap();
                Some(IpAddr::V6(Ipv6Addr::from(b)))
            }
            _ => return None,
        };
        let group = match ip {
            None => None,
            // Only a multicast address is a group: anything else would turn receivers into
            // senders of joins to an arbitrary host.
            Some(ip) if ip.is_multicast() => Some(SocketAddr::new(ip, self.u16()?)),
            Some(_) => return None,
        };
        Some(ChannelInfo {
            index,
            name,
            caps,
            group,
        })
    }

    fn security(&mut self) -> Option<Security> {
        let code = self.u8()?;
        if code == 0 {
            return Some(Security::None);
        }
        let key_len = self.u8()?;
        seal::KeyLen::new(u32::from(key_len))?;
        match code {
            1 => Some(Security::Authenticated { key_len }),
            2 => {
                let kdf_salt = self.bytes(seal::KDF_SALT_LEN)?.try_into().ok()?;
                let iterations = self.u32()?;
                (1..=seal::MAX_KDF_ITERATIONS)
                    .contains(&iterations)
                    .then_some(Security::Encrypted {
                        key_len,
                        kdf_salt,
                        iterations,
                    })
            }
            _ => None,
        }
    }

    fn end(self) -> Option<()> {
        self.0.is_empty().then_some(())
    }
}

fn parse_control(kind: u8, body: &[u8]) -> Option<Message> {
    let mut r = Reader(body);
    let m = match kind {
        HELLO => {
            let nonce = r.u64()?;
            // Padding: zeros, making the datagram at least HELLO_LEN bytes.
            if HEADER_LEN + body.len() < HELLO_LEN || r.0.iter().any(|&b| b != 0) {
                return None;
            }
            return Some(Message::Hello { nonce });
        }
        COOKIE => Message::Cookie {
            nonce: r.u64()?,
            cookie: r.cookie()?,
        },
        JOIN => {
            let nonce = r.u64()?;
            let cookie = r.cookie()?;
            let flags = r.u8()?;
            if flags & !(JOIN_UNTIL | JOIN_MULTICAST) != 0 {
                return None;
            }
            let time = r.u64()?;
            let stay = if flags & JOIN_UNTIL != 0 {
                Stay::Until(time)
            } else {
                Stay::For(time)
            };
            let n = usize::from(r.u8()?);
            let token = r.bytes(n)?.to_vec();
            let count = usize::from(r.u8()?);
            if count > MAX_JOIN_CHANNELS {
                return None;
            }
            let mut channels = Vec::with_capacity(count);
            for _ in 0..count {
                channels.push(r.name()?);
            }
            Message::Join {
                nonce,
                cookie,
                stay,
                multicast: flags & JOIN_MULTICAST != 0,
                token,
                channels,
            }
        }
        JOINED => {
            let nonce = r.u64()?;
            let session = r.u64()?;
            let expires_in = r.u64()?;
            let security = r.security()?;
            let count = usize::from(r.u8()?);
            let mut channels = Vec::with_capacity(count.min(MAX_JOIN_CHANNELS));
            let mut keys = Vec::with_capacity(count.min(MAX_JOIN_CHANNELS));
            for _ in 0..count {
                channels.push(r.channel_info()?);
                keys.push(r.bytes(security.key_block_len())?.to_vec());
            }
            Message::Joined {
                nonce,
                session,
                expires_in,
                security,
                channels,
                keys,
            }
        }
        REFUSED => Message::Refused {
            nonce: r.u64()?,
            reason: Reason::from_u8(r.u8()?)?,
            text: r.text8(MAX_REASON_LEN)?,
        },
        LEAVE => Message::Leave { session: r.u64()? },
        LOST => {
            let session = r.u64()?;
            let count = usize::from(r.u8()?);
            if count == 0 || count > MAX_LOST_ENTRIES {
                return None;
            }
            let mut entries = Vec::with_capacity(count);
            for _ in 0..count {
                entries.push(LostEntry {
                    channel: r.u16()?,
                    flow: r.u32()?,
                    block: r.u64()?,
                    needed: r.u16()?,
                });
            }
            Message::Lost { session, entries }
        }
        END => Message::End {
            session: r.u64()?,
            channel: r.u16()?,
        },
        CHANNEL => Message::Channel {
            session: r.u64()?,
            info: r.channel_info()?,
        },
        LOSS => Message::Loss {
            session: r.u64()?,
            channel: r.u16()?,
            loss: Some(r.u16()?).filter(|&l| l <= MAX_LOSS)?,
        },
        _ => return None,
    };
    r.end()?;
    Some(m)
}

fn put_text8(out: &mut Vec<u8>, s: &[u8], max: usize) {
    let s = &s[..s.len().min(max)];
    out.push(s.len() as u8);
    out.extend_from_slice(s);
}

fn put_channel_info(out: &mut Vec<u8>, c: &ChannelInfo) {
    out.extend_from_slice(&c.index.to_be_bytes());
    put_text8(out, c.name.as_bytes(), MAX_NAME_LEN);
    let caps = &c.caps.as_bytes()[..c.caps.len().min(MAX_CAPS_LEN)];
    out.extend_from_slice(&(caps.len() as u16).to_be_bytes());
    out.extend_from_slice(caps);
    match c.group {
        None => out.push(GROUP_NONE),
        Some(SocketAddr::V4(a)) => {
            out.push(GROUP_V4);
            out.extend_from_slice(&a.ip().octets());
            out.extend_from_slice(&a.port().to_be_bytes());
        }
        Some(SocketAddr::V6(a)) => {
            out.push(GROUP_V6);
            out.extend_from_slice(&a.ip().octets());
            out.extend_from_slice(&a.port().to_be_bytes());
        }
    }
}

/// Writes `m`. Names, tokens, caps and texts longer than the format allows are cut, lists
/// longer than it allows are cut: the caller checks them beforehand where that matters.
pub fn write(m: &Message) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(&MAGIC);
    out.push(VERSION);
    match m {
        Message::Hello { nonce } => {
            out.push(HELLO);
            out.extend_from_slice(&nonce.to_be_bytes());
            out.resize(HELLO_LEN, 0);
        }
        Message::Cookie { nonce, cookie } => {
            out.push(COOKIE);
            out.extend_from_slice(&nonce.to_be_bytes());
            out.extend_from_slice(cookie);
        }
        Message::Join {
            nonce,
            cookie,
            stay,
            multicast,
            token,
            channels,
        } => {
            out.push(JOIN);
            out.extend_from_slice(&nonce.to_be_bytes());
            out.extend_from_slice(cookie);
            let (flags, time) = match *stay {
                Stay::For(d) => (0, d),
                Stay::Until(t) => (JOIN_UNTIL, t),
            };
            out.push(flags | if *multicast { JOIN_MULTICAST } else { 0 });
            out.extend_from_slice(&time.to_be_bytes());
            put_text8(&mut out, token, MAX_TOKEN_LEN);
            let channels = &channels[..channels.len().min(MAX_JOIN_CHANNELS)];
            out.push(channels.len() as u8);
            for c in channels {
                put_text8(&mut out, c.as_bytes(), MAX_NAME_LEN);
            }
        }
        Message::Joined {
            nonce,
            session,
            expires_in,
            security,
            channels,
            keys,
        } => {
            out.push(JOINED);
            out.extend_from_slice(&nonce.to_be_bytes());
            out.extend_from_slice(&session.to_be_bytes());
            out.extend_from_slice(&expires_in.to_be_bytes());
            out.push(security.code());
            match security {
                Security::None => {}
                Security::Authenticated { key_len } => out.push(*key_len),
                Security::Encrypted {
                    key_len,
                    kdf_salt,
                    iterations,
                } => {
                    out.push(*key_len);
                    out.extend_from_slice(kdf_salt);
                    out.extend_from_slice(&iterations.to_be_bytes());
                }
            }
            let channels = &channels[..channels.len().min(usize::from(u8::MAX))];
            out.push(channels.len() as u8);
            let block = security.key_block_len();
            for (i, c) in channels.iter().enumerate() {
                put_channel_info(&mut out, c);
                // A missing or short key block is written as zeros: the caller gives them.
                let key = keys.get(i).map_or(&[][..], |k| &k[..k.len().min(block)]);
                out.extend_from_slice(key);
                out.resize(out.len() + block - key.len(), 0);
            }
        }
        Message::Refused {
            nonce,
            reason,
            text,
        } => {
            out.push(REFUSED);
            out.extend_from_slice(&nonce.to_be_bytes());
            out.push(*reason as u8);
            put_text8(&mut out, text.as_bytes(), MAX_REASON_LEN);
        }
        Message::Leave { session } => {
            out.push(LEAVE);
            out.extend_from_slice(&session.to_be_bytes());
        }
        Message::Lost { session, entries } => {
            out.push(LOST);
            out.extend_from_slice(&session.to_be_bytes());
            let entries = &entries[..entries.len().min(MAX_LOST_ENTRIES)];
            out.push(entries.len() as u8);
            for e in entries {
                out.extend_from_slice(&e.channel.to_be_bytes());
                out.extend_from_slice(&e.flow.to_be_bytes());
                out.extend_from_slice(&e.block.to_be_bytes());
                out.extend_from_slice(&e.needed.to_be_bytes());
            }
        }
        Message::End { session, channel } => {
            out.push(END);
            out.extend_from_slice(&session.to_be_bytes());
            out.extend_from_slice(&channel.to_be_bytes());
        }
        Message::Channel { session, info } => {
            out.push(CHANNEL);
            out.extend_from_slice(&session.to_be_bytes());
            put_channel_info(&mut out, info);
        }
        Message::Loss {
            session,
            channel,
            loss,
        } => {
            out.push(LOSS);
            out.extend_from_slice(&session.to_be_bytes());
            out.extend_from_slice(&channel.to_be_bytes());
            out.extend_from_slice(&(*loss).min(MAX_LOSS).to_be_bytes());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> Vec<Message> {
        vec![
            Message::Hello { nonce: 7 },
            Message::Cookie {
                nonce: 7,
                cookie: [9; COOKIE_LEN],
            },
            Message::Join {
                nonce: 1,
                cookie: [3; COOKIE_LEN],
                stay: Stay::For(30_000_000_000),
                multicast: false,
                token: b"secret token".to_vec(),
                channels: vec!["hd".into(), "sd".into()],
            },
            Message::Join {
                nonce: 1,
                cookie: [3; COOKIE_LEN],
                stay: Stay::Until(u64::MAX),
                multicast: true,
                token: vec![],
                channels: vec![],
            },
            Message::Joined {
                nonce: 1,
                session: u64::MAX,
                expires_in: 5,
                security: Security::None,
                channels: vec![ChannelInfo {
                    index: 3,
                    name: "hd".into(),
                    caps: "application/x-fanout-fec".into(),
                    group: Some("239.1.2.3:5700".parse().unwrap()),
                }],
                keys: vec![vec![]],
            },
            Message::Joined {
                nonce: 1,
                session: 2,
                expires_in: 5,
                security: Security::Authenticated { key_len: 16 },
                channels: vec![ChannelInfo {
                    index: 3,
                    name: "hd".into(),
                    caps: String::new(),
                    group: None,
                }],
                keys: vec![vec![7; 22]],
            },
            Message::Joined {
                nonce: 1,
                session: 2,
                expires_in: 5,
                security: Security::Encrypted {
                    key_len: 32,
                    kdf_salt: [9; seal::KDF_SALT_LEN],
                    iterations: 100_000,
                },
                channels: vec![
                    ChannelInfo {
                        index: 3,
                        name: "hd".into(),
                        caps: String::new(),
                        group: None,
                    },
                    ChannelInfo {
                        index: 4,
                        name: "sd".into(),
                        caps: String::new(),
                        group: None,
                    },
                ],
                keys: vec![vec![1; 66], vec![2; 66]],
            },
            Message::Refused {
                nonce: 2,
                reason: Reason::NotAuthorized,
                text: "no".into(),
            },
            Message::Leave { session: 4 },
            Message::Lost {
                session: 4,
                entries: vec![LostEntry {
                    channel: 1,
                    flow: 2,
                    block: 3,
                    needed: 4,
                }],
            },
            Message::End {
                session: 4,
                channel: 9,
            },
            Message::Channel {
                session: 4,
                info: ChannelInfo {
                    index: 1,
                    name: "sd".into(),
                    caps: "video/mpegts".into(),
                    group: Some("[ff15::1]:5701".parse().unwrap()),
                },
            },
            Message::Channel {
                session: 4,
                info: ChannelInfo {
                    index: 2,
                    name: "x".into(),
                    caps: String::new(),
                    group: None,
                },
            },
            Message::Loss {
                session: 4,
                channel: 2,
                loss: 1000,
            },
        ]
    }

    #[test]
    fn a_loss_above_half_is_malformed() {
        let mut b = write(&Message::Loss {
            session: 1,
            channel: 0,
            loss: MAX_LOSS,
        });
        assert!(parse_message(&b).is_ok());
        b[14..16].copy_from_slice(&(MAX_LOSS + 1).to_be_bytes());
        assert!(parse_message(&b).is_err());
    }

    #[test]
    fn every_message_round_trips() {
        for m in all() {
            let b = write(&m);
            assert!(b.len() <= MAX_CONTROL_LEN);
            assert_eq!(parse_message(&b), Ok(m));
        }
    }

    #[test]
    fn every_truncation_and_every_extra_byte_is_malformed() {
        for m in all() {
            let b = write(&m);
            let shortest = if matches!(m, Message::Hello { .. }) {
                HELLO_LEN
            } else {
                b.len()
            };
            for n in 0..shortest {
                assert!(parse_message(&b[..n]).is_err(), "{m:?} cut at {n}");
            }
            let mut longer = b.clone();
            longer.push(1);
            assert!(parse_message(&longer).is_err(), "{m:?} with a byte more");
        }
    }

    #[test]
    fn a_cookie_is_never_larger_than_the_hello_it_answers() {
        let hello = write(&Message::Hello { nonce: 1 });
        let cookie = write(&Message::Cookie {
            nonce: 1,
            cookie: [0; COOKIE_LEN],
        });
        assert!(cookie.len() <= hello.len());
        assert_eq!(hello.len(), HELLO_LEN);
    }

    #[test]
    fn foreign_traffic_is_told_apart_on_its_first_bytes() {
        assert_eq!(parse(b"FO\x02\x01rest").err(), Some(ParseError::Foreign));
        assert_eq!(parse(b"F").err(), Some(ParseError::Foreign));
        assert_eq!(parse(b"FS\x01\x01....").err(), Some(ParseError::Version(1)));
        assert_eq!(parse(b"FS\x02\x63").err(), Some(ParseError::Malformed));
    }

    #[test]
    fn data_carries_its_channel_counter_and_body() {
        let mut b = data_header(513, 0x0102_0304_0506, true).to_vec();
        b.extend_from_slice(b"packet");
        match parse(&b) {
            Ok(Datagram::Data(d)) => {
                assert_eq!(d.channel, 513);
                assert_eq!(d.counter, 0x0102_0304_0506);
                assert!(d.answer);
                assert_eq!(d.payload, b"packet");
            }
            _ => panic!("not data"),
        }
        assert_eq!(b[6], 0x81, "the answer bit is the counter field's top bit");
        assert!(parse(&b[..DATA_HEADER_LEN - 1]).is_err());
    }

    #[test]
    fn joined_key_blocks_have_the_length_their_security_says() {
        let m = all().into_iter().nth(5).unwrap();
        let mut b = write(&m);
        assert!(parse_message(&b).is_ok());
        b.pop();
        assert!(parse_message(&b).is_err(), "a short key block");
        // A key length that is not 16, 24 or 32.
        let mut b = write(&m);
        b[4 + 24 + 1] = 20;
        assert!(parse_message(&b).is_err());
    }

    #[test]
    fn a_group_that_is_not_multicast_is_malformed() {
        let mut b = write(&Message::Channel {
            session: 1,
            info: ChannelInfo {
                index: 0,
                name: "a".into(),
                caps: String::new(),
                group: Some("239.0.0.1:9".parse().unwrap()),
            },
        });
        assert!(parse_message(&b).is_ok());
        let at = b.len() - 6;
        b[at..at + 4].copy_from_slice(&[10, 0, 0, 1]);
        assert!(parse_message(&b).is_err());
    }

    #[test]
    fn limits_are_enforced() {
        let mut lost = write(&Message::Lost {
            session: 1,
            entries: vec![],
        });
        assert!(parse_message(&lost).is_err(), "an empty LOST");
        lost[12] = (MAX_LOST_ENTRIES + 1) as u8;
        lost.resize(13 + 16 * (MAX_LOST_ENTRIES + 1), 0);
        assert!(parse_message(&lost).is_err(), "too many LOST entries");
        let mut hello = write(&Message::Hello { nonce: 1 });
        hello[HELLO_LEN - 1] = 1;
        assert!(parse_message(&hello).is_err(), "non-zero padding");
        let oversized = [b"FS\x02\x01".as_slice(), &[0; MAX_CONTROL_LEN]].concat();
        assert!(parse_message(&oversized).is_err());
    }
}
