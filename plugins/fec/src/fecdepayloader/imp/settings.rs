// SPDX-License-Identifier: MPL-2.0

//! `fec-depayloader`'s properties: names, defaults, specs and values.

use fanout_element_kit::settings::{put, unknown, Properties, PropertyError};
use fanout_fec::receiver::DEFAULT_LATENCY;
use fanout_fec::time::nanos;
use gst::glib;
use gst::prelude::*;

pub const PROP_LATENCY: &str = "latency";
pub const PROP_FLOW: &str = "flow";
pub const PROP_REPAIR_DELAY: &str = "repair-delay";

/// Any flow: the one that keeps coming.
pub const DEFAULT_FLOW: i64 = -1;
/// How long an incomplete block waits before upstream is asked for more symbols.
pub const DEFAULT_REPAIR_DELAY: u64 = 40_000_000;

#[derive(Debug, Clone, Copy)]
pub struct Settings {
    pub latency: u64,
    pub flow: i64,
    pub repair_delay: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            latency: nanos(DEFAULT_LATENCY),
            flow: DEFAULT_FLOW,
            repair_delay: DEFAULT_REPAIR_DELAY,
        }
    }
}

impl Settings {
    pub fn param_specs() -> Vec<glib::ParamSpec> {
        vec![
            glib::ParamSpecUInt64::builder(PROP_LATENCY)
                .nick("Latency")
                .blurb("How long (ns) an incomplete block is waited for after its first packet before it is given up as lost (stream mode); added to the pipeline latency")
                .default_value(nanos(DEFAULT_LATENCY))
                .mutable_ready()
                .build(),
            glib::ParamSpecInt64::builder(PROP_FLOW)
                .nick("Flow")
                .blurb("Flow id to rebuild; packets of other flows are counted and dropped (-1 = the flow that keeps coming: the first seen until another brings more than twice its packets)")
                .minimum(-1)
                .maximum(i64::from(u32::MAX))
                .default_value(DEFAULT_FLOW)
                .mutable_ready()
                .build(),
            glib::ParamSpecUInt64::builder(PROP_REPAIR_DELAY)
                .nick("Repair delay")
                .blurb("How long (ns, at most latency/2) an incomplete block waits before an upstream fanout-block-missing event asks for the symbols it needs (at once when a later block arrives; asked again after as long twice, then after twice the gap each time until rebuilt or given up); session-src turns it into a loss report. 0: never ask")
                .default_value(DEFAULT_REPAIR_DELAY)
                .mutable_ready()
                .build(),
        ]
    }
}

impl Properties for Settings {
    fn set(&mut self, name: &str, v: &glib::Value) -> Result<(), PropertyError> {
        match name {
            PROP_LATENCY => put(&mut self.latency, name, v),
            PROP_FLOW => put(&mut self.flow, name, v),
            PROP_REPAIR_DELAY => put(&mut self.repair_delay, name, v),
            _ => unknown(name),
        }
    }

    fn get(&self, name: &str) -> Result<glib::Value, PropertyError> {
        match name {
            PROP_LATENCY => Ok(self.latency.to_value()),
            PROP_FLOW => Ok(self.flow.to_value()),
            PROP_REPAIR_DELAY => Ok(self.repair_delay.to_value()),
            _ => unknown(name),
        }
    }
}
