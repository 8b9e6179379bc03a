//! The single writer of a store: appends buffers to the current segment,
//! rotates segments, applies retention, and repairs a torn tail on open.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, IoSlice, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::format::{
    BufferRecord, Context, DataKind, Record, SegmentHeader, SegmentSummary, FLAG_DELTA_UNIT,
    MAX_BUFFER_SIZE, MAX_PAYLOAD,
};
use crate::segment::{data_path, index_path};
use crate::{Error, LOCK_FILE, MAX_STORE_GAP};

mod file_ops;
mod recovery;
mod store_clock;

use file_ops::{kick, remove_segment, reserve, write_all_vectored, DATA_RESERVE, INDEX_RESERVE};
pub use store_clock::StoreClock;

#[derive(Debug, Clone, Copy, Default)]
pub struct WriterConfig {
    /// Start a new segment at the first keyframe after this much store time
    /// (at twice this, even without a keyframe). 0: never.
    pub max_segment_time: u64,
    /// Remove whole old segments while the store spans more than this. 0: keep all.
    pub max_size_time: u64,
    /// Remove whole old segments while the store holds more bytes than this. 0: keep all.
    pub max_size_bytes: u64,
    /// Retention spares the segments already there at open: it counts and removes only what
    /// this writer records. For a retention the user did not ask for (offset-tee's own),
    /// so pointing it at a recording never eats that recording.
    pub keep_existing: bool,
}

/// What the record of a buffer keeps besides its bytes: its times, arrival and flags.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecordMeta {
    /// Store time, if the caller ran the store clock itself ([`Writer::store_clock`]);
    /// `None`: the writer's clock gives it.
    pub st: Option<u64>,
    pub pts: Option<u64>,
    pub dts: Option<u64>,
    pub duration: Option<u64>,
    pub arrival: Option<u64>,
    pub flags: u32,
}

#[derive(Debug, Clone, Copy)]
pub enum Item<'a> {
    /// A buffer's bytes, in one or more parts (its memories), written as is.
    Buffer(RecordMeta, &'a [&'a [u8]]),
    Caps(&'a str),
    Tags(&'a str),
}

#[derive(Debug)]
struct ClosedSegment {
    seq: u64,
    kind: DataKind,
    summary: SegmentSummary,
    /// Store time it covers for retention: its span less jumps longer than [`MAX_STORE_GAP`].
    span: u64,
}

#[derive(Debug)]
struct OpenSegment {
    seq: u64,
    kind: DataKind,
    data: File,
    index: File,
    summary: SegmentSummary,
    /// Data and index below these offsets have been handed to writeback.
    kicked: u64,
    index_kicked: u64,
    /// Blocks reserved ahead (`fallocate`) up to these offsets.
    reserved: u64,
    index_reserved: u64,
    /// What is completely on disk, data and index alike: the state a failed
    /// write rolls back to.
    committed: SegmentSummary,
    committed_index_len: u64,
    /// Buffer records are coded against the one before.
    ctx: Context,
    committed_ctx: Context,
}

pub struct Writer {
    dir: PathBuf,
    _lock: File,
    config: WriterConfig,
    session: u64,
    closed: VecDeque<ClosedSegment>,
    closed_bytes: u64,
    /// The first `protected` closed segments are spared by retention (`keep_existing`).
    protected: usize,
    /// Bytes and store time of the closed segments retention may remove, gaps between them
    /// included (gaps longer than [`MAX_STORE_GAP`] excluded).
    eligible_bytes: u64,
    eligible_span: u64,
    notices: Vec<String>,
    cur: Option<OpenSegment>,
    next_seq: u64,
    data_kind: DataKind,
    caps: Option<String>,
    tags: Option<String>,
    clock: StoreClock,
    pending_index: Vec<u8>,
    warnings: Vec<String>,
    failed: bool,
}

impl Writer {
    /// Opens (creating if needed) the store in `dir` for appending. Takes the
    /// store's writer lock, and cuts any torn or corrupt tail left by a crash;
    /// what was cut is reported by [`Writer::take_warnings`].
    pub fn open(dir: &Path, config: WriterConfig) -> Result<Self, Error> {
        fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let lock_path = dir.join(LOCK_FILE);
        // Non-blocking, and only a regular file: a FIFO put there must not hang the open.
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW)
            .open(&lock_path)
            .and_then(|f| match f.metadata()?.is_file() {
                true => Ok(f),
                false => Err(io::ErrorKind::InvalidData.into()),
            })
            .map_err(|e| match e.raw_os_error() {
                // A FIFO without a reader, a link, a directory: said as what they are.
                Some(libc::ENXIO | libc::ELOOP | libc::EISDIR) | None => {
                    io::Error::new(io::ErrorKind::InvalidData, "not a regular file; refused")
                }
                _ => e,
            })
            .map_err(|e| Error::io(&lock_path, e))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => return Err(Error::Busy(dir.to_owned())),
            Err(fs::TryLockError::Error(e)) => return Err(Error::io(&lock_path, e)),
        }
        let mut w = Writer {
            dir: dir.to_owned(),
            _lock: lock,
            config,
            session: session_id(),
            closed: VecDeque::new(),
            closed_bytes: 0,
            protected: 0,
            eligible_bytes: 0,
            eligible_span: 0,
            notices: Vec::new(),
            cur: None,
            next_seq: 0,
            data_kind: DataKind::Raw,
            caps: None,
            tags: None,
            clock: StoreClock::default(),
            pending_index: Vec::new(),
            warnings: Vec::new(),
            failed: false,
        };
        w.load_existing()?;
        if config.keep_existing {
            w.protect_existing();
        }
        w.apply_retention();
        Ok(w)
    }

    /// Appends items in order. Data is written before the index records that
    /// name it, so a reader never sees a record whose bytes are missing.
    pub fn write(&mut self, items: &[Item]) -> Result<(), Error> {
        if self.failed {
            return Err(Error::Failed);
        }
        let mut iov: Vec<IoSlice> = Vec::with_capacity(items.len());
        let res = self.write_items(items, &mut iov);
        let res = res.and_then(|()| self.flush(&mut iov));
        if res.is_err() {
            drop(iov);
            self.roll_back();
            self.failed = true;
        }
        res?;
        self.kick_writeback();
        self.apply_retention();
        Ok(())
    }

    fn write_items<'a>(
        &mut self,
        items: &[Item<'a>],
        iov: &mut Vec<IoSlice<'a>>,
    ) -> Result<(), Error> {
        for item in items {
            match *item {
                Item::Buffer(meta, parts) => {
                    let size: usize = parts.iter().map(|p| p.len()).sum();
                    if size > MAX_BUFFER_SIZE as usize {
                        return Err(Error::TooLarge(size));
                    }
                    let st = match meta.st {
                        Some(st) => self.clock.accept(st, &meta),
                        None => self.clock.next(&meta),
                    };
                    if self.should_rotate(st, meta.flags) {
                        self.flush(iov)?;
                        self.close_segment(false)?;
                    }
                    if self.cur.is_none() {
                        self.open_segment(st)?;
                    }
                    let seg = self.cur.as_mut().expect("opened above");
                    let rec = BufferRecord {
                        st,
                        pts: meta.pts,
                        dts: meta.dts,
                        duration: meta.duration,
                        arrival: meta.arrival,
                        offset: seg.summary.data_bytes,
                        size: size as u32,
                        flags: meta.flags,
                        data_crc: parts.iter().fold(0, |crc, p| crc32c::crc32c_append(crc, p)),
                    };
                    Record::Buffer(rec).encode(&mut self.pending_index, &mut seg.ctx);
                    seg.summary.data_bytes += size as u64;
                    seg.summary.buffers += 1;
                    seg.summary.end_st = seg.summary.end_st.max(self.clock.end_st);
                    iov.extend(parts.iter().map(|p| IoSlice::new(p)));
                    if iov.len() >= IOV_BATCH {
                        self.flush(iov)?;
                    }
                }
                Item::Caps(caps) => {
                    check_text_len(caps)?;
                    let kind = DataKind::for_caps(caps);
                    if kind != self.data_kind && self.cur.is_some() {
                        // A `.ts` segment holds nothing but TS bytes.
                        self.flush(iov)?;
                        self.close_segment(false)?;
                    }
                    self.data_kind = kind;
                    if self.cur.is_some() {
                        Record::Caps(caps.to_owned())
                            .encode(&mut self.pending_index, &mut Context::default());
                    }
                    self.caps = Some(caps.to_owned());
                }
                Item::Tags(tags) => {
                    check_text_len(tags)?;
                    if self.cur.is_some() {
                        Record::Tags(tags.to_owned())
                            .encode(&mut self.pending_index, &mut Context::default());
                    }
                    self.tags = Some(tags.to_owned());
                }
            }
        }
        Ok(())
    }

    fn should_rotate(&self, st: u64, flags: u32) -> bool {
        let Some(seg) = &self.cur else { return false };
        let max = self.config.max_segment_time;
        if max == 0 || seg.summary.buffers == 0 {
            return false;
        }
        let age = st.saturating_sub(seg.summary.first_st);
        age >= max && (flags & FLAG_DELTA_UNIT == 0 || age >= max.saturating_mul(2))
    }

    fn open_segment(&mut self, first_st: u64) -> Result<(), Error> {
        let seq = self.next_seq;
        let kind = self.data_kind;
        let dpath = data_path(&self.dir, seq, kind);
        let ipath = index_path(&self.dir, seq);
        let create = |p: &Path| {
            OpenOptions::new()
                .create_new(true)
                .append(true)
                .open(p)
                .map_err(|e| Error::io(p, e))
        };
        // Data first: a reader that finds the index also finds the data file.
        let data = create(&dpath)?;
        let index = create(&ipath)?;
        self.next_seq += 1;
        let header = SegmentHeader {
            seq,
            data_kind: kind,
            session: self.session,
            first_st,
        };
        self.pending_index.extend_from_slice(&header.encode());
        if let Some(caps) = &self.caps {
            Record::Caps(caps.clone()).encode(&mut self.pending_index, &mut Context::default());
        }
        if let Some(tags) = &self.tags {
            Record::Tags(tags.clone()).encode(&mut self.pending_index, &mut Context::default());
        }
        self.cur = Some(OpenSegment {
            seq,
            kind,
            data,
            index,
            summary: SegmentSummary {
                first_st,
                end_st: first_st,
                ..Default::default()
            },
            kicked: 0,
            index_kicked: 0,
            reserved: 0,
            index_reserved: 0,
            committed: SegmentSummary {
                first_st,
                end_st: first_st,
                ..Default::default()
            },
            committed_index_len: 0,
            ctx: Context::new(&header),
            committed_ctx: Context::new(&header),
        });
        // Make the new names durable, or a power cut could lose whole segments.
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| Error::io(&self.dir, e))
    }

    fn flush(&mut self, iov: &mut Vec<IoSlice>) -> Result<(), Error> {
        let Some(seg) = &mut self.cur else {
            debug_assert!(iov.is_empty());
            return Ok(());
        };
        let dpath = || data_path(&self.dir, seg.seq, seg.kind);
        write_all_vectored(&mut seg.data, iov).map_err(|e| Error::io(&dpath(), e))?;
        iov.clear();
        if !self.pending_index.is_empty() {
            seg.index
                .write_all(&self.pending_index)
                .map_err(|e| Error::io(&index_path(&self.dir, seg.seq), e))?;
            seg.committed_index_len += self.pending_index.len() as u64;
            self.pending_index.clear();
        }
        seg.committed = seg.summary;
        seg.committed_ctx = seg.ctx;
        Ok(())
    }

    /// After a failed write (a full disk): cuts both files back to what was
    /// completely written, so the store holds no torn record, and closes the
    /// segment if there is room for it. Best effort: the next open repairs
    /// whatever this could not.
    fn roll_back(&mut self) {
        self.pending_index.clear();
        let Some(seg) = &mut self.cur else { return };
        let _ = seg.data.set_len(seg.committed.data_bytes);
        let _ = seg.index.set_len(seg.committed_index_len);
        seg.summary = seg.committed;
        seg.ctx = seg.committed_ctx;
        if seg.summary.buffers == 0 {
            let (seq, kind) = (seg.seq, seg.kind);
            self.cur = None;
            remove_segment(&self.dir, seq, Some(kind));
            return;
        }
        let _ = self.close_segment(true);
    }

    fn close_segment(&mut self, stream_end: bool) -> Result<(), Error> {
        let Some(mut seg) = self.cur.take() else {
            return Ok(());
        };
        let ipath = index_path(&self.dir, seg.seq);
        let mut rec = Vec::new();
        if stream_end {
            Record::StreamEnd(seg.summary).encode(&mut rec, &mut seg.ctx);
        } else {
            Record::SegmentEnd(seg.summary).encode(&mut rec, &mut seg.ctx);
        }
        let index_len = seg.committed_index_len + rec.len() as u64;
        // Truncating to the size hands back the blocks reserved past it.
        seg.index
            .write_all(&rec)
            .and_then(|()| seg.index.set_len(index_len))
            .and_then(|()| seg.index.sync_data())
            .map_err(|e| Error::io(&ipath, e))?;
        seg.data
            .set_len(seg.summary.data_bytes)
            .and_then(|()| seg.data.sync_data())
            .map_err(|e| Error::io(&data_path(&self.dir, seg.seq, seg.kind), e))?;
        self.push_closed(ClosedSegment {
            seq: seg.seq,
            kind: seg.kind,
            summary: seg.summary,
            span: seg.summary.end_st.saturating_sub(seg.summary.first_st),
        });
        Ok(())
    }

    fn push_closed(&mut self, seg: ClosedSegment) {
        // Summaries come from files: a crafted one must not overflow the totals.
        self.closed_bytes = self.closed_bytes.saturating_add(seg.summary.data_bytes);
        if self.closed.len() > self.protected {
            let prev = self.closed.back().expect("non-empty");
            let gap = counted_gap(prev.summary.end_st, seg.summary.first_st);
            self.eligible_span = self.eligible_span.saturating_add(gap);
        }
        self.eligible_span = self.eligible_span.saturating_add(seg.span);
        self.eligible_bytes = self.eligible_bytes.saturating_add(seg.summary.data_bytes);
        self.closed.push_back(seg);
    }

    /// From now on retention spares every segment closed so far, and says so if they hold
    /// more than it keeps.
    fn protect_existing(&mut self) {
        let (n, span, bytes) = (self.closed.len(), self.eligible_span, self.eligible_bytes);
        let (max_time, max_bytes) = (self.config.max_size_time, self.config.max_size_bytes);
        if (max_time > 0 && span > max_time) || (max_bytes > 0 && bytes > max_bytes) {
            self.notices.push(format!(
                "kept the {n} segments recorded there before ({}, {bytes} bytes): retention \
                 applies to what is recorded from now on; set max-size-time or max-size-bytes \
                 to apply it to them too",
                recovery::secs(span)
            ));
        }
        self.protected = n;
        self.eligible_span = 0;
        self.eligible_bytes = 0;
    }

    /// Starts writeback of every whole page written so far, data and index,
    /// so dirty data leaves the page cache steadily instead of in the
    /// kernel's periodic bursts. Partial pages wait for the next call or
    /// [`Writer::sync`], so no page is written twice.
    ///
    /// Blocks are reserved ahead in large chunks, so the journal commit of
    /// each `fdatasync` carries no block allocation: it stays a few blocks,
    /// and writes stay close to the stream's own rate.
    fn kick_writeback(&mut self) {
        let Some(seg) = &mut self.cur else { return };
        kick(&seg.data, &mut seg.kicked, seg.committed.data_bytes);
        kick(&seg.index, &mut seg.index_kicked, seg.committed_index_len);
        reserve(
            &seg.data,
            &mut seg.reserved,
            seg.committed.data_bytes,
            DATA_RESERVE,
        );
        reserve(
            &seg.index,
            &mut seg.index_reserved,
            seg.committed_index_len,
            INDEX_RESERVE,
        );
    }

    /// Makes everything written so far durable (`fdatasync`).
    pub fn sync(&mut self) -> Result<(), Error> {
        if let Some(seg) = &self.cur {
            seg.data
                .sync_data()
                .map_err(|e| Error::io(&data_path(&self.dir, seg.seq, seg.kind), e))?;
            seg.index
                .sync_data()
                .map_err(|e| Error::io(&index_path(&self.dir, seg.seq), e))?;
        }
        Ok(())
    }

    /// Marks the end of the recorded stream (EOS) and makes it durable.
    /// Buffers written afterwards start a new segment.
    pub fn end_stream(&mut self) -> Result<(), Error> {
        if self.failed {
            return Err(Error::Failed);
        }
        let res = self.close_segment(true);
        if res.is_err() {
            self.failed = true;
        }
        res
    }

    fn apply_retention(&mut self) {
        let (max_time, max_bytes) = (self.config.max_size_time, self.config.max_size_bytes);
        if max_time == 0 && max_bytes == 0 {
            return;
        }
        loop {
            let eligible = self.closed.len() - self.protected;
            let segments = eligible + usize::from(self.cur.is_some());
            if eligible == 0 || segments < 2 {
                return;
            }
            let (mut span, mut bytes) = (self.eligible_span, self.eligible_bytes);
            if let Some(cur) = &self.cur {
                let prev_end = self.closed.back().expect("eligible > 0").summary.end_st;
                span = span
                    .saturating_add(counted_gap(prev_end, cur.summary.first_st))
                    .saturating_add(cur.summary.end_st.saturating_sub(cur.summary.first_st));
                bytes = bytes.saturating_add(cur.summary.data_bytes);
            }
            let over = (max_time > 0 && span > max_time) || (max_bytes > 0 && bytes > max_bytes);
            if !over {
                return;
            }
            let oldest = self.closed.remove(self.protected).expect("eligible > 0");
            self.closed_bytes = self.closed_bytes.saturating_sub(oldest.summary.data_bytes);
            self.eligible_bytes = self
                .eligible_bytes
                .saturating_sub(oldest.summary.data_bytes);
            self.eligible_span = self.eligible_span.saturating_sub(oldest.span);
            if let Some(next) = self.closed.get(self.protected) {
                let gap = counted_gap(oldest.summary.end_st, next.summary.first_st);
                self.eligible_span = self.eligible_span.saturating_sub(gap);
            }
            remove_segment(&self.dir, oldest.seq, Some(oldest.kind));
        }
    }

    /// Problems found and repaired when the store was opened.
    pub fn take_warnings(&mut self) -> Vec<String> {
        std::mem::take(&mut self.warnings)
    }

    /// What opening the store decided that is not a repair (earlier recordings kept).
    pub fn take_notices(&mut self) -> Vec<String> {
        std::mem::take(&mut self.notices)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Segments in the store, including the one being written.
    pub fn segment_count(&self) -> usize {
        self.closed.len() + usize::from(self.cur.is_some())
    }

    /// A copy of the store clock as it stands (at open: continuing after what is stored).
    pub fn store_clock(&self) -> StoreClock {
        self.clock.clone()
    }

    /// Changes the retention (`max_size_time`, `max_size_bytes`) from now on.
    pub fn set_retention(&mut self, max_size_time: u64, max_size_bytes: u64) {
        self.config.max_size_time = max_size_time;
        self.config.max_size_bytes = max_size_bytes;
        self.apply_retention();
    }

    /// Data bytes in the store.
    pub fn store_bytes(&self) -> u64 {
        self.closed_bytes
            .saturating_add(self.cur.as_ref().map_or(0, |s| s.summary.data_bytes))
    }

    /// Store time covered, from the oldest kept buffer to the end of the newest.
    pub fn store_span(&self) -> u64 {
        let first = self
            .closed
            .front()
            .map(|c| c.summary.first_st)
            .or(self.cur.as_ref().map(|s| s.summary.first_st));
        first.map_or(0, |f| self.clock.end_st.saturating_sub(f))
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        if !self.failed && self.cur.is_some() {
            let _ = self.end_stream();
        }
    }
}

/// The store time between two segments that retention counts: none for a jump no recorder
/// writes.
fn counted_gap(prev_end: u64, next_first: u64) -> u64 {
    match next_first.saturating_sub(prev_end) {
        gap if gap > MAX_STORE_GAP => 0,
        gap => gap,
    }
}

/// Stays under `IOV_MAX` (1024 on Linux).
const IOV_BATCH: usize = 512;
fn check_text_len(s: &str) -> Result<(), Error> {
    if s.len() > MAX_PAYLOAD {
        return Err(Error::TooLarge(s.len()));
    }
    Ok(())
}

fn session_id() -> u64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    (now.as_nanos() as u64) ^ (u64::from(std::process::id()) << 32)
}
