//! A reader of a store, also while the writer is still appending to it.
//! Readers never modify the store; several can follow one writer.

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::format::{
    decode_record, step_over_damage, BufferRecord, Context, DecodeError, Record, SegmentHeader,
    HEADER_LEN,
};
use crate::seek::KeyframeSeek;
use crate::segment::{
    check_store_files, closing_record, data_path, index_path, list_segments, open_index,
    open_store_file, rebuild_header, IndexWindow, MAX_FRAME,
};
use crate::sparse::{has_hole, range_crc};
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
    index: IndexWindow,
    data: File,
    /// Decoding state at the window's position.
    ctx: Context,
    /// Length of the data file, as last looked up.
    data_len: u64,
    /// Sticky entries to hand out before the next record (after a seek).
    queued: Vec<Entry>,
    /// A damaged buffer record was stepped over: the size it decoded to placed the buffers
    /// after it, until a data checksum confirms that.
    unconfirmed: bool,
}

/// What opening a segment found.
enum Opened {
    Cursor(Box<Cursor>),
    /// Retention removed it.
    Vanished,
    /// The writer is creating it right now.
    NotYet,
    /// Nothing of it can be read, and why.
    Unreadable(String),
}

/// Where a seek lands: a record position with the decoding state and the
/// sticky entries in force there.
struct Landing {
    pos: u64,
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
    /// Store time at which the last buffer read ends: the start of a following segment
    /// whose header must be rebuilt.
    prev_end: u64,
    warnings: Vec<String>,
}

impl Reader {
    /// Opens the store in `dir`. The directory must exist; it may still be
    /// empty if a writer is about to record into it. A segment file that is not a regular
    /// file of the store (a FIFO, a device, a link out of it) is refused here.
    pub fn open(dir: &Path) -> Result<Self, Error> {
        let meta = fs::metadata(dir).map_err(|e| Error::io(dir, e))?;
        if !meta.is_dir() {
            return Err(Error::NotAStore(dir.to_owned()));
        }
        let lock_path = dir.join(LOCK_FILE);
        let lock = open_store_file(dir, &lock_path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => Error::NotAStore(dir.to_owned()),
            _ => Error::io(&lock_path, e),
        })?;
        check_store_files(dir).map_err(|e| Error::io(dir, e))?;
        Ok(Reader {
            dir: dir.to_owned(),
            lock,
            cur: None,
            last_seq: None,
            prev_end: 0,
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
    /// retention under the reader), each said once. Whatever follows one is a
    /// discontinuity.
    pub fn take_warnings(&mut self) -> Vec<String> {
        std::mem::take(&mut self.warnings)
    }

    /// The store time span `(first, end)` of what is on disk now.
    pub fn range(&self) -> Result<Option<(u64, u64)>, Error> {
        let seqs = list_segments(&self.dir).map_err(|e| Error::io(&self.dir, e))?;
        let Some(&last) = seqs.last() else {
            return Ok(None);
        };
        let mut first_st = None;
        for &seq in &seqs {
            if let Some(h) = self.segment_header(seq, 0)? {
                first_st = Some(h.first_st);
                break;
            }
        }
        let Some(first_st) = first_st else {
            return Ok(None);
        };
        let closing = match open_index(&self.dir, last).map_err(|e| Error::io(&self.dir, e))? {
            Some(index) => closing_record(&index).map_err(|e| Error::io(&self.dir, e))?,
            None => None,
        };
        let end = match closing {
            Some((s, _)) => s.end_st,
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
        Ok(Some((first_st, end.max(first_st))))
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
            let at = cur.index.offset();
            let err = match decode_record(cur.index.rest(), &mut cur.ctx) {
                Ok((record, len)) => {
                    cur.index.advance(len);
                    match record {
                        Record::Buffer(b) => {
                            if let Some(b) = self.check_buffer(b)? {
                                self.prev_end = self.prev_end.max(b.end_st());
                                return Ok(Next::Entry(Entry::Buffer(b)));
                            }
                        }
                        Record::Caps(c) => return Ok(Next::Entry(Entry::Caps(c))),
                        Record::Tags(t) => return Ok(Next::Entry(Entry::Tags(t))),
                        Record::SegmentEnd(_) => self.cur = None,
                        Record::StreamEnd(_) => {
                            self.cur = None;
                            if self.next_segment()?.is_none() {
                                return Ok(Next::End);
                            }
                        }
                    }
                    continue;
                }
                Err(DecodeError::Incomplete) => {
                    if cur.index.fill().map_err(|e| cur.io(e))? {
                        continue;
                    }
                    None
                }
                Err(DecodeError::Corrupt(why)) => {
                    cur.index.fill_to(2 * MAX_FRAME).map_err(|e| cur.io(e))?;
                    if let Some((len, rec)) = step_over_damage(cur.index.rest(), &mut cur.ctx) {
                        cur.index.advance(len);
                        cur.unconfirmed |= rec.is_some();
                        let what = if rec.is_some() {
                            "buffer"
                        } else {
                            "caps or tags"
                        };
                        let seq = cur.seq;
                        self.warnings.push(format!(
                            "segment {seq}: {why} at index byte {at}; that one {what} record is skipped"
                        ));
                        continue;
                    }
                    Some(why)
                }
            };
            let (seq, clean_end) = (cur.seq, cur.index.rest().is_empty());
            let unnamed = cur
                .data
                .metadata()
                .map_or(0, |m| m.len())
                .saturating_sub(cur.ctx.data_len());
            // The tail of the segment a live writer is appending to is
            // simply not written yet; anywhere else it is damage.
            if self.writer_active() && !self.has_segment_after()? {
                return Ok(Next::Pending);
            }
            let why = match err {
                Some(why) => Some(why.to_string()),
                // A clean end without a closing record: the recorder stopped without
                // closing (it was killed); nothing is lost, unless data follows unnamed.
                None if clean_end => {
                    (unnamed > 0).then(|| format!("{unnamed} data bytes no index record names"))
                }
                None => Some("the index ends inside a record".into()),
            };
            if let Some(why) = why {
                self.warnings.push(format!(
                    "segment {seq}: {why} at index byte {at}; the rest of this segment is skipped"
                ));
            }
            self.cur = None;
        }
    }

    /// `b` if its bytes can be read: within the data file, and not a hole in it (what a
    /// crafted index over a sparse file would have a reader allocate for nothing).
    fn check_buffer(&mut self, b: BufferRecord) -> Result<Option<BufferRecord>, Error> {
        let cur = self.cur.as_mut().expect("reading a segment");
        if b.end() > cur.data_len {
            cur.data_len = cur.data.metadata().map_err(|e| cur.io(e))?.len();
        }
        if b.end() > cur.data_len {
            self.warnings.push(format!(
                "segment {}: data file ends before byte {} named by the index; \
                 the rest of this segment is skipped",
                cur.seq,
                b.end()
            ));
            self.cur = None;
            return Ok(None);
        }
        // A large buffer over a hole is checked before anyone allocates its size: the hole
        // is summed as the zeros it is, and only what the disk holds is read.
        if b.size > HOLE_CHECK_SIZE
            && has_hole(&cur.data, b.offset, b.end())
            && range_crc(&cur.data, b.offset, b.end(), &mut Vec::new()).map_err(|e| cur.io(e))?
                != b.data_crc
        {
            self.warnings.push(format!(
                "segment {}: data bytes {} to {} were never written (a hole in the file); \
                 buffer skipped",
                cur.seq,
                b.offset,
                b.end()
            ));
            return Ok(None);
        }
        Ok(Some(b))
    }

    /// Reads the payload of `rec` into `dst` (of `rec.size` bytes). Returns
    /// `false`, with a warning, if the bytes fail their checksum.
    pub fn read_data(&mut self, rec: &BufferRecord, dst: &mut [u8]) -> Result<bool, Error> {
        let Some(cur) = &mut self.cur else {
            return Err(Error::NoSegment);
        };
        let seq = cur.seq;
        let res = cur.data.read_exact_at(dst, rec.offset);
        match res {
            Ok(()) if crc32c::crc32c(dst) == rec.data_crc => {
                cur.unconfirmed = false;
                Ok(true)
            }
            Ok(()) if cur.unconfirmed => {
                self.warnings.push(format!(
                    "segment {seq}: the buffers after a damaged index record cannot be placed \
                     in the data file; the rest of this segment is skipped"
                ));
                self.cur = None;
                Ok(false)
            }
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
        let mut prev_first = 0;
        for &seq in &seqs {
            match self.segment_header(seq, prev_first)? {
                Some(h) if h.first_st <= st || target.is_none() => {
                    target = Some(seq);
                    prev_first = h.first_st;
                }
                Some(_) => break,
                None => {}
            }
        }
        self.cur = None;
        self.last_seq = None;
        let Some(seq) = target else { return Ok(None) };
        self.prev_end = prev_first;
        let mut cur = match self.open_cursor(seq)? {
            Opened::Cursor(cur) => cur,
            _ => return Ok(None),
        };
        let mut caps = None;
        let mut tags = None;
        let mut seek = KeyframeSeek::new(st);
        let mut ctx = cur.ctx;
        loop {
            let pos = cur.index.offset();
            let before = ctx;
            let (record, len) = match decode_record(cur.index.rest(), &mut ctx) {
                Ok(r) => r,
                Err(DecodeError::Incomplete) if cur.index.fill().map_err(|e| cur.io(e))? => {
                    continue
                }
                Err(_) => break,
            };
            cur.index.advance(len);
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
        }
        self.last_seq = Some(seq);
        let landed = seek.landing().map(|(st, l)| {
            cur.index.jump(l.pos);
            cur.ctx = l.ctx;
            // Popped from the end: caps first.
            cur.queued.extend(l.tags.map(Entry::Tags));
            cur.queued.extend(l.caps.map(Entry::Caps));
            st
        });
        self.cur = Some(*cur);
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
        let next = self.last_seq.map_or(0, |s| s.saturating_add(1));
        Ok(index_path(&self.dir, next).exists())
    }

    /// The segment after the last one entered, if there is one now.
    fn next_segment(&self) -> Result<Option<u64>, Error> {
        // The usual case, without listing the directory.
        if let Some(next) = self.last_seq.and_then(|s| s.checked_add(1)) {
            if index_path(&self.dir, next).exists() {
                return Ok(Some(next));
            }
        }
        let seqs = list_segments(&self.dir).map_err(|e| Error::io(&self.dir, e))?;
        Ok(seqs.into_iter().find(|&s| Some(s) > self.last_seq))
    }

    fn enter_next_segment(&mut self) -> Result<bool, Error> {
        while let Some(seq) = self.next_segment()? {
            if let Some(expected) = self.last_seq.map(|s| s.saturating_add(1)) {
                if seq != expected {
                    self.warnings.push(format!(
                        "segments {expected} to {} were removed before they were read \
                         (retention, or the reader fell behind); continuing at {seq}",
                        seq - 1
                    ));
                }
            }
            match self.open_cursor(seq)? {
                Opened::Cursor(cur) => {
                    self.last_seq = Some(seq);
                    self.cur = Some(*cur);
                    return Ok(true);
                }
                Opened::NotYet => return Ok(false),
                Opened::Vanished => self.last_seq = Some(seq),
                Opened::Unreadable(why) => {
                    self.warnings.push(format!(
                        "segment {seq}: {why}; segment skipped, reading goes on with the next"
                    ));
                    self.last_seq = Some(seq);
                }
            }
        }
        Ok(false)
    }

    /// The header of segment `seq`, its own or rebuilt (`prev_end`: where the one before
    /// ended); `None` if it has neither.
    fn segment_header(&self, seq: u64, prev_end: u64) -> Result<Option<SegmentHeader>, Error> {
        let io = |e| Error::io(&index_path(&self.dir, seq), e);
        let Some(index) = open_index(&self.dir, seq).map_err(io)? else {
            return Ok(None);
        };
        match index.header {
            Ok(h) => Ok(Some(h)),
            Err(_) => rebuild_header(&self.dir, seq, &index, prev_end).map_err(io),
        }
    }

    fn open_cursor(&mut self, seq: u64) -> Result<Opened, Error> {
        let ipath = index_path(&self.dir, seq);
        let io = |e| Error::io(&ipath, e);
        let Some(index) = open_index(&self.dir, seq).map_err(io)? else {
            return Ok(Opened::Vanished);
        };
        let header = match index.header {
            Ok(h) => h,
            Err(why) => {
                if index.len < HEADER_LEN as u64
                    && self.writer_active()
                    && !index_path(&self.dir, seq.saturating_add(1)).exists()
                {
                    return Ok(Opened::NotYet);
                }
                match rebuild_header(&self.dir, seq, &index, self.prev_end).map_err(io)? {
                    Some(h) => {
                        self.warnings.push(format!(
                            "segment {seq}: {why}; read with a header rebuilt from its file names \
                             and closing record"
                        ));
                        h
                    }
                    None => return Ok(Opened::Unreadable(format!("{why}, and no data file"))),
                }
            }
        };
        let dpath = data_path(&self.dir, seq, header.data_kind);
        let data = match open_store_file(&self.dir, &dpath) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Ok(match index_path(&self.dir, seq).exists() {
                    true => Opened::Unreadable("its data file is missing".into()),
                    false => Opened::Vanished,
                })
            }
            Err(e) => return Err(Error::io(&dpath, e)),
        };
        Ok(Opened::Cursor(Box::new(Cursor {
            seq,
            header,
            index: IndexWindow::new(index.file, HEADER_LEN as u64),
            data,
            ctx: Context::new(&header),
            data_len: 0,
            queued: Vec::new(),
            unconfirmed: false,
        })))
    }
}

impl Cursor {
    fn io(&self, e: io::Error) -> Error {
        Error::Io(format!("segment {}", self.seq), e)
    }
}

/// Buffers larger than this are checked for holes before anyone allocates their size.
const HOLE_CHECK_SIZE: u32 = 1 << 20;
