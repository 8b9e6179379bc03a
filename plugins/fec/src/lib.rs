// SPDX-License-Identifier: MPL-2.0
#![allow(clippy::non_send_fields_in_send_ty)]

//! fanout FEC plugin: `fec-payloader` turns any stream into self-describing datagrams of
//! fountain-code symbols; `fec-depayloader` rebuilds the stream from any sufficient subset.
//! The packet format and block logic are in the GStreamer-free `fanout-fec` crate.

use gst::glib;
use gst::prelude::*;

mod fecdepayloader;
mod fecpayloader;
pub mod packing;

pub use fecdepayloader::FecDepayloader;
pub use fecpayloader::FecPayloader;

/// Name of the upstream custom event asking `fec-payloader` for fresh repair symbols.
pub const REPAIR_REQUEST: &str = "fanout-repair-request";
/// Name of the upstream custom event `fec-depayloader` sends for a block it still misses
/// symbols of, well before it gives the block up (fields `flow`, `block`, `needed`).
pub const BLOCK_MISSING: &str = "fanout-block-missing";
/// Name of the upstream custom event `fec-depayloader` sends once a second while it loses
/// anything (fields `flow`, `loss`: the share of symbols lost lately, 0 to 0.5), so a
/// sender can send repair up front.
pub const LOSS: &str = "fanout-loss";
/// Name of the custom downstream query `fec-payloader` asks at EOS: an element that turns
/// loss reports into repair requests (`session-sink`) answers it, and only then do the last
/// blocks wait `repair-linger` for repair requests.
pub const REPAIR_PATH_QUERY: &str = "fanout-repair-path";
/// Name of the custom buffer meta naming the receiver a repair packet is for.
pub const DESTINATION_META: &str = "FanoutDestinationMeta";

#[derive(Debug, Eq, PartialEq, Hash, Clone, Copy, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstFanoutFecCodec")]
pub enum FecCodec {
    #[enum_value(
        name = "RaptorQ (RFC 6330): rateless, any K+2 symbols decode almost always",
        nick = "raptorq"
    )]
    RaptorQ = 0,
    #[enum_value(
        name = "Reed-Solomon (GF(2^16)): exactly any K symbols, fixed recovery pool",
        nick = "reed-solomon"
    )]
    ReedSolomon = 1,
    #[enum_value(name = "None: source symbols only, no protection", nick = "none")]
    None = 2,
}

#[derive(Debug, Eq, PartialEq, Hash, Clone, Copy, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstFanoutFecMode")]
pub enum FecMode {
    #[enum_value(
        name = "Stream: each block once, source plus repair symbols",
        nick = "stream"
    )]
    Stream = 0,
    #[enum_value(
        name = "Carousel: kept blocks come round again with fresh repair symbols",
        nick = "carousel"
    )]
    Carousel = 1,
}

/// Builds a `fanout-repair-request` event: `count` fresh repair symbols of `block` of `flow`,
/// to be tagged with `destination` (any value; it comes back in the packets' meta).
pub fn repair_request(
    flow: u32,
    block: u64,
    count: u32,
    destination: impl glib::value::ToSendValue,
) -> gst::Event {
    let s = gst::Structure::builder(REPAIR_REQUEST)
        .field("flow", flow)
        .field("block", block)
        .field("count", count)
        .field("destination", destination.to_send_value())
        .build();
    gst::event::CustomUpstream::new(s)
}

/// Builds a `fanout-block-missing` event: `needed` more symbols would rebuild `block`.
pub fn block_missing(flow: u32, block: u64, needed: u32) -> gst::Event {
    let s = gst::Structure::builder(BLOCK_MISSING)
        .field("flow", flow)
        .field("block", block)
        .field("needed", needed)
        .build();
    gst::event::CustomUpstream::new(s)
}

/// A `fanout-loss` event: `loss` (0 to 0.5) of flow `flow`'s symbols are lost lately.
pub fn loss(flow: u32, loss: f64) -> gst::Event {
    let s = gst::Structure::builder(LOSS)
        .field("flow", flow)
        .field("loss", loss)
        .build();
    gst::event::CustomUpstream::new(s)
}

/// The (flow, loss) of a `fanout-loss` event, if it is one; a loss that is not a number is
/// no loss, and one beyond 0 to 0.5 is brought within it.
pub fn parse_loss(event: &gst::EventRef) -> Option<(u32, f64)> {
    let s = event.structure().filter(|s| s.name() == LOSS)?;
    let loss: f64 = s.get("loss").ok()?;
    let loss = if loss.is_nan() {
        0.0
    } else {
        loss.clamp(0.0, 0.5)
    };
    Some((s.get("flow").ok()?, loss))
}

/// The (flow, block, needed) of a `fanout-block-missing` event, if it is one.
pub fn parse_block_missing(event: &gst::EventRef) -> Option<(u32, u64, u32)> {
    let s = event.structure().filter(|s| s.name() == BLOCK_MISSING)?;
    Some((
        s.get("flow").ok()?,
        s.get("block").ok()?,
        s.get("needed").ok()?,
    ))
}

/// The (flow, block, count) of a `fanout-repair-request` event, if it is one.
pub fn parse_repair_request(event: &gst::EventRef) -> Option<(u32, u64, u32)> {
    let s = event.structure().filter(|s| s.name() == REPAIR_REQUEST)?;
    Some((
        s.get("flow").ok()?,
        s.get("block").ok()?,
        s.get("count").ok()?,
    ))
}

/// Whether `query` is the [`REPAIR_PATH_QUERY`].
pub fn is_repair_path_query(query: &gst::QueryRef) -> bool {
    query.type_() == gst::QueryType::Custom
        && query
            .structure()
            .is_some_and(|s| s.name() == REPAIR_PATH_QUERY)
}

/// Asks downstream of `pad` whether repair requests can come back upstream.
pub fn has_repair_path(pad: &gst::Pad) -> bool {
    let mut q = gst::query::Custom::new(gst::Structure::new_empty(REPAIR_PATH_QUERY));
    pad.peer_query(&mut q)
}

/// The destination of a `fanout-repair-request` event, if it is one.
pub fn repair_request_destination(event: &gst::EventRef) -> Option<glib::SendValue> {
    let s = event.structure().filter(|s| s.name() == REPAIR_REQUEST)?;
    s.value("destination").ok().cloned()
}

/// Tags `buffer` as a repair packet for `destination` only.
pub fn set_packet_destination(buffer: &mut gst::BufferRef, destination: &glib::SendValue) {
    if let Ok(mut meta) = gst::meta::CustomMeta::add(buffer, DESTINATION_META) {
        meta.mut_structure()
            .set_value("destination", destination.clone());
    }
}

/// The destination a repair packet was made for, if it was.
pub fn packet_destination(buffer: &gst::BufferRef) -> Option<glib::SendValue> {
    let meta = gst::meta::CustomMeta::from_buffer(buffer, DESTINATION_META).ok()?;
    meta.structure().value("destination").ok().cloned()
}

/// Registers the buffer metas of our packets (destination, packet list). Every plugin that
/// sets them calls it: an edge relay (`session-src ! session-sink`) loads no FEC element,
/// and a meta that is not registered is silently not set.
pub fn register_metas() {
    // Once per process: two threads registering at once would both try.
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        packing::register();
        if !gst::meta::CustomMeta::is_registered(DESTINATION_META) {
            gst::meta::CustomMeta::register(DESTINATION_META, &[]);
        }
    });
}

fn plugin_init(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    register_metas();
    FecCodec::static_type().mark_as_plugin_api(gst::PluginAPIFlags::empty());
    FecMode::static_type().mark_as_plugin_api(gst::PluginAPIFlags::empty());
    fecpayloader::register(plugin)?;
    fecdepayloader::register(plugin)?;
    Ok(())
}

gst::plugin_define!(
    fanoutfec,
    env!("CARGO_PKG_DESCRIPTION"),
    plugin_init,
    env!("CARGO_PKG_VERSION"),
    // GStreamer's name for MPL-2.0.
    "MPL",
    env!("CARGO_PKG_NAME"),
    "fanout",
    env!("CARGO_PKG_REPOSITORY"),
    "2026-11-23"
);
