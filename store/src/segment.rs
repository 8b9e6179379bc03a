//! Segment files on disk: naming, listing, opening them safely, rebuilding a damaged header,
//! and scanning an index to learn what it holds. Shared by the writer (which repairs) and the
//! reader (which only looks).

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::format::{
    decode_record, step_over_damage, Context, DataKind, DecodeError, Record, SegmentHeader,
    SegmentSummary, CLOSING_RECORD_LEN, HEADER_LEN, MAX_PAYLOAD, RECORD_OVERHEAD,
};
use crate::sparse::range_crc;
use crate::MAX_STORE_GAP;

const INDEX_EXT: &str = "idx";
/// Ten digits: name order is sequence order for any `u32` count of segments.
const NAME_DIGITS: usize = 10;
/// Index bytes read at a time: memory stays bounded whatever a file's size claims.
const INDEX_CHUNK: usize = 256 << 10;
/// The longest record.
pub const MAX_FRAME: usize = MAX_PAYLOAD + RECORD_OVERHEAD;

pub fn index_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq:0NAME_DIGITS$}.{INDEX_EXT}"))
}

pub fn data_path(dir: &Path, seq: u64, kind: DataKind) -> PathBuf {
    dir.join(format!("{seq:0NAME_DIGITS$}.{}", kind.extension()))
}

/// The sequence number a segment file's name gives, if it is one of the store's names.
fn segment_seq(name: &str) -> Option<u64> {
    let (stem, ext) = name.split_once('.')?;
    let ours = [
        INDEX_EXT,
        DataKind::Raw.extension(),
        DataKind::MpegTs.extension(),
    ];
    (stem.len() == NAME_DIGITS && stem.bytes().all(|c| c.is_ascii_digit()) && ours.contains(&ext))
        .then(|| stem.parse().expect("ten digits fit u64"))
}

/// Sequence numbers of the segments in `dir`, oldest first.
pub fn list_segments(dir: &Path) -> io::Result<Vec<u64>> {
    let mut seqs = Vec::new();
    for entry in fs::read_dir(dir)? {
        let name = entry?.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.ends_with(INDEX_EXT) {
            seqs.extend(segment_seq(name));
        }
    }
    seqs.sort_unstable();
    Ok(seqs)
}

/// Sequence numbers named by any segment file in `dir` (index or data), oldest first, each
/// once: a writer numbers new segments past all of them, so it never meets an old file.
pub fn list_segment_files(dir: &Path) -> io::Result<Vec<u64>> {
    let mut seqs = Vec::new();
    for entry in fs::read_dir(dir)? {
        if let Some(seq) = entry?.file_name().to_str().and_then(segment_seq) {
            seqs.push(seq);
        }
    }
    seqs.sort_unstable();
    seqs.dedup();
    Ok(seqs)
}

/// Why a file of the store may not be opened, if it may not: only regular files inside the
/// store are read, so a FIFO cannot hang a reader, a device cannot feed it endless bytes and a
/// link cannot make it read elsewhere.
fn refusal(dir: &Path, path: &Path) -> io::Result<Option<&'static str>> {
    let meta = fs::symlink_metadata(path)?;
    if meta.file_type().is_symlink() {
        let inside = fs::canonicalize(path)
            .and_then(|t| Ok(t.starts_with(fs::canonicalize(dir)?)))
            .unwrap_or(false);
        if !inside {
            return Ok(Some("a symbolic link out of the store"));
        }
        if !fs::metadata(path)?.is_file() {
            return Ok(Some("not a regular file"));
        }
    } else if !meta.is_file() {
        return Ok(Some("not a regular file (a FIFO, a device or a directory)"));
    }
    Ok(None)
}

fn refused(path: &Path, why: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("{}: {why}; refused", path.display()),
    )
}

/// Opens a file of the store for reading, refusing what [`refusal`] refuses. Non-blocking,
/// so even a FIFO swapped in after the check cannot hang the open.
pub fn open_store_file(dir: &Path, path: &Path) -> io::Result<File> {
    if let Some(why) = refusal(dir, path)? {
        return Err(refused(path, why));
    }
    let f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    if !f.metadata()?.is_file() {
        return Err(refused(path, "not a regular file"));
    }
    Ok(f)
}

/// Checks every segment file of `dir` before anything is read: the first refused one, as
/// an error that names it.
pub fn check_store_files(dir: &Path) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        if name.to_str().and_then(segment_seq).is_none() {
            continue;
        }
        let path = entry.path();
        if let Some(why) = refusal(dir, &path)? {
            return Err(refused(&path, why));
        }
    }
    Ok(())
}

/// A segment's index, opened, with its header as found.
pub struct IndexFile {
    pub file: File,
    /// The header, or why it cannot be used.
    pub header: Result<SegmentHeader, &'static str>,
    pub len: u64,
}

/// Opens the index of segment `seq`; `None` if it does not exist.
pub fn open_index(dir: &Path, seq: u64) -> io::Result<Option<IndexFile>> {
    let file = match open_store_file(dir, &index_path(dir, seq)) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let len = file.metadata()?.len();
    let mut head = [0u8; HEADER_LEN];
    let header = match file.read_exact_at(&mut head, 0) {
        Ok(()) => SegmentHeader::decode(&head),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Err("index header is truncated"),
        Err(e) => return Err(e),
    };
    Ok(Some(IndexFile { file, header, len }))
}

/// The closing record at the end of an index, if it ends with one.
pub fn closing_record(index: &IndexFile) -> io::Result<Option<(SegmentSummary, bool)>> {
    if index.len < (HEADER_LEN + CLOSING_RECORD_LEN) as u64 {
        return Ok(None);
    }
    let mut tail = [0u8; CLOSING_RECORD_LEN];
    index
        .file
        .read_exact_at(&mut tail, index.len - CLOSING_RECORD_LEN as u64)?;
    // Closing records do not depend on the buffers before them.
    Ok(match decode_record(&tail, &mut Context::default()) {
        Ok((Record::SegmentEnd(s), _)) => Some((s, false)),
        Ok((Record::StreamEnd(s), _)) => Some((s, true)),
        _ => None,
    })
}

/// The kind of the data file that exists for segment `seq`, preferring `hint` when both do.
pub fn data_kind_on_disk(dir: &Path, seq: u64, hint: Option<DataKind>) -> Option<DataKind> {
    let exists = |k| fs::symlink_metadata(data_path(dir, seq, k)).is_ok();
    match (exists(DataKind::Raw), exists(DataKind::MpegTs)) {
        (true, true) => Some(hint.unwrap_or(DataKind::MpegTs)),
        (true, false) => Some(DataKind::Raw),
        (false, true) => Some(DataKind::MpegTs),
        (false, false) => None,
    }
}

/// A header for a segment whose own header is damaged, rebuilt from what is intact: the
/// sequence number from the file name, the data kind from the data file beside it, the first
/// store time from the closing record or else `prev_end` (where the segment before ended).
/// `None` when no data file is there to read.
pub fn rebuild_header(
    dir: &Path,
    seq: u64,
    index: &IndexFile,
    prev_end: u64,
) -> io::Result<Option<SegmentHeader>> {
    let mut head = [0u8; HEADER_LEN];
    let hint = match index.file.read_exact_at(&mut head, 0) {
        Ok(()) => match head[6] {
            0 => Some(DataKind::Raw),
            1 => Some(DataKind::MpegTs),
            _ => None,
        },
        Err(_) => None,
    };
    let Some(data_kind) = data_kind_on_disk(dir, seq, hint) else {
        return Ok(None);
    };
    let first_st = closing_record(index)?.map_or(prev_end, |(s, _)| s.first_st);
    Ok(Some(SegmentHeader {
        seq,
        data_kind,
        session: 0,
        first_st,
    }))
}

/// Reads an index front to back in bounded chunks: memory stays a few records' worth whatever
/// the file's size says, and a file that grows is followed.
pub struct IndexWindow {
    file: File,
    /// File offset of `bytes[0]`.
    base: u64,
    bytes: Vec<u8>,
    pos: usize,
}

impl IndexWindow {
    pub fn new(file: File, start: u64) -> Self {
        IndexWindow {
            file,
            base: start,
            bytes: Vec::new(),
            pos: 0,
        }
    }

    /// File offset of the next unread byte.
    pub fn offset(&self) -> u64 {
        self.base + self.pos as u64
    }

    pub fn rest(&self) -> &[u8] {
        &self.bytes[self.pos..]
    }

    pub fn advance(&mut self, n: usize) {
        self.pos = (self.pos + n).min(self.bytes.len());
    }

    /// Moves to file offset `at`, forgetting what was read.
    pub fn jump(&mut self, at: u64) {
        self.base = at;
        self.bytes.clear();
        self.pos = 0;
    }

    /// Reads until `n` bytes are unread or the file ends: enough to look at a damaged
    /// record and the one after it.
    pub fn fill_to(&mut self, n: usize) -> io::Result<()> {
        while self.rest().len() < n && self.fill()? {}
        Ok(())
    }

    /// Reads up to one more chunk; `false` if the file has nothing more now.
    pub fn fill(&mut self) -> io::Result<bool> {
        if self.pos > 0 {
            self.bytes.drain(..self.pos);
            self.base += self.pos as u64;
            self.pos = 0;
        }
        let have = self.bytes.len();
        self.bytes.resize(have + INDEX_CHUNK, 0);
        let res = loop {
            match self
                .file
                .read_at(&mut self.bytes[have..], self.base + have as u64)
            {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => break other,
            }
        };
        let n = *res.as_ref().unwrap_or(&0);
        self.bytes.truncate(have + n);
        res.map(|n| n > 0)
    }
}

/// What a scan found in a segment.
#[derive(Debug)]
pub struct Scan {
    /// Index length up to the last intact buffer (with its data, when verified): what a
    /// repair keeps. Damaged records before it stay.
    pub index_len: u64,
    /// Data file length covered up to there.
    pub data_len: u64,
    /// The segment up to there.
    pub summary: SegmentSummary,
    /// Why the records after `index_len` are not kept, if any are not.
    pub problem: Option<String>,
    /// Damaged records kept because intact ones follow them (readers skip them).
    pub damaged: u64,
    /// Index and data file bytes past what is kept.
    pub index_excess: u64,
    pub data_excess: u64,
    /// Store time up to which records past what is kept reached, as far as they decoded.
    pub cut_end_st: u64,
    /// Store time skipped by jumps between buffers longer than [`MAX_STORE_GAP`] in what
    /// is kept.
    pub jumps: u64,
}

/// Reads a whole segment with `header` (its own, or one rebuilt). With `verify_data`,
/// payload checksums are checked too, so data lost in a power cut (zeros behind a valid
/// index) is not taken for intact.
pub fn scan_segment(
    dir: &Path,
    index: &IndexFile,
    header: &SegmentHeader,
    verify_data: bool,
) -> io::Result<Scan> {
    let data = match open_store_file(dir, &data_path(dir, header.seq, header.data_kind)) {
        Ok(f) => Some(f),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(e),
    };
    let data_file_len = match &data {
        Some(f) => f.metadata()?.len(),
        None => 0,
    };
    let start = SegmentSummary {
        first_st: header.first_st,
        end_st: header.first_st,
        ..Default::default()
    };
    let mut window = IndexWindow::new(index.file.try_clone()?, HEADER_LEN as u64);
    let mut ctx = Context::new(header);
    // Everything decoded, and the state after the last intact buffer.
    let mut running = start;
    let (mut kept, mut kept_index_len, mut kept_damaged) = (start, HEADER_LEN as u64, 0);
    let mut damaged = 0;
    let mut problem = None;
    let mut closed = false;
    let mut payload = Vec::new();
    let (mut jumps, mut kept_jumps, mut prev_st) = (0u64, 0, header.first_st);
    loop {
        let at = window.offset();
        let (record, len, intact) = match decode_record(window.rest(), &mut ctx) {
            Ok((r, len)) => (r, len, true),
            Err(DecodeError::Incomplete) => {
                if window.fill()? {
                    continue;
                }
                if !window.rest().is_empty() {
                    problem = Some(format!("index ends inside a record at byte {at}"));
                }
                break;
            }
            Err(DecodeError::Corrupt(why)) => {
                window.fill_to(2 * MAX_FRAME)?;
                match step_over_damage(window.rest(), &mut ctx) {
                    Some((len, Some(b))) => (Record::Buffer(b), len, false),
                    Some((len, None)) => (Record::Tags(String::new()), len, false),
                    None => {
                        problem = Some(format!("{why} at index byte {at}"));
                        break;
                    }
                }
            }
        };
        window.advance(len);
        match record {
            Record::Buffer(b) => {
                if b.end() > data_file_len {
                    problem = Some(format!(
                        "data file ends before byte {} named by the index",
                        b.end()
                    ));
                    break;
                }
                let intact_record = intact;
                let intact = intact
                    && (!verify_data
                        || data.as_ref().map_or(Ok(!b.data_crc), |f| {
                            range_crc(f, b.offset, b.end(), &mut payload)
                        })? == b.data_crc);
                let gap = b.st.saturating_sub(prev_st);
                if gap > MAX_STORE_GAP {
                    jumps = jumps.saturating_add(gap);
                }
                prev_st = b.st;
                running.buffers += 1;
                running.data_bytes = b.end();
                running.end_st = running.end_st.max(b.end_st());
                if intact {
                    (kept, kept_index_len, kept_damaged, kept_jumps) =
                        (running, window.offset(), damaged, jumps);
                } else {
                    damaged += 1;
                    if problem.is_none() {
                        problem = Some(match intact_record {
                            true => format!("data checksum mismatch at data byte {}", b.offset),
                            false => format!("damaged index record at byte {at}"),
                        });
                    }
                }
            }
            Record::SegmentEnd(_) | Record::StreamEnd(_) => {
                closed = true;
                break;
            }
            Record::Caps(_) | Record::Tags(_) if !intact => damaged += 1,
            Record::Caps(_) | Record::Tags(_) => {}
        }
    }
    let index_len = if closed {
        window.offset()
    } else {
        kept_index_len
    };
    if closed {
        (kept, kept_damaged, kept_jumps) = (running, damaged, jumps);
    }
    if closed && window.offset() < index.len && problem.is_none() {
        problem = Some(format!(
            "index continues after its closing record at byte {}",
            window.offset()
        ));
    }
    Ok(Scan {
        index_len,
        data_len: kept.data_bytes,
        summary: kept,
        problem,
        damaged: kept_damaged,
        index_excess: index.len.saturating_sub(index_len),
        data_excess: data_file_len.saturating_sub(kept.data_bytes),
        cut_end_st: running.end_st.max(kept.end_st),
        jumps: kept_jumps,
    })
}
