//! A reader of a store, also while the writer is still appending to it.
//! Readers never modify the store; several can follow one writer.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::format::{
    decode_record, BufferRecord, Context, DecodeError, Record, SegmentHeader, HEADER_LEN,
};
use crate::seek::KeyframeSeek;
use crate::segment::{closed_summary, data_path, index_path, list_segments};
use crate::{Error, LOCK_FILE};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    Caps(String),
    Tags(String),
    Buffer(BufferRecord),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    Entry(Entry),
    /// Nothing more yet, but a writer is recording: ask again later.
    Pending,
    /// The recording ends here.
    End,
}

struct Cursor {
    seq: u64,
    header: SegmentHeader,
    index: File,
    data: File,
    /// Index bytes read so far.
    bytes: Vec<u8>,
    pos: usize,
    /// Decoding state at `pos`.
    ctx: Context,
    /// Length of the data file, as last looked up.
    data_len: u64,
    /// Sticky entries to hand out before the next record (after a seek).
    queued: Vec<Entry>,
}

/// Where a seek lands: a record position with the decoding state and the
/// sticky entries in force there.
struct Landing {
    pos: usize,
    ctx: Context,
    caps: Option<String>,
    tags: Option<String>,
}

pub struct Reader {
    dir: PathBuf,
    lock: File,
    cur: Option<Cursor>,
    /// Sequence number of the last segment entered, to find the next one.
    last_seq: Option<u64>,
    warnings: Vec<String>,
}

impl Reader {
    /// Opens the store in `dir`. The directory must exist; it may still be
    /// empty if a writer is about to record into it.
    pub fn open(dir: &Path) -> Result<Self, Error> {
        let meta = fs::metadata(dir).map_err(|e| Error::io(dir, e))?;
        if !meta.is_dir() {
            return Err(Error::NotAStore(dir.to_owned()));
        }
        let lock_path = dir.join(LOCK_FILE);
        let lock = OpenOptions::new()
            .read(true)
            .open(&lock_path)
            .map_err(|e| match e.kind() {
                io::ErrorKind::NotFound => Error::NotAStore(dir.to_owned()),
                _ => Error::io(&lock_path, e),
            })?;
        Ok(Reader {
            dir: dir.to_owned(),
            lock,
            cur: None,
            last_seq: None,
            warnings: Vec::new(),
        })
    }

    /// Whether a writer holds the store open right now.
    pub fn writer_active(&self) -> bool {
        match self.lock.try_lock_shared() {
            Ok(()) => {
                let _ = self.lock.unlock();
                false
            }
            Err(_) => true,
        }
    }

    /// Problems met while reading (corrupt records, segments removed by
    /// retention under the reader), each said once.
    pub fn take_warnings(&mut self) -> Vec<String> {
        std::mem::take(&mut self.warnings)
    }

    /// The store time span `(first, end)` of what is on disk now.
    pub fn range(&self) -> Result<Option<(u64, u64)>, Error> {
        let seqs = list_segments(&self.dir).map_err(|e| Error::io(&self.dir, e))?;
        let (Some(&first), Some(&last)) = (seqs.first(), seqs.last()) else {
            return Ok(None);
        };
        let Some(first_st) = self.segment_header(first)?.map(|h| h.first_st) else {
            return Ok(None);
        };
        let end = match closed_summary(&self.dir, last).map_err(|e| Error::io(&self.dir, e))? {
            Some((_, s, _)) => s.end_st,
            None => {
                let mut r = Reader::open(&self.dir)?;
                r.seek(u64::MAX)?;
                let mut end = first_st;
                while let Next::Entry(e) = r.read_next()? {
                    if let Entry::Buffer(b) = e {
                        end = end.max(b.end_st());
                    }
                }
                end
            }
        };
        Ok(Some((first_st, end)))
    }

    /// The next entry, in recording order.
    pub fn read_next(&mut self) -> Result<Next, Error> {
        loop {
            if self.cur.is_none() && !self.enter_next_segment()? {
                return Ok(if self.writer_active() {
                    Next::Pending
                } else {
                    Next::End
                });
            }
            let cur = self.cur.as_mut().expect("entered above");
            if let Some(e) = cur.queued.pop() {
                return Ok(Next::Entry(e));
            }
            match decode_record(&cur.bytes[cur.pos..], &mut cur.ctx) {
                Ok((record, len)) => {
                    cur.pos += len;
                    match record {
                        Record::Buffer(b) => {
                            // Checked before anyone allocates `b.size` bytes.
                            if b.end() > cur.data_len {
                                cur.data_len = cur
                                    .data
                                    .metadata()
                                    .map_err(|e| Error::Io(format!("segment {}", cur.seq), e))?
                                    .len();
                            }
                            if b.end() <= cur.data_len {
                                return Ok(Next::Entry(Entry::Buffer(b)));
                            }
                            self.warnings.push(format!(
                                "segment {}: data file ends before byte {} named by the index; \
                                 the rest of this segment is skipped",
                                cur.seq,
                                b.end()
                            ));
                            self.cur = None;
                        }
                        Record::Caps(c) => return Ok(Next::Entry(Entry::Caps(c))),
                        Record::Tags(t) => return Ok(Next::Entry(Entry::Tags(t))),
                        Record::SegmentEnd(_) => self.cur = None,
                        Record::StreamEnd(_) => {
                            self.cur = None;
                            if !self.has_segment_after()? {
                                return Ok(Next::End);
                            }
                        }
                    }
                }
                Err(err) => {
                    if cur.read_more()? {
                        continue;
                    }
                    let (seq, pos, clean_end) = (cur.seq, cur.pos, cur.pos == cur.bytes.len());
                    // The tail of the segment a live writer is appending to is
                    // simply not written yet; anywhere else it is damage.
                    if self.writer_active() && !self.has_segment_after()? {
                        return Ok(Next::Pending);
                    }
                    let why = match err {
                        // A clean end without a closing record: the recorder
                        // stopped without closing (it was killed); nothing is lost.
                        DecodeError::Incomplete if clean_end => None,
                        DecodeError::Incomplete => Some("the index ends inside a record"),
                        DecodeError::Corrupt(why) => Some(why),
                    };
                    if let Some(why) = why {
                        self.warnings.push(format!(
                            "segment {seq}: {why} at index byte {pos}; the rest of this segment is skipped"
                        ));
                    }
                    self.cur = None;
                }
            }
        }
    }

    /// Reads the payload of `rec` into `dst` (of `rec.size` bytes). Returns
    /// `false`, with a warning, if the bytes fail their checksum.
    pub fn read_data(&mut self, rec: &BufferRecord, dst: &mut [u8]) -> Result<bool, Error> {
        let Some(cur) = &self.cur else {
            return Err(Error::NoSegment);
        };
        let seq = cur.seq;
        let res = cur.data.read_exact_at(dst, rec.offset);
        match res {
            Ok(()) if crc32c::crc32c(dst) == rec.data_crc => Ok(true),
            Ok(()) => {
                self.warnings.push(format!(
                    "segment {seq}: data checksum mismatch at data byte {}; buffer skipped",
                    rec.offset
                ));
                Ok(false)
            }
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                self.warnings.push(format!(
                    "segment {seq}: data file ends before byte {}; the rest of this segment is skipped",
                    rec.end()
                ));
                self.cur = None;
                Ok(false)
            }
            Err(e) => Err(Error::io(
                &data_path(&self.dir, seq, cur.header.data_kind),
                e,
            )),
        }
    }

    /// Positions the reader on the last keyframe at or before store time `st`
    /// (the oldest kept buffer if `st` is older). The caps and tags in force
    /// there come first. Returns the store time of the buffer landed on.
    pub fn seek(&mut self, st: u64) -> Result<Option<u64>, Error> {
        let seqs = list_segments(&self.dir).map_err(|e| Error::io(&self.dir, e))?;
        let mut target = None;
        for &seq in &seqs {
            match self.segment_header(seq)? {
                Some(h) if h.first_st <= st || target.is_none() => target = Some(seq),
                _ => break,
            }
        }
        self.cur = None;
        self.last_seq = None;
        let Some(seq) = target else { return Ok(None) };
        let Some(mut cur) = self.open_cursor(seq)? else {
            return Ok(None);
        };
        cur.read_more()?;
        let mut caps = None;
        let mut tags = None;
        let mut seek = KeyframeSeek::new(st);
        let mut pos = cur.pos;
        let mut ctx = cur.ctx;
        loop {
            let before = ctx;
            let Ok((record, len)) = decode_record(&cur.bytes[pos..], &mut ctx) else {
                break;
            };
            match record {
                Record::Buffer(b) => {
                    let landing = || Landing {
                        pos,
                        ctx: before,
                        caps: caps.clone(),
                        tags: tags.clone(),
                    };
                    if !seek.offer(b.st, b.is_keyframe(), landing) {
                        break;
                    }
                }
                Record::Caps(c) => caps = Some(c),
                Record::Tags(t) => tags = Some(t),
                _ => {}
            }
            pos += len;
        }
        self.last_seq = Some(seq);
        let landed = seek.landing().map(|(st, l)| {
            cur.pos = l.pos;
            cur.ctx = l.ctx;
            // Popped from the end: caps first.
            cur.queued.extend(l.tags.map(Entry::Tags));
            cur.queued.extend(l.caps.map(Entry::Caps));
            st
        });
        self.cur = Some(cur);
        Ok(landed)
    }

    /// Back to the oldest buffer in the store.
    pub fn rewind(&mut self) -> Result<Option<u64>, Error> {
        self.seek(0)
    }

    /// Whether the writer has moved past the current segment. The writer
    /// numbers segments consecutively, so one look suffices; this runs on
    /// every poll at the live edge, where listing a large store would not do.
    fn has_segment_after(&self) -> Result<bool, Error> {
        let next = self.last_seq.map_or(0, |s| s + 1);
        Ok(index_path(&self.dir, next).exists())
    }

    fn enter_next_segment(&mut self) -> Result<bool, Error> {
        let seqs = match self.last_seq {
            // The usual case, without listing the directory.
            Some(last) if index_path(&self.dir, last + 1).exists() => vec![last + 1],
            _ => list_segments(&self.dir).map_err(|e| Error::io(&self.dir, e))?,
        };
        let after = self.last_seq;
        for seq in seqs.into_iter().filter(|&s| Some(s) > after) {
            if let Some(expected) = self.last_seq.map(|s| s + 1) {
                if seq != expected {
                    self.warnings.push(format!(
                        "segments {expected} to {} were removed before they were read \
                         (retention, or the reader fell behind); continuing at {seq}",
                        seq - 1
                    ));
                }
            }
            match self.open_cursor(seq)? {
                Some(cur) => {
                    self.last_seq = Some(seq);
                    self.cur = Some(cur);
                    return Ok(true);
                }
                // The writer is creating it right now.
                None if self.writer_active() => return Ok(false),
                None => {
                    self.warnings.push(format!(
                        "segment {seq}: unreadable index header; segment skipped"
                    ));
                    self.last_seq = Some(seq);
                }
            }
        }
        Ok(false)
    }

    fn segment_header(&self, seq: u64) -> Result<Option<SegmentHeader>, Error> {
        let path = index_path(&self.dir, seq);
        let mut head = [0u8; HEADER_LEN];
        match File::open(&path).and_then(|f| f.read_exact_at(&mut head, 0)) {
            Ok(()) => Ok(SegmentHeader::decode(&head).ok()),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::UnexpectedEof
                ) =>
            {
                Ok(None)
            }
            Err(e) => Err(Error::io(&path, e)),
        }
    }

    /// `None` if the segment vanished (retention) or has no valid header yet.
    fn open_cursor(&self, seq: u64) -> Result<Option<Cursor>, Error> {
        let ipath = index_path(&self.dir, seq);
        let mut index = match File::open(&ipath) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(&ipath, e)),
        };
        let mut bytes = Vec::new();
        index
            .read_to_end(&mut bytes)
            .map_err(|e| Error::io(&ipath, e))?;
        let Ok(header) = SegmentHeader::decode(&bytes) else {
            return Ok(None);
        };
        let dpath = data_path(&self.dir, seq, header.data_kind);
        let data = match File::open(&dpath) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(&dpath, e)),
        };
        Ok(Some(Cursor {
            seq,
            header,
            index,
            data,
            bytes,
            pos: HEADER_LEN,
            ctx: Context::new(&header),
            data_len: 0,
            queued: Vec::new(),
        }))
    }
}

impl Cursor {
    /// Appends whatever the index file gained since the last read.
    fn read_more(&mut self) -> Result<bool, Error> {
        let before = self.bytes.len();
        self.index
            .seek(SeekFrom::Start(before as u64))
            .and_then(|_| self.index.read_to_end(&mut self.bytes))
            .map_err(|e| Error::Io(format!("segment {}", self.seq), e))?;
        Ok(self.bytes.len() > before)
    }
}
