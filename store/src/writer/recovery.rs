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
    check_store_files, closing_record, data_path, index_path, list_segment_files, list_segments,
    open_index, rebuild_header, scan_segment, IndexFile,
};
use crate::{Error, MAX_STORE_GAP};

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
            self.clock.end_st = self.clock.end_st.max(seg.summary.end_st);
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
            if index.len <= HEADER_LEN as u64 && last {
                // The writer died creating it: no record, no data file.
                self.warnings
                    .push(format!("segment {seq}: no header and no data; removed"));
                remove_segment(&self.dir, seq, None);
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
            let span = self.effective_span(&index, &header, &summary)?;
            return Ok(Some(ClosedSegment {
                seq,
                kind,
                summary,
                span,
            }));
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

    /// The store time a closed segment covers for retention: its span less any jump in it
    /// longer than [`MAX_STORE_GAP`], which no recorder writes (only damage or a crafted file),
    /// so one jump cannot make retention empty the store. Only segments whose span is that
    /// long are scanned.
    fn effective_span(
        &self,
        index: &IndexFile,
        header: &SegmentHeader,
        summary: &SegmentSummary,
    ) -> Result<u64, Error> {
        let span = summary.end_st.saturating_sub(summary.first_st);
        if span <= MAX_STORE_GAP {
            return Ok(span);
        }
        let scan = scan_segment(&self.dir, index, header, false)
            .map_err(|e| Error::io(&index_path(&self.dir, header.seq), e))?;
        Ok(span.saturating_sub(scan.jumps))
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
