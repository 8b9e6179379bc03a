//! The system calls behind steady writing: reserving blocks ahead, starting writeback page by
//! page, vectored appends, and removing segments in an order readers can live with.

use std::fs::{self, File};
use std::io::{self, IoSlice, Write};
use std::os::fd::AsRawFd;
use std::path::Path;

use crate::format::DataKind;
use crate::segment::{data_path, index_path};

const PAGE: u64 = 4096;
pub(super) const DATA_RESERVE: u64 = 8 << 20;
pub(super) const INDEX_RESERVE: u64 = 1 << 20;

/// Reserves the next `chunk` bytes of blocks once `len` is within half a
/// chunk of the end of what is reserved. The file's size does not change.
/// Failure (a full disk, a file system without `fallocate`) is harmless:
/// blocks are then allocated as the data is written.
pub(super) fn reserve(file: &File, reserved: &mut u64, len: u64, chunk: u64) {
    if len + chunk / 2 > *reserved {
        // SAFETY: a plain syscall on a file descriptor we own.
        unsafe {
            libc::fallocate(
                file.as_raw_fd(),
                libc::FALLOC_FL_KEEP_SIZE,
                *reserved as libc::off_t,
                chunk as libc::off_t,
            );
        }
        *reserved += chunk;
    }
}

pub(super) fn kick(file: &File, kicked: &mut u64, len: u64) {
    let aligned = len & !(PAGE - 1);
    if aligned > *kicked {
        // SAFETY: a plain syscall on a file descriptor we own; it only
        // initiates writeback and touches no memory of ours.
        unsafe {
            libc::sync_file_range(
                file.as_raw_fd(),
                *kicked as libc::off64_t,
                (aligned - *kicked) as libc::off64_t,
                libc::SYNC_FILE_RANGE_WRITE,
            );
        }
        *kicked = aligned;
    }
}

pub(super) fn remove_segment(dir: &Path, seq: u64, kind: Option<DataKind>) {
    // Index first: a reader listing the directory never finds an index without data.
    let _ = fs::remove_file(index_path(dir, seq));
    match kind {
        Some(k) => {
            let _ = fs::remove_file(data_path(dir, seq, k));
        }
        None => {
            for k in [DataKind::Raw, DataKind::MpegTs] {
                let _ = fs::remove_file(data_path(dir, seq, k));
            }
        }
    }
}

pub(super) fn write_all_vectored(f: &mut File, mut bufs: &mut [IoSlice]) -> io::Result<()> {
    IoSlice::advance_slices(&mut bufs, 0);
    while !bufs.is_empty() {
        match f.write_vectored(bufs) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut bufs, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
