// SPDX-License-Identifier: MPL-2.0

//! What a [`Server`](super::Server) is configured with, and its defaults (`session-sink`'s
//! property defaults too).

use std::time::Duration;

use crate::seal::{KeyLen, DEFAULT_KDF_ITERATIONS};

pub const DEFAULT_COOKIE_BUCKET: Duration = Duration::from_secs(30);
/// A receiver that vanished (its sockets gone, nothing said) leaves within this: every
/// receiver refreshes before it, and a JOIN asking for longer gets this.
pub const DEFAULT_MAX_STAY: Duration = Duration::from_secs(60);
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
pub const DEFAULT_GROUP_WINDOW: Duration = Duration::from_millis(15);
/// After a group repair, reports of that block asking no more than it sent are taken as
/// sent before it arrived, for this long: a round trip on a LAN with room to spare. Any
/// longer and it drops the reports of receivers that lost some of the repair itself (a
/// receiver's report counts down the symbols that arrive meanwhile, so a report sent after
/// the repair arrived asks only for what is still missing); over a longer path, a report
/// already on its way costs one more repair at worst.
pub const DEFAULT_GROUP_HOLD: Duration = Duration::from_millis(5);
/// Blocks, in percent, that repair sent up front for a told loss finishes without a round
/// trip: the rule a LOST's `needed` follows too (`fanout_fec::sizing`).
pub const DEFAULT_TOP_UP_CONFIDENCE: f64 = 99.0;

#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Key of the cookie and session-id HMACs.
    pub secret: Vec<u8>,
    pub max_clients: usize,
    /// Receivers from one IP address at most (0: no limit).
    pub max_clients_per_host: usize,
    /// A cookie lives one to two buckets.
    pub cookie_bucket: Duration,
    /// The longest a JOIN may stay; longer ones are cut to it.
    pub max_stay: Duration,
    /// Repair symbols a second one receiver may have (token bucket rate, and its depth).
    pub repair_rate: u32,
    pub repair_burst: u32,
    /// All of a channel's repairs together (to receivers and its group), per 100 packets of
    /// the channel ([`Server::note_sent`](super::Server::note_sent)); 0: no such cap.
    pub channel_repair_percent: u32,
    /// Multicast repair: how long reports of a block are gathered, and how long after a
    /// group repair reports it already covers are dropped.
    pub group_window: Duration,
    pub group_hold: Duration,
    /// Repair up front for a loss a receiver told is sized so that, with the block's own
    /// symbols, enough arrive in this percent of blocks (the rest is asked for with LOST).
    pub top_up_confidence: f64,
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
            top_up_confidence: DEFAULT_TOP_UP_CONFIDENCE,
            authenticate: true,
            passphrase: None,
            key_len: KeyLen::DEFAULT,
            kdf_iterations: DEFAULT_KDF_ITERATIONS,
        }
    }
}
