// SPDX-License-Identifier: MPL-2.0

//! `session-sink`'s request pads: one channel each, named by the pad property `channel`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, LazyLock, Mutex};

use fanout_element_kit::settings::{self as kit, PropertyError};
use fanout_session::message::MAX_NAME_LEN;
use fanout_session::seal::Sealer;
use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;

pub const PROP_CHANNEL: &str = "channel";
pub const PROP_MULTICAST_GROUP: &str = "multicast-group";

#[derive(Debug, Default)]
pub struct ChannelStats {
    pub buffers: AtomicU64,
    pub bytes: AtomicU64,
    /// Datagrams sent, all receivers together.
    pub datagrams: AtomicU64,
    pub repairs: AtomicU64,
    /// Datagrams sent to the channel's multicast group (repairs to it included).
    pub group_datagrams: AtomicU64,
    pub group_repairs: AtomicU64,
    /// Frames queued for TCP receivers.
    pub tcp_frames: AtomicU64,
    /// Packets for everyone (not repairs to one destination): what earns the channel its
    /// repair budget.
    pub stream_packets: AtomicU64,
    /// Buffers dropped because their packet list (block packing) did not fit them.
    pub bad_buffers: AtomicU64,
}

pub mod imp {
    use super::super::CAT;
    use super::*;

    #[derive(Default)]
    pub struct SessionSinkPad {
        pub(crate) channel: Mutex<Option<String>>,
        pub(crate) group: Mutex<Option<SocketAddr>>,
        pub(crate) eos: AtomicBool,
        /// Between FLUSH_START and FLUSH_STOP: a chain held by `wait-for-clients` leaves.
        pub(crate) flushing: AtomicBool,
        /// What `wait-for-clients` keeps until it opens, and its size in bytes.
        pub(crate) held: Mutex<(Vec<gst::BufferList>, usize)>,
        /// The caps receivers are told, as a string.
        pub(crate) caps: Mutex<String>,
        pub(crate) stats: ChannelStats,
        /// Seals the channel's DATA (from the server, while running).
        pub(crate) sealer: Mutex<Option<Arc<Sealer>>>,
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
                vec![
                    glib::ParamSpecString::builder(PROP_CHANNEL)
                        .nick("Channel")
                        .blurb("Name receivers join this pad's stream by (1 to 64 bytes); default: the pad's number, \"0\" for sink_0")
                        .mutable_playing()
                        .build(),
                    glib::ParamSpecString::builder(PROP_MULTICAST_GROUP)
                        .nick("Multicast group")
                        .blurb("address:port (IPv6 as [addr]:port) every packet of this channel also goes to, once; receivers joining with transport=multicast or auto are told it and take the channel from it. Empty: unicast only")
                        .mutable_playing()
                        .build(),
                ]
            });
            PROPERTIES.as_ref()
        }

        fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
            let res = self.set(pspec.name(), value);
            kit::log_set_error(*CAT, &*self.obj(), res);
        }

        fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
            let got = match pspec.name() {
                PROP_CHANNEL => Ok(self.obj().channel_name().to_value()),
                PROP_MULTICAST_GROUP => {
                    Ok(self.group.lock().unwrap().map(|g| g.to_string()).to_value())
                }
                name => kit::unknown(name),
            };
            kit::or_default(*CAT, &*self.obj(), pspec, got)
        }
    }

    impl SessionSinkPad {
        /// The element hears of a change by `notify`, and tells the receivers.
        fn set(&self, name: &str, value: &glib::Value) -> Result<(), PropertyError> {
            match name {
                PROP_CHANNEL => {
                    let name: Option<String> = kit::value(PROP_CHANNEL, value)?;
                    if name.as_ref().is_some_and(|n| n.len() > MAX_NAME_LEN) {
                        gst::warning!(
                            CAT,
                            imp = self,
                            "channel name {name:?} is longer than {MAX_NAME_LEN} bytes: the pad's number is its name"
                        );
                    }
                    let name = name.filter(|n| !n.is_empty() && n.len() <= MAX_NAME_LEN);
                    *self.channel.lock().unwrap() = name;
                }
                PROP_MULTICAST_GROUP => {
                    let text: Option<String> = kit::value(PROP_MULTICAST_GROUP, value)?;
                    let group = match text.as_deref().map(str::trim) {
                        None | Some("") => None,
                        Some(t) => match t.parse::<SocketAddr>() {
                            Ok(a) if a.ip().is_multicast() && a.port() != 0 => Some(a),
                            _ => {
                                gst::warning!(
                                    CAT,
                                    imp = self,
                                    "multicast-group {t:?} is not a multicast address:port: ignored"
                                );
                                None
                            }
                        },
                    };
                    *self.group.lock().unwrap() = group;
                }
                name => return kit::unknown(name),
            }
            Ok(())
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

    pub fn group(&self) -> Option<SocketAddr> {
        *self.imp().group.lock().unwrap()
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
