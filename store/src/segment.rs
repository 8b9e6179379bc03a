//! Segment files on disk: naming, listing, and scanning an index to find its
//! valid prefix. Shared by the writer (which repairs) and the reader (which
//! only looks).

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::format::{
    decode_record, Context, DataKind, DecodeError, Record, SegmentHeader, SegmentSummary,
    CLOSING_RECORD_LEN, HEADER_LEN,
};

const INDEX_EXT: &str = "idx";
/// Ten digits: name order is sequence order for any `u32` count of segments.
const NAME_DIGITS: usize = 10;

pub fn index_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq:0NAME_DIGITS$}.{INDEX_EXT}"))
}

pub fn data_path(dir: &Path, seq: u64, kind: DataKind) -> PathBuf {
    dir.join(format!("{seq:0NAME_DIGITS$}.{}", kind.extension()))
}

/// Sequence numbers of the segments in `dir`, oldest first.
pub fn list_segments(dir: &Path) -> io::Result<Vec<u64>> {
    let mut seqs = Vec::new();
    for entry in fs::read_dir(dir)? {
        let name = entry?.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(stem) = name.strip_suffix(".idx") else {
            continue;
        };
        if stem.len() == NAME_DIGITS && stem.bytes().all(|c| c.is_ascii_digit()) {
            seqs.push(stem.parse().expect("ten digits fit u64"));
        }
    }
    seqs.sort_unstable();
    Ok(seqs)
}

/// The extent of a closed segment, read from its header and closing record
/// alone. `None` if the segment is not cleanly closed.
pub fn closed_summary(
    dir: &Path,
    seq: u64,
) -> io::Result<Option<(SegmentHeader, SegmentSummary, bool)>> {
    let f = File::open(index_path(dir, seq))?;
    let len = f.metadata()?.len();
    if len < (HEADER_LEN + CLOSING_RECORD_LEN) as u64 {
        return Ok(None);
    }
    let mut head = [0u8; HEADER_LEN];
    f.read_exact_at(&mut head, 0)?;
    let Ok(header) = SegmentHeader::decode(&head) else {
        return Ok(None);
    };
    let mut tail = [0u8; CLOSING_RECORD_LEN];
    f.read_exact_at(&mut tail, len - CLOSING_RECORD_LEN as u64)?;
    // Closing records do not depend on the buffers before them.
    Ok(match decode_record(&tail, &mut Context::default()) {
        Ok((Record::SegmentEnd(s), _)) => Some((header, s, false)),
        Ok((Record::StreamEnd(s), _)) => Some((header, s, true)),
        _ => None,
    })
}

/// The valid prefix of a segment, found by reading every record.
#[derive(Debug)]
pub struct Scan {
    pub header: SegmentHeader,
    /// Length of the index up to the last valid record.
    pub index_len: u64,
    /// Length of the data file covered by valid records.
    pub data_len: u64,
    pub summary: SegmentSummary,
    /// Why the scan stopped before the end of the index file, if it did.
    pub problem: Option<String>,
    /// Bytes of index past `index_len`.
    pub index_excess: u64,
    /// Bytes of data past `data_len`.
    pub data_excess: u64,
}

/// Reads a whole segment. With `verify_data`, payload checksums are checked
/// too, so data lost in a power cut (zeros behind a valid index) is caught.
/// `Err` means even the header is unusable.
pub fn scan_segment(dir: &Path, seq: u64, verify_data: bool) -> io::Result<Result<Scan, String>> {
    let index = fs::read(index_path(dir, seq))?;
    let header = match SegmentHeader::decode(&index) {
        Ok(h) => h,
        Err(e) => return Ok(Err(e.to_string())),
    };
    let data = match File::open(data_path(dir, seq, header.data_kind)) {
        Ok(f) => Some(f),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(e),
    };
    let data_file_len = match &data {
        Some(f) => f.metadata()?.len(),
        None => 0,
    };
    let mut summary = SegmentSummary {
        first_st: header.first_st,
        end_st: header.first_st,
        ..Default::default()
    };
    let mut pos = HEADER_LEN;
    let mut data_len = 0;
    let mut closed = None;
    let mut problem = None;
    let mut payload = Vec::new();
    let mut ctx = Context::new(&header);
    while pos < index.len() && closed.is_none() {
        let (record, len) = match decode_record(&index[pos..], &mut ctx) {
            Ok(r) => r,
            Err(DecodeError::Incomplete) => {
                problem = Some(format!("index ends inside a record at byte {pos}"));
                break;
            }
            Err(DecodeError::Corrupt(why)) => {
                problem = Some(format!("{why} at index byte {pos}"));
                break;
            }
        };
        match record {
            Record::Buffer(b) => {
                if b.end() > data_file_len {
                    problem = Some(format!(
                        "data file ends before byte {} named by the index",
                        b.end()
                    ));
                    break;
                }
                if verify_data {
                    payload.resize(b.size as usize, 0);
                    if let Some(f) = &data {
                        f.read_exact_at(&mut payload, b.offset)?;
                    }
                    if crc32c::crc32c(&payload) != b.data_crc {
                        problem = Some(format!("data checksum mismatch at data byte {}", b.offset));
                        break;
                    }
                }
                data_len = b.end();
                summary.buffers += 1;
                summary.data_bytes = data_len;
                summary.end_st = summary.end_st.max(b.end_st());
            }
            Record::SegmentEnd(_) => closed = Some(false),
            Record::StreamEnd(_) => closed = Some(true),
            Record::Caps(_) | Record::Tags(_) => {}
        }
        pos += len;
    }
    if closed.is_some() && pos < index.len() && problem.is_none() {
        problem = Some(format!(
            "index continues after its closing record at byte {pos}"
        ));
    }
    Ok(Ok(Scan {
        header,
        index_len: pos as u64,
        data_len,
        summary,
        problem,
        index_excess: (index.len() - pos) as u64,
        data_excess: data_file_len.saturating_sub(data_len),
    }))
}
