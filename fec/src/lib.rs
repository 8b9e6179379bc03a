//! fanout's FEC core, free of GStreamer: the packet format (docs/fec-format.md), source block
//! content, the RaptorQ / Reed-Solomon / no-code codecs, and the sending and receiving state
//! machines the `fec-payloader` and `fec-depayloader` elements drive.

pub mod block;
pub mod carousel;
pub mod codec;
mod confirm;
pub mod description;
pub mod guard;
pub mod packet;
pub mod receiver;
pub mod sender;
pub mod sizing;

pub use block::BufferMeta;
pub use carousel::{CarouselRounds, Pacer};
pub use codec::Codec;
pub use description::{Description, Mode};
pub use receiver::{Output, Payload, Receiver, ReceiverConfig, ReceiverStats};
pub use sender::{RepairRefused, Sender, SenderConfig, SenderError, SenderStats};
pub use sizing::MAX_SOURCE_SYMBOLS;
