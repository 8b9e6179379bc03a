//! Stores damaged on purpose, as a crash or a hostile writer leaves them: for the tests and
//! fuzz targets of everything that opens a store.

use std::fs::{self, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
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

/// Flips one bit of the byte at `at` in the file at `path`.
pub fn flip(path: &Path, at: u64) -> io::Result<()> {
    let f = OpenOptions::new().read(true).write(true).open(path)?;
    let mut b = [0u8];
    f.read_exact_at(&mut b, at)?;
    f.write_all_at(&[b[0] ^ 0x10], at)
}

/// Makes `dir` a store of one unclosed raw segment holding `count` buffer records of `size`
/// bytes each, 40 ms apart (with wrong checksums), over a data file that is holes, but for
/// one real byte at the start of each buffer if `real_byte`: what a crafted file uses to make
/// a reader allocate or read for nothing.
pub fn huge_buffers_segment(dir: &Path, size: u32, count: u64, real_byte: bool) -> io::Result<()> {
    fs::create_dir_all(dir)?;
    let header = SegmentHeader {
        seq: 0,
        data_kind: DataKind::Raw,
        session: 1,
        first_st: 0,
    };
    let mut index = header.encode().to_vec();
    Record::Caps("application/octet-stream".into()).encode(&mut index, &mut Context::default());
    let mut ctx = Context::new(&header);
    let data = fs::File::create(dir.join("0000000000.bin"))?;
    for i in 0..count {
        let offset = i * u64::from(size);
        let rec = BufferRecord {
            st: i * 40_000_000,
            offset,
            size,
            data_crc: 7,
            ..Default::default()
        };
        Record::Buffer(rec).encode(&mut index, &mut ctx);
        if real_byte {
            data.write_all_at(b"x", offset)?;
        }
    }
    data.set_len(count * u64::from(size))?;
    fs::write(dir.join("0000000000.idx"), &index)?;
    fs::write(dir.join(LOCK_FILE), b"")
}
