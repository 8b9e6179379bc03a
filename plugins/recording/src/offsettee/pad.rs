// SPDX-License-Identifier: MPL-2.0

//! `offset-tee`'s source pads: each one an output with its own `offset` and `loop`,
//! changeable while playing, and its own streaming task.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{LazyLock, Mutex};

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;

use super::output::{Output, OutputStats};

#[derive(Debug, Clone, Copy, Default)]
pub struct PadSettings {
    /// ns behind the input.
    pub offset: u64,
    /// Plays of the stored content after the input's end: 0 none, -1 forever.
    pub loops: i32,
}

pub mod imp {
    use super::*;

    #[derive(Default)]
    pub struct OffsetTeeSrcPad {
        pub(crate) settings: Mutex<PadSettings>,
        /// Set when `offset` changed: the output jumps to its new position.
        pub(crate) jump: AtomicBool,
        /// What the output's task works with; only the task locks it for long.
        pub(crate) output: Mutex<Output>,
        /// The clock wait the task is in, so a change or a flush can end it.
        pub(crate) wait: Mutex<Option<gst::SingleShotClockId>>,
        pub(crate) stats: Mutex<OutputStats>,
    }

    impl OffsetTeeSrcPad {
        /// Ends the task's clock wait, if it is in one.
        pub(crate) fn wake(&self) {
            if let Some(id) = self.wait.lock().unwrap().as_ref() {
                id.unschedule();
            }
        }
    }

    #[glib::object_subclass]
    impl ObjectSubclass for OffsetTeeSrcPad {
        const NAME: &'static str = "GstFanoutOffsetTeeSrcPad";
        type Type = super::OffsetTeeSrcPad;
        type ParentType = gst::Pad;
    }

    impl ObjectImpl for OffsetTeeSrcPad {
        fn properties() -> &'static [glib::ParamSpec] {
            static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
                vec![
                    glib::ParamSpecUInt64::builder("offset")
                        .nick("Offset")
                        .blurb("How far this output runs behind the input (ns); changed while playing, the output jumps to the input position now - offset (the keyframe at or before it, when the stream marks keyframes), with DISCONT, its running time going on")
                        .maximum(gst::ClockTime::MAX.nseconds())
                        .mutable_playing()
                        .build(),
                    glib::ParamSpecInt::builder("loop")
                        .nick("Loop")
                        .blurb("After the input ends, play the stored content this many more times (-1 = forever), timestamps going on; only with the element's eos-mode=play-out")
                        .minimum(-1)
                        .default_value(0)
                        .mutable_playing()
                        .build(),
                ]
            });
            PROPERTIES.as_ref()
        }

        fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
            let mut s = self.settings.lock().unwrap();
            match pspec.name() {
                "offset" => {
                    let offset = value.get().unwrap();
                    if offset != s.offset {
                        s.offset = offset;
                        drop(s);
                        self.jump.store(true, Ordering::SeqCst);
                        self.wake();
                    }
                }
                "loop" => s.loops = value.get().unwrap(),
                other => unreachable!("unknown property {other}"),
            }
        }

        fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
            let s = self.settings.lock().unwrap();
            match pspec.name() {
                "offset" => s.offset.to_value(),
                "loop" => s.loops.to_value(),
                other => unreachable!("unknown property {other}"),
            }
        }
    }

    impl GstObjectImpl for OffsetTeeSrcPad {}
    impl PadImpl for OffsetTeeSrcPad {}
}

glib::wrapper! {
    pub struct OffsetTeeSrcPad(ObjectSubclass<imp::OffsetTeeSrcPad>) @extends gst::Pad, gst::Object;
}
