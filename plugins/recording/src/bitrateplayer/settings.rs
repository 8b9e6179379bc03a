// SPDX-License-Identifier: MPL-2.0

//! `bitrate-player`'s properties: names, defaults, specs and values.

use std::path::PathBuf;

use fanout_element_kit::settings::{put, unknown, Properties, PropertyError};
use gst::glib;
use gst::prelude::*;

pub const PROP_LOCATION: &str = "location";
pub const PROP_FOLLOW: &str = "follow";
pub const PROP_IS_LIVE: &str = "is-live";
pub const PROP_LOOP: &str = "loop";

pub const DEFAULT_FOLLOW: bool = false;
pub const DEFAULT_IS_LIVE: bool = true;
pub const DEFAULT_LOOP: i32 = 0;

#[derive(Debug, Clone)]
pub struct Settings {
    pub location: Option<PathBuf>,
    pub follow: bool,
    pub is_live: bool,
    pub loop_count: i32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            location: None,
            follow: DEFAULT_FOLLOW,
            is_live: DEFAULT_IS_LIVE,
            loop_count: DEFAULT_LOOP,
        }
    }
}

impl Settings {
    pub fn param_specs() -> Vec<glib::ParamSpec> {
        vec![
            glib::ParamSpecString::builder(PROP_LOCATION)
                .nick("Location")
                .blurb("Directory of the recording to play")
                .mutable_ready()
                .build(),
            glib::ParamSpecBoolean::builder(PROP_FOLLOW)
                .nick("Follow")
                .blurb(
                    "Keep reading as the recording grows; end when the recorder finishes it. \
                     The directory may still be empty when playing starts",
                )
                .default_value(DEFAULT_FOLLOW)
                .mutable_ready()
                .build(),
            glib::ParamSpecBoolean::builder(PROP_IS_LIVE)
                .nick("Is live")
                .blurb(
                    "Act as a live source, pushing each buffer at its recorded time; \
                     otherwise push as fast as downstream takes, with recorded timestamps",
                )
                .default_value(DEFAULT_IS_LIVE)
                .mutable_ready()
                .build(),
            glib::ParamSpecInt::builder(PROP_LOOP)
                .nick("Loop")
                .blurb(
                    "Extra plays after the first (0 = play once, -1 = forever); timestamps run on",
                )
                .minimum(-1)
                .default_value(DEFAULT_LOOP)
                .mutable_ready()
                .build(),
        ]
    }
}

impl Properties for Settings {
    fn set(&mut self, name: &str, v: &glib::Value) -> Result<(), PropertyError> {
        match name {
            PROP_LOCATION => self.location = crate::location_from_value(name, v)?,
            PROP_FOLLOW => put(&mut self.follow, name, v)?,
            PROP_IS_LIVE => put(&mut self.is_live, name, v)?,
            PROP_LOOP => put(&mut self.loop_count, name, v)?,
            _ => return unknown(name),
        }
        Ok(())
    }

    fn get(&self, name: &str) -> Result<glib::Value, PropertyError> {
        Ok(match name {
            PROP_LOCATION => crate::location_value(&self.location),
            PROP_FOLLOW => self.follow.to_value(),
            PROP_IS_LIVE => self.is_live.to_value(),
            PROP_LOOP => self.loop_count.to_value(),
            _ => return unknown(name),
        })
    }
}
