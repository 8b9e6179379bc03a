// SPDX-License-Identifier: MPL-2.0

//! What the example applications share: a lossy link between a server and a receiver, and
//! the check that a receiver got what was sent.

pub mod pieces;
pub mod relay;

pub use pieces::{pieces, Piece};
pub use relay::LossyRelay;

/// `dir`, emptied (or made), as an absolute path: where an example leaves what it made.
pub fn fresh_dir(dir: &std::path::Path) -> std::io::Result<std::path::PathBuf> {
    if dir.exists() {
        std::fs::remove_dir_all(dir)?;
    }
    std::fs::create_dir_all(dir)?;
    dir.canonicalize()
}
