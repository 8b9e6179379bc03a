//! Opening a store a writer left. Only what is torn is cut: the unfinished tail of the last
//! segment after a crash. Everything else is kept as it is, damaged or not: a damaged header
//! is rebuilt, a damaged record stays for readers to skip, and each repair is said.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;

use super::file_ops::remove_segment;
use super::{ClosedSegment, Writer};
use crate::format::{Context, DataKind, Record, SegmentHeader, SegmentSummary, HEADER_LEN};
use crate::segment::{
    check_store_files, closing_record, data_kind_on_disk, data_path, index_path,
    list_segment_files, list_segments, open_index, rebuild_header, scan_segment, IndexFile,
};
use crate::{Error, MAX_PLAUSIBLE_ST, MAX_STORE_GAP};

impl Writer {
    pub(super) fn load_existing(&mut self) -> Result<(), Error> {
        check_store_files(&self.dir).map_err(|e| Error::io(&self.dir, e))?;
        let seqs = list_segments(&self.dir).map_err(|e| Error::io(&self.dir, e))?;
        let last = seqs.last().copied();
        for seq in list_segment_files(&self.dir).map_err(|e| Error::io(&self.dir, e))? {
            if seqs.binary_search(&seq).is_err() {
                self.warnings.push(format!(
                    "segment {seq}: a data file without its index; kept as it is, unreadable"
                ));
            }
            // New segments go past every file there, never over one.
            self.next_seq = self.next_seq.max(seq.saturating_add(1));
        }
        for seq in seqs {
            let ipath = index_path(&self.dir, seq);
            let Some(index) = open_index(&self.dir, seq).map_err(|e| Error::io(&ipath, e))? else {
                continue;
            };
            let Some(seg) = self.load_segment(seq, index, Some(seq) == last)? else {
                continue;
            };
            if seg.summary.end_st > MAX_PLAUSIBLE_ST {
                // Continuing from there would leave the store no time to run in.
                self.warnings.push(format!(
                    "segment {seq}: store time {} is past any recording's; the store time \
                     goes on from the segments before it",
                    secs(seg.summary.end_st)
                ));
            } else {
                self.clock.end_st = self.clock.end_st.max(seg.summary.end_st);
            }
            self.clock.last_st = self.clock.end_st;
            self.push_closed(seg);
        }
        Ok(())
    }

    /// Takes one segment in: its summary, its header rebuilt if damaged, and, for the last
    /// segment only, its torn tail cut and a closing record added.
    fn load_segment(
        &mut self,
        seq: u64,
        index: IndexFile,
        last: bool,
    ) -> Result<Option<ClosedSegment>, Error> {
        let ipath = index_path(&self.dir, seq);
        let io = |e| Error::io(&ipath, e);
        let Some(header) = self.usable_header(seq, &index)? else {
            let data = data_kind_on_disk(&self.dir, seq, None)
                .and_then(|k| fs::metadata(data_path(&self.dir, seq, k)).ok())
                .map_or(0, |m| m.len());
            if index.len < HEADER_LEN as u64 && last {
                // The writer died creating it, before its first index write: torn.
                self.warnings.push(format!(
                    "segment {seq}: no index header ({} bytes of index); removed, with {data} \
                     data bytes no index record names",
                    index.len
                ));
                remove_segment(&self.dir, seq, None);
            } else if index.len < HEADER_LEN as u64 {
                self.warnings.push(format!(
                    "segment {seq}: its index holds no header ({} bytes): its {data} data bytes \
                     cannot be read; left as they are",
                    index.len
                ));
            } else {
                self.warnings.push(format!(
                    "segment {seq}: damaged index header and no data file: nothing of it can be \
                     read; left as it is"
                ));
            }
            return Ok(None);
        };
        let kind = header.data_kind;
        if let Some((summary, _)) = closing_record(&index).map_err(io)? {
            self.check_data_file(seq, kind, summary.data_bytes);
            return self.closed_segment(seq, &index, &header, summary).map(Some);
        }
        let scan = scan_segment(&self.dir, &index, &header, last).map_err(io)?;
        if !last {
            // Damage or a crash never repaired, with recordings after it: nothing is cut.
            self.warnings.push(format!(
                "segment {seq} is not closed ({}); kept as it is: readers play its {} intact \
                 buffers and skip the rest",
                scan.problem.as_deref().unwrap_or("no closing record"),
                scan.summary.buffers,
            ));
            return Ok(Some(ClosedSegment {
                seq,
                kind,
                summary: scan.summary,
                span: span_of(&scan.summary, scan.jumps),
            }));
        }
        let cut = format!(
            "cut {} index bytes and {} data bytes (store time {} to {})",
            scan.index_excess,
            scan.data_excess,
            secs(scan.summary.end_st),
            secs(scan.cut_end_st),
        );
        if scan.summary.buffers == 0 {
            self.warnings.push(format!(
                "segment {seq}: {}; no intact buffer, removed: {cut}",
                scan.problem.as_deref().unwrap_or("no buffer"),
            ));
            remove_segment(&self.dir, seq, Some(kind));
            return Ok(None);
        }
        let index = OpenOptions::new().append(true).open(&ipath).map_err(io)?;
        index.set_len(scan.index_len).map_err(io)?;
        let dpath = data_path(&self.dir, seq, kind);
        let data = OpenOptions::new()
            .write(true)
            .open(&dpath)
            .map_err(|e| Error::io(&dpath, e))?;
        data.set_len(scan.data_len)
            .map_err(|e| Error::io(&dpath, e))?;
        if scan.problem.is_some() || scan.data_excess > 0 {
            let damaged = match scan.damaged {
                0 => String::new(),
                n => format!(", {n} damaged records among them kept for readers to skip"),
            };
            self.warnings.push(format!(
                "segment {seq}: {}; kept {} buffers ({} bytes, store time {} to {}){damaged}; {cut}",
                scan.problem.as_deref().unwrap_or("unindexed data at the end"),
                scan.summary.buffers,
                scan.data_len,
                secs(scan.summary.first_st),
                secs(scan.summary.end_st),
            ));
        }
        let mut rec = Vec::new();
        Record::StreamEnd(scan.summary).encode(&mut rec, &mut Context::default());
        (&index).write_all(&rec).map_err(io)?;
        index.sync_data().map_err(io)?;
        data.sync_data().map_err(|e| Error::io(&dpath, e))?;
        Ok(Some(ClosedSegment {
            seq,
            kind,
            summary: scan.summary,
            span: span_of(&scan.summary, scan.jumps),
        }))
    }

    /// Says so when a closed segment's data file is missing or shorter than its index says:
    /// nothing is changed, readers skip what they cannot read.
    fn check_data_file(&mut self, seq: u64, kind: DataKind, want: u64) {
        let len = fs::metadata(data_path(&self.dir, seq, kind)).map(|m| m.len());
        let problem = match len {
            Err(_) => "its data file is missing".to_string(),
            Ok(len) if len < want => format!("its data file holds {len} of {want} bytes"),
            Ok(_) => return,
        };
        self.warnings.push(format!(
            "segment {seq}: {problem}; kept as it is, readers skip what they cannot read"
        ));
    }

    /// The segment's header, rebuilt (and written back) if it is damaged; `None` if there is
    /// no data file to rebuild it from.
    fn usable_header(
        &mut self,
        seq: u64,
        index: &IndexFile,
    ) -> Result<Option<SegmentHeader>, Error> {
        let why = match index.header {
            Ok(h) => return Ok(Some(h)),
            // Nothing to rebuild: no header was ever written over it.
            Err(_) if index.len < HEADER_LEN as u64 => return Ok(None),
            Err(why) => why,
        };
        let ipath = index_path(&self.dir, seq);
        let io = |e| Error::io(&ipath, e);
        let Some(header) = rebuild_header(&self.dir, seq, index, self.clock.end_st).map_err(io)?
        else {
            return Ok(None);
        };
        let f = OpenOptions::new().write(true).open(&ipath).map_err(io)?;
        f.write_all_at(&header.encode(), 0)
            .and_then(|()| f.sync_data())
            .map_err(io)?;
        self.warnings.push(format!(
            "segment {seq}: {why}; header rebuilt from its file names and closing record, \
             nothing else changed"
        ));
        Ok(Some(header))
    }

    /// A closed segment as its summary gives it, unless the summary spans more than
    /// [`MAX_STORE_GAP`] or ends before it starts: then (rarely: a long segment, damage or a
    /// crafted file) the records are read, and what they say counts, their store-time jumps
    /// longer than [`MAX_STORE_GAP`] (which no recorder writes) left out of the span
    /// retention counts, so one jump cannot make retention empty the store.
    fn closed_segment(
        &mut self,
        seq: u64,
        index: &IndexFile,
        header: &SegmentHeader,
        summary: SegmentSummary,
    ) -> Result<ClosedSegment, Error> {
        let kind = header.data_kind;
        let span = summary.end_st.checked_sub(summary.first_st);
        if let Some(span) = span.filter(|&s| s <= MAX_STORE_GAP) {
            return Ok(ClosedSegment {
                seq,
                kind,
                summary,
                span,
            });
        }
        let scan = scan_segment(&self.dir, index, header, false)
            .map_err(|e| Error::io(&index_path(&self.dir, seq), e))?;
        let read = SegmentSummary {
            buffers: scan.summary.buffers,
            data_bytes: scan.summary.data_bytes,
            first_st: scan.summary.first_st,
            end_st: scan.summary.end_st,
        };
        if read.end_st != summary.end_st || read.first_st != summary.first_st {
            self.warnings.push(format!(
                "segment {seq}: its closing summary says store time {} to {}, its records {} \
                 to {}; the records count",
                secs(summary.first_st),
                secs(summary.end_st),
                secs(read.first_st),
                secs(read.end_st),
            ));
        }
        Ok(ClosedSegment {
            seq,
            kind,
            summary: read,
            span: span_of(&read, scan.jumps),
        })
    }
}

fn span_of(summary: &SegmentSummary, jumps: u64) -> u64 {
    summary
        .end_st
        .saturating_sub(summary.first_st)
        .saturating_sub(jumps)
}

/// Nanoseconds of store time as seconds, for messages.
pub(crate) fn secs(ns: u64) -> String {
    format!("{:.3} s", ns as f64 / 1e9)
}
