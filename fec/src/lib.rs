//! fanout's FEC core, free of GStreamer: the packet format (docs/fec-format.md), source block
//! content, the RaptorQ / Reed-Solomon / no-code codecs, and the sending and receiving state
//! machines the `fec-payloader` and `fec-depayloader` elements drive.
//!
//! # One output convention and one timer
//!
//! - What a machine makes is appended to an `out: &mut Vec<_>` its caller passes (and
//!   empties when it likes): [`Sender::push_buffer`], [`Sender::flush`] and
//!   [`Sender::carousel_round`] append packets, [`Receiver::push`],
//!   [`Receiver::handle_timeout`] and [`Receiver::finish`] append [`Output`]s. The one
//!   exception is [`Sender::repair`], which returns its packets, so that the caller can
//!   address them to the receiver that asked.
//! - [`Receiver::poll_timeout`] says when [`Receiver::handle_timeout`] next needs calling,
//!   if no packet comes first; calling it earlier does nothing. The [`Sender`] keeps no
//!   timer: it is told the time ([`Sender::set_now`]) and the buffers' timestamps; the
//!   rounds after the input ended say when their next step is due
//!   ([`CarouselRounds::step`]).
//! - "Now" and deadlines are points of one monotonic clock the caller picks ([`Mono`]);
//!   intervals are [`Duration`](std::time::Duration)s. Buffer timestamps (PTS, DTS,
//!   durations: stream time, carried in blocks) and what goes on the wire stay nanoseconds.

pub mod block;
pub mod carousel;
pub mod codec;
mod confirm;
pub mod description;
pub mod guard;
pub mod packet;
pub mod packing;
pub mod receiver;
pub mod sender;
pub mod sizing;

/// The monotonic time the receiver and sender are fed, re-exported: [`time::Mono`].
pub use fanout_wire::time;

pub use block::BufferMeta;
pub use carousel::{CarouselRounds, Pacer};
pub use codec::Codec;
pub use description::{Description, Mode};
pub use receiver::{Output, Payload, Receiver, ReceiverConfig, ReceiverStats};
pub use sender::{RepairRefused, Sender, SenderConfig, SenderError, SenderStats};
pub use sizing::MAX_SOURCE_SYMBOLS;
pub use time::Mono;
