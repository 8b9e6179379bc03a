// SPDX-License-Identifier: MPL-2.0

//! `session-sink`'s request pads: one channel each, named by the pad property `channel`.

use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{LazyLock, Mutex};

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;

#[derive(Debug, Default)]
pub struct ChannelStats {
    pub buffers: AtomicU64,
    pub bytes: AtomicU64,
    /// Datagrams sent, all receivers together.
    pub datagrams: AtomicU64,
    pub repairs: AtomicU64,
}

pub mod imp {
    use super::*;

    #[derive(Default)]
    pub struct SessionSinkPad {
        pub(crate) channel: Mutex<Option<String>>,
        pub(crate) eos: AtomicBool,
        /// The caps receivers are told, as a string.
        pub(crate) caps: Mutex<String>,
        pub(crate) stats: ChannelStats,
    }

    #[glib::object_subclass]
    impl ObjectSubclass for SessionSinkPad {
        const NAME: &'static str = "GstFanoutSessionSinkPad";
        type Type = super::SessionSinkPad;
        type ParentType = gst::Pad;
    }

    impl ObjectImpl for SessionSinkPad {
        fn properties() -> &'static [glib::ParamSpec] {
            static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
                vec![glib::ParamSpecString::builder("channel")
                    .nick("Channel")
                    .blurb("Name receivers join this pad's stream by (1 to 64 bytes); default: the pad's number, \"0\" for sink_0")
                    .mutable_playing()
                    .build()]
            });
            PROPERTIES.as_ref()
        }

        fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
            match pspec.name() {
                "channel" => {
                    let name: Option<String> = value.get().unwrap();
                    let name = name.filter(|n| !n.is_empty() && n.len() <= 64);
                    *self.channel.lock().unwrap() = name;
                    if let Some(sink) = self
                        .obj()
                        .parent()
                        .and_downcast::<super::super::SessionSink>()
                    {
                        sink.imp().channel_changed(&self.obj());
                    }
                }
                other => unreachable!("unknown property {other}"),
            }
        }

        fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
            match pspec.name() {
                "channel" => self.obj().channel_name().to_value(),
                other => unreachable!("unknown property {other}"),
            }
        }
    }

    impl GstObjectImpl for SessionSinkPad {}
    impl PadImpl for SessionSinkPad {}
}

glib::wrapper! {
    pub struct SessionSinkPad(ObjectSubclass<imp::SessionSinkPad>) @extends gst::Pad, gst::Object;
}

impl SessionSinkPad {
    /// The number in the pad's name, used on the wire.
    pub fn index(&self) -> u16 {
        let name = self.name();
        name.rsplit('_')
            .next()
            .and_then(|n| n.parse::<u16>().ok())
            .unwrap_or(u16::MAX)
    }

    pub fn channel_name(&self) -> String {
        self.imp()
            .channel
            .lock()
            .unwrap()
            .clone()
            .unwrap_or_else(|| self.index().to_string())
    }
}
