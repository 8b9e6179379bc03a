// SPDX-License-Identifier: MPL-2.0

//! `offset-tee`'s source pads: each one an output with its own `offset` and `loop`,
//! changeable while playing, and its own streaming task.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{LazyLock, Mutex};

use gst::glib;
use gst::subclass::prelude::*;

use fanout_element_kit::settings::{self as kit, Properties};

use super::output::{Output, OutputStats};
use super::settings::PadSettings;
use super::CAT;

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
            static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> =
                LazyLock::new(PadSettings::param_specs);
            PROPERTIES.as_ref()
        }

        fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
            let mut s = self.settings.lock().unwrap();
            let before = s.offset;
            let res = s.set(pspec.name(), value);
            let jumped = s.offset != before;
            drop(s);
            if jumped {
                self.jump.store(true, Ordering::SeqCst);
                self.wake();
            }
            kit::log_set_error(*CAT, &*self.obj(), res);
        }

        fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
            let got = self.settings.lock().unwrap().get(pspec.name());
            kit::or_default(*CAT, &*self.obj(), pspec, got)
        }
    }

    impl GstObjectImpl for OffsetTeeSrcPad {}
    impl PadImpl for OffsetTeeSrcPad {}
}

glib::wrapper! {
    pub struct OffsetTeeSrcPad(ObjectSubclass<imp::OffsetTeeSrcPad>) @extends gst::Pad, gst::Object;
}
