// SPDX-License-Identifier: MPL-2.0

//! What the seven fanout elements share beyond their GStreamer-free cores: request pads as
//! `ChildProxy` children, so `gst-launch-1.0` can set their properties; settings set by name
//! that cannot panic; stats on the bus; threads that go round until stopped.

pub mod pads;
pub mod settings;
pub mod stats;
pub mod worker;

#[doc(hidden)]
pub use gst;

/// Logs against an element held weakly (by a thread that must not keep it alive), while it
/// is there: `log_weak!(debug, CAT, weak, "…", …)`.
#[macro_export]
macro_rules! log_weak {
    ($level:ident, $cat:expr, $weak:expr, $($args:tt)*) => {
        if let Some(e) = $weak.upgrade() {
            $crate::gst::$level!($cat, obj = e, $($args)*);
        }
    };
}
