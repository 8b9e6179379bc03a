//! Opening a store a writer left: closed segments are taken from their summaries, and an
//! unclosed one (a crash) is cut to its valid prefix and closed.

use std::fs::OpenOptions;
use std::io::Write;

use super::file_ops::remove_segment;
use super::{ClosedSegment, Writer};
use crate::format::{Context, DataKind, Record, SegmentSummary};
use crate::segment::{closed_summary, data_path, index_path, list_segments, scan_segment};
use crate::Error;

impl Writer {
    pub(super) fn load_existing(&mut self) -> Result<(), Error> {
        let seqs = list_segments(&self.dir).map_err(|e| Error::io(&self.dir, e))?;
        for seq in seqs {
            let ipath = index_path(&self.dir, seq);
            let io = |e| Error::io(&ipath, e);
            let (kind, summary) = match closed_summary(&self.dir, seq).map_err(io)? {
                Some((h, s, _)) => (h.data_kind, s),
                None => match self.repair(seq)? {
                    Some(v) => v,
                    None => continue,
                },
            };
            self.next_seq = seq.saturating_add(1);
            self.clock.end_st = self.clock.end_st.max(summary.end_st);
            self.clock.last_st = self.clock.end_st;
            // Summaries come from files: a crafted one must not overflow the total.
            self.closed_bytes = self.closed_bytes.saturating_add(summary.data_bytes);
            self.closed.push_back(ClosedSegment { seq, kind, summary });
        }
        Ok(())
    }

    /// Cuts an unclosed segment to its valid prefix and closes it.
    fn repair(&mut self, seq: u64) -> Result<Option<(DataKind, SegmentSummary)>, Error> {
        let ipath = index_path(&self.dir, seq);
        let io = |e| Error::io(&ipath, e);
        let scan = match scan_segment(&self.dir, seq, true).map_err(io)? {
            Ok(scan) => scan,
            Err(why) => {
                // Not even a header: the writer died while creating it.
                self.warnings
                    .push(format!("segment {seq}: {why}; removed (it held no data)"));
                remove_segment(&self.dir, seq, None);
                return Ok(None);
            }
        };
        let kind = scan.header.data_kind;
        if scan.summary.buffers == 0 {
            self.warnings
                .push(format!("segment {seq}: no complete buffer; removed"));
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
            self.warnings.push(format!(
                "segment {seq}: {}; kept {} buffers ({} bytes), cut {} index bytes and {} data bytes",
                scan.problem.as_deref().unwrap_or("unindexed data at the end"),
                scan.summary.buffers,
                scan.data_len,
                scan.index_excess,
                scan.data_excess,
            ));
        }
        let mut rec = Vec::new();
        Record::StreamEnd(scan.summary).encode(&mut rec, &mut Context::default());
        (&index).write_all(&rec).map_err(io)?;
        index.sync_data().map_err(io)?;
        data.sync_data().map_err(|e| Error::io(&dpath, e))?;
        Ok(Some((kind, scan.summary)))
    }
}
