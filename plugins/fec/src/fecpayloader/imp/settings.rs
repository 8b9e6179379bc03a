// SPDX-License-Identifier: MPL-2.0

//! `fec-payloader`'s properties: their specs, defaults (from `fanout-fec`) and values.

use std::time::Duration;

use fanout_fec::carousel::DEFAULT_CAROUSEL_BITRATE;
use fanout_fec::time::nanos;
use fanout_fec::{Codec, Mode, SenderConfig};
use gst::glib;
use gst::prelude::*;

use crate::{FecCodec, FecMode};

use fanout_fec::sender::{
    DEFAULT_DESCRIPTION_INTERVAL, DEFAULT_MAX_BLOCK_TIME, DEFAULT_MAX_K, DEFAULT_REPAIR_PERCENT,
    DEFAULT_STREAM_WINDOW, DEFAULT_SYMBOL_SIZE, DEFAULT_WINDOW_TIME,
};

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
            max_block_time: Duration::from_nanos(self.max_block_time),
        }
    }
}

impl Settings {
    pub fn param_specs() -> Vec<glib::ParamSpec> {
        vec![
                glib::ParamSpecEnum::builder_with_default("codec", FecCodec::RaptorQ)
                    .nick("Codec")
                    .blurb("Fountain code: raptorq (RFC 6330, rateless), reed-solomon (exactly any K, fixed recovery pool), none (source symbols only)")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecEnum::builder_with_default("mode", FecMode::Stream)
                    .nick("Mode")
                    .blurb("stream: each block once, as source plus repair symbols; carousel: kept blocks keep coming round with fresh repair symbols, for late joiners")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("symbol-size")
                    .nick("Symbol size")
                    .blurb("Bytes per symbol (T), a multiple of 8; one symbol per packet, which stays within a 1500-byte MTU up to 1408")
                    .minimum(8)
                    .maximum(fanout_fec::packet::MAX_SYMBOL_SIZE as u32)
                    .default_value(DEFAULT_SYMBOL_SIZE.into())
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("max-block-symbols")
                    .nick("Max block symbols")
                    .blurb("Source symbols per full block (K): larger blocks protect better and cost more latency and CPU")
                    .minimum(1)
                    .maximum(u32::from(fanout_fec::MAX_SOURCE_SYMBOLS))
                    .default_value(DEFAULT_MAX_K.into())
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt64::builder("max-block-time")
                    .nick("Max block time")
                    .blurb("A block closes once its buffers span this long (ns; input with timestamps), or when full; 0 = only when full")
                    .default_value(nanos(DEFAULT_MAX_BLOCK_TIME))
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("repair-percent")
                    .nick("Repair percent")
                    .blurb("Repair symbols sent with a full block, in % of its source symbols; smaller blocks get enough more to survive the same loss")
                    .maximum(1000)
                    .default_value(DEFAULT_REPAIR_PERCENT)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("flow")
                    .nick("Flow")
                    .blurb("Flow id carried in every packet, so several flows can share one transport")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("first-repair-esi")
                    .nick("First repair ESI")
                    .maximum(fanout_fec::sender::MAX_FIRST_REPAIR - 1)
                    .blurb("Index of the first repair symbol of each block: payloaders of one flow given disjoint ranges send symbols a receiver can merge")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoolean::builder("send-source")
                    .nick("Send source symbols")
                    .blurb("Send each block's source symbols; off for a payloader that adds repair symbols to another's")
                    .default_value(true)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("window-blocks")
                    .nick("Window blocks")
                    .blurb("Blocks kept after sending, to answer repair requests and to go round in carousel mode; 0 = 16 in stream mode (and, besides, every block sent in the last second, up to 64 MB: a burst stays repairable), all in carousel mode")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("description-interval")
                    .nick("Description interval")
                    .blurb("Repeat the stream description (caps, codec parameters) after every this many symbol packets, for receivers joining late")
                    .minimum(1)
                    .default_value(DEFAULT_DESCRIPTION_INTERVAL)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt64::builder("repair-linger")
                    .nick("Repair linger")
                    .blurb("Stream mode: after EOS, how long (ns) the last blocks are still answered for repair requests before EOS goes downstream, so receivers can repair the last blocks. Unset, the default applies only where downstream can ask for repair (a session-sink), else EOS goes on at once; set, it always applies. 0: EOS at once")
                    .maximum(60_000_000_000)
                    .default_value(DEFAULT_REPAIR_LINGER)
                    .build(),
                glib::ParamSpecInt::builder("carousel-rounds")
                    .nick("Carousel rounds")
                    .blurb("Carousel mode: rounds over the kept blocks after the input ends, before EOS goes on (-1 = until stopped)")
                    .minimum(-1)
                    .default_value(-1)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt64::builder("carousel-bitrate")
                    .nick("Carousel bitrate")
                    .blurb("Carousel mode: bits per second of the rounds after the input ends (0 = as fast as downstream takes them)")
                    .default_value(DEFAULT_CAROUSEL_BITRATE)
                    .mutable_ready()
                    .build(),
        ]
    }

    pub fn set(&mut self, name: &str, value: &glib::Value) {
        let s = self;
        match name {
            "codec" => s.codec = value.get().unwrap(),
            "mode" => s.mode = value.get().unwrap(),
            "symbol-size" => s.symbol_size = value.get().unwrap(),
            "max-block-symbols" => s.max_block_symbols = value.get().unwrap(),
            "max-block-time" => s.max_block_time = value.get().unwrap(),
            "repair-percent" => s.repair_percent = value.get().unwrap(),
            "flow" => s.flow = value.get().unwrap(),
            "first-repair-esi" => s.first_repair_esi = value.get().unwrap(),
            "send-source" => s.send_source = value.get().unwrap(),
            "window-blocks" => s.window_blocks = value.get().unwrap(),
            "description-interval" => s.description_interval = value.get().unwrap(),
            "carousel-rounds" => s.carousel_rounds = value.get().unwrap(),
            "repair-linger" => {
                s.repair_linger = value.get().unwrap();
                s.repair_linger_set = true;
            }
            "carousel-bitrate" => s.carousel_bitrate = value.get().unwrap(),
            other => unreachable!("unknown property {other}"),
        }
    }

    pub fn get(&self, name: &str) -> glib::Value {
        let s = self;
        match name {
            "codec" => s.codec.to_value(),
            "mode" => s.mode.to_value(),
            "symbol-size" => s.symbol_size.to_value(),
            "max-block-symbols" => s.max_block_symbols.to_value(),
            "max-block-time" => s.max_block_time.to_value(),
            "repair-percent" => s.repair_percent.to_value(),
            "flow" => s.flow.to_value(),
            "first-repair-esi" => s.first_repair_esi.to_value(),
            "send-source" => s.send_source.to_value(),
            "window-blocks" => s.window_blocks.to_value(),
            "description-interval" => s.description_interval.to_value(),
            "carousel-rounds" => s.carousel_rounds.to_value(),
            "repair-linger" => s.repair_linger.to_value(),
            "carousel-bitrate" => s.carousel_bitrate.to_value(),
            other => unreachable!("unknown property {other}"),
        }
    }
}
