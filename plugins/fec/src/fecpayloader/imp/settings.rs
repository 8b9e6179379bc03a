// SPDX-License-Identifier: MPL-2.0

//! `fec-payloader`'s properties: their specs, defaults (from `fanout-fec`) and values.

use std::time::Duration;

use fanout_element_kit::settings::{put, unknown, Properties, PropertyError};
use fanout_fec::carousel::DEFAULT_CAROUSEL_BITRATE;
use fanout_fec::time::nanos;
use fanout_fec::{Codec, Mode, SenderConfig};
use gst::glib;
use gst::prelude::*;

use crate::{FecCodec, FecMode};

use fanout_fec::sender::{
    DEFAULT_DESCRIPTION_INTERVAL, DEFAULT_DESCRIPTION_TIME, DEFAULT_MAX_BLOCK_TIME, DEFAULT_MAX_K,
    DEFAULT_REPAIR_PERCENT, DEFAULT_STREAM_WINDOW, DEFAULT_SYMBOL_SIZE, DEFAULT_WINDOW_TIME,
};

pub const PROP_CODEC: &str = "codec";
pub const PROP_MODE: &str = "mode";
pub const PROP_SYMBOL_SIZE: &str = "symbol-size";
pub const PROP_MAX_BLOCK_SYMBOLS: &str = "max-block-symbols";
pub const PROP_MAX_BLOCK_TIME: &str = "max-block-time";
pub const PROP_REPAIR_PERCENT: &str = "repair-percent";
pub const PROP_FLOW: &str = "flow";
pub const PROP_FIRST_REPAIR_ESI: &str = "first-repair-esi";
pub const PROP_SEND_SOURCE: &str = "send-source";
pub const PROP_WINDOW_BLOCKS: &str = "window-blocks";
pub const PROP_DESCRIPTION_INTERVAL: &str = "description-interval";
pub const PROP_DESCRIPTION_TIME: &str = "description-time";
pub const PROP_REPAIR_LINGER: &str = "repair-linger";
pub const PROP_CAROUSEL_ROUNDS: &str = "carousel-rounds";
pub const PROP_CAROUSEL_BITRATE: &str = "carousel-bitrate";

/// After EOS, how long the last blocks stay answerable when a session-sink is downstream:
/// covers a receiver's default `latency` (200 ms) with room for a second round of repair.
pub const DEFAULT_REPAIR_LINGER: u64 = 500_000_000;

#[derive(Debug, Clone)]
pub struct Settings {
    pub codec: FecCodec,
    pub mode: FecMode,
    pub symbol_size: u32,
    pub max_block_symbols: u32,
    pub max_block_time: u64,
    pub repair_percent: u32,
    pub flow: u32,
    pub first_repair_esi: u32,
    pub send_source: bool,
    pub window_blocks: u32,
    pub description_interval: u32,
    pub description_time: u64,
    pub carousel_rounds: i32,
    pub carousel_bitrate: u64,
    pub repair_linger: u64,
    /// Set by the user: applies whatever is downstream.
    pub repair_linger_set: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            codec: FecCodec::RaptorQ,
            mode: FecMode::Stream,
            symbol_size: DEFAULT_SYMBOL_SIZE.into(),
            max_block_symbols: DEFAULT_MAX_K.into(),
            max_block_time: nanos(DEFAULT_MAX_BLOCK_TIME),
            repair_percent: DEFAULT_REPAIR_PERCENT,
            flow: 0,
            first_repair_esi: 0,
            send_source: true,
            window_blocks: 0,
            description_interval: DEFAULT_DESCRIPTION_INTERVAL,
            description_time: nanos(DEFAULT_DESCRIPTION_TIME),
            carousel_rounds: -1,
            carousel_bitrate: DEFAULT_CAROUSEL_BITRATE,
            repair_linger: DEFAULT_REPAIR_LINGER,
            repair_linger_set: false,
        }
    }
}

impl Settings {
    pub fn sender_config(&self) -> SenderConfig {
        let mode = match self.mode {
            FecMode::Stream => Mode::Stream,
            FecMode::Carousel => Mode::Carousel,
        };
        SenderConfig {
            flow: self.flow,
            codec: match self.codec {
                FecCodec::RaptorQ => Codec::RaptorQ,
                FecCodec::ReedSolomon => Codec::ReedSolomon,
                FecCodec::None => Codec::None,
            },
            symbol_size: self.symbol_size.min(u32::from(u16::MAX)) as u16,
            max_k: self.max_block_symbols.min(u32::from(u16::MAX)) as u16,
            repair_percent: self.repair_percent,
            mode,
            window: match (self.window_blocks, mode) {
                (0, Mode::Stream) => DEFAULT_STREAM_WINDOW,
                (n, _) => n as usize,
            },
            // A burst (a catch-up after a hold) stays repairable for a second besides.
            window_time: DEFAULT_WINDOW_TIME,
            first_repair: self.first_repair_esi,
            send_source: self.send_source,
            description_interval: self.description_interval.max(1),
            description_time: Duration::from_nanos(self.description_time),
            max_block_time: Duration::from_nanos(self.max_block_time),
        }
    }
}

impl Settings {
    pub fn param_specs() -> Vec<glib::ParamSpec> {
        vec![
                glib::ParamSpecEnum::builder_with_default(PROP_CODEC, FecCodec::RaptorQ)
                    .nick("Codec")
                    .blurb("Fountain code: raptorq (RFC 6330, rateless), reed-solomon (exactly any K, fixed recovery pool), none (source symbols only)")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecEnum::builder_with_default(PROP_MODE, FecMode::Stream)
                    .nick("Mode")
                    .blurb("stream: each block once, as source plus repair symbols; carousel: kept blocks keep coming round with fresh repair symbols, for late joiners")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder(PROP_SYMBOL_SIZE)
                    .nick("Symbol size")
                    .blurb("Bytes per symbol (T), a multiple of 8; one symbol per packet, which stays within a 1500-byte MTU up to 1408")
                    .minimum(8)
                    .maximum(fanout_fec::packet::MAX_SYMBOL_SIZE as u32)
                    .default_value(DEFAULT_SYMBOL_SIZE.into())
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder(PROP_MAX_BLOCK_SYMBOLS)
                    .nick("Max block symbols")
                    .blurb("Source symbols per full block (K): larger blocks protect better and cost more latency and CPU")
                    .minimum(1)
                    .maximum(u32::from(fanout_fec::MAX_SOURCE_SYMBOLS))
                    .default_value(DEFAULT_MAX_K.into())
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt64::builder(PROP_MAX_BLOCK_TIME)
                    .nick("Max block time")
                    .blurb("A block closes once its buffers span this long (ns; input with timestamps), or when full; with live input it waits at most this long on the pipeline clock for more; 0 = only when full")
                    .default_value(nanos(DEFAULT_MAX_BLOCK_TIME))
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder(PROP_REPAIR_PERCENT)
                    .nick("Repair percent")
                    .blurb("Repair symbols sent with a full block, in % of its source symbols; smaller blocks get enough more to survive the same loss")
                    .maximum(1000)
                    .default_value(DEFAULT_REPAIR_PERCENT)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder(PROP_FLOW)
                    .nick("Flow")
                    .blurb("Flow id carried in every packet, so several flows can share one transport")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder(PROP_FIRST_REPAIR_ESI)
                    .nick("First repair ESI")
                    .maximum(fanout_fec::sender::MAX_FIRST_REPAIR - 1)
                    .blurb("Index of the first repair symbol of each block: payloaders of one flow given disjoint ranges send symbols a receiver can merge")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoolean::builder(PROP_SEND_SOURCE)
                    .nick("Send source symbols")
                    .blurb("Send each block's source symbols; off for a payloader that adds repair symbols to another's")
                    .default_value(true)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder(PROP_WINDOW_BLOCKS)
                    .nick("Window blocks")
                    .blurb("Blocks kept after sending, to answer repair requests and to go round in carousel mode; 0 = 16 in stream mode (and, besides, every block sent in the last second, up to 64 MB: a burst stays repairable), all in carousel mode")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder(PROP_DESCRIPTION_INTERVAL)
                    .nick("Description interval")
                    .blurb("Repeat the stream description (caps, codec parameters) after every this many symbol packets, for receivers joining late")
                    .minimum(1)
                    .default_value(DEFAULT_DESCRIPTION_INTERVAL)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt64::builder(PROP_DESCRIPTION_TIME)
                    .nick("Description time")
                    .blurb("Stream mode: once the first quicker repeats are over, repeat the stream description no sooner than this much of the stream (ns, by the buffers' timestamps) after the last one, whatever description-interval says: a fast stream pays for fewer (0, or buffers without timestamps = by description-interval only)")
                    .maximum(10_000_000_000)
                    .default_value(nanos(DEFAULT_DESCRIPTION_TIME))
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt64::builder(PROP_REPAIR_LINGER)
                    .nick("Repair linger")
                    .blurb("Stream mode: after EOS, how long (ns) the last blocks are still answered for repair requests before EOS goes downstream, so receivers can repair the last blocks. Unset, the default applies only where downstream can ask for repair (a session-sink), else EOS goes on at once; set, it always applies. 0: EOS at once")
                    .maximum(60_000_000_000)
                    .default_value(DEFAULT_REPAIR_LINGER)
                    .build(),
                glib::ParamSpecInt::builder(PROP_CAROUSEL_ROUNDS)
                    .nick("Carousel rounds")
                    .blurb("Carousel mode: rounds over the kept blocks after the input ends, before EOS goes on (-1 = until stopped)")
                    .minimum(-1)
                    .default_value(-1)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt64::builder(PROP_CAROUSEL_BITRATE)
                    .nick("Carousel bitrate")
                    .blurb("Carousel mode: bits per second of the rounds after the input ends (0 = as fast as downstream takes them)")
                    .default_value(DEFAULT_CAROUSEL_BITRATE)
                    .mutable_ready()
                    .build(),
        ]
    }
}

impl Properties for Settings {
    fn set(&mut self, name: &str, v: &glib::Value) -> Result<(), PropertyError> {
        let s = self;
        match name {
            PROP_CODEC => put(&mut s.codec, name, v)?,
            PROP_MODE => put(&mut s.mode, name, v)?,
            PROP_SYMBOL_SIZE => put(&mut s.symbol_size, name, v)?,
            PROP_MAX_BLOCK_SYMBOLS => put(&mut s.max_block_symbols, name, v)?,
            PROP_MAX_BLOCK_TIME => put(&mut s.max_block_time, name, v)?,
            PROP_REPAIR_PERCENT => put(&mut s.repair_percent, name, v)?,
            PROP_FLOW => put(&mut s.flow, name, v)?,
            PROP_FIRST_REPAIR_ESI => put(&mut s.first_repair_esi, name, v)?,
            PROP_SEND_SOURCE => put(&mut s.send_source, name, v)?,
            PROP_WINDOW_BLOCKS => put(&mut s.window_blocks, name, v)?,
            PROP_DESCRIPTION_INTERVAL => put(&mut s.description_interval, name, v)?,
            PROP_DESCRIPTION_TIME => put(&mut s.description_time, name, v)?,
            PROP_CAROUSEL_ROUNDS => put(&mut s.carousel_rounds, name, v)?,
            PROP_REPAIR_LINGER => {
                put(&mut s.repair_linger, name, v)?;
                s.repair_linger_set = true;
            }
            PROP_CAROUSEL_BITRATE => put(&mut s.carousel_bitrate, name, v)?,
            _ => return unknown(name),
        }
        Ok(())
    }

    fn get(&self, name: &str) -> Result<glib::Value, PropertyError> {
        let s = self;
        Ok(match name {
            PROP_CODEC => s.codec.to_value(),
            PROP_MODE => s.mode.to_value(),
            PROP_SYMBOL_SIZE => s.symbol_size.to_value(),
            PROP_MAX_BLOCK_SYMBOLS => s.max_block_symbols.to_value(),
            PROP_MAX_BLOCK_TIME => s.max_block_time.to_value(),
            PROP_REPAIR_PERCENT => s.repair_percent.to_value(),
            PROP_FLOW => s.flow.to_value(),
            PROP_FIRST_REPAIR_ESI => s.first_repair_esi.to_value(),
            PROP_SEND_SOURCE => s.send_source.to_value(),
            PROP_WINDOW_BLOCKS => s.window_blocks.to_value(),
            PROP_DESCRIPTION_INTERVAL => s.description_interval.to_value(),
            PROP_DESCRIPTION_TIME => s.description_time.to_value(),
            PROP_CAROUSEL_ROUNDS => s.carousel_rounds.to_value(),
            PROP_REPAIR_LINGER => s.repair_linger.to_value(),
            PROP_CAROUSEL_BITRATE => s.carousel_bitrate.to_value(),
            _ => return unknown(name),
        })
    }
}
