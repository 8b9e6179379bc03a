//! Stores damaged on purpose, as a crash or a hostile writer leaves them: for the tests and
//! fuzz targets of everything that opens a store.

use std::fs::{self, OpenOptions};
use std::io;
use std::path::Path;

use crate::format::{BufferRecord, Context, DataKind, Record, SegmentHeader, CLOSING_RECORD_LEN};
use crate::LOCK_FILE;

/// Takes the closing record off the segment index at `index`: the state a recorder killed
/// while writing that segment leaves.
pub fn unclose(index: &Path) -> io::Result<()> {
    let len = fs::metadata(index)?.len();
    OpenOptions::new()
        .write(true)
        .open(index)?
        .set_len(len.saturating_sub(CLOSING_RECORD_LEN as u64))
}

/// Makes `dir` a store of one unclosed raw segment holding one buffer record of `size` bytes
/// (with a wrong checksum) over a data file that is one hole of that size: what a crafted
/// file uses to make a reader allocate or read for nothing.
pub fn huge_buffer_segment(dir: &Path, size: u32) -> io::Result<()> {
    fs::create_dir_all(dir)?;
    let header = SegmentHeader {
        seq: 0,
        data_kind: DataKind::Raw,
        session: 1,
        first_st: 0,
    };
    let mut index = header.encode().to_vec();
    Record::Caps("application/octet-stream".into()).encode(&mut index, &mut Context::default());
    let rec = BufferRecord {
        size,
        data_crc: 7,
        ..Default::default()
    };
    Record::Buffer(rec).encode(&mut index, &mut Context::new(&header));
    fs::write(dir.join("0000000000.idx"), &index)?;
    fs::File::create(dir.join("0000000000.bin"))?.set_len(u64::from(size))?;
    fs::write(dir.join(LOCK_FILE), b"")
}
