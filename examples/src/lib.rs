// SPDX-License-Identifier: MPL-2.0

//! What the example applications share: a lossy link between a server and a receiver, and
//! the check that a receiver got what was sent.

pub mod pieces;
pub mod relay;

pub use pieces::{pieces, Piece};
pub use relay::LossyRelay;
