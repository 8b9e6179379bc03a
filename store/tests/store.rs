//! The store through its public API, as the elements use it.

use std::fs;
use std::path::Path;

mod common;

use common::*;
use fanout_store::{Entry, Item, Next, Reader, RecordMeta, Writer, WriterConfig};

#[test]
fn round_trip_restores_bytes_times_and_caps() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = Writer::open(dir.path(), config(1_000)).unwrap();
    w.write(&[
        Item::Caps(TS_CAPS),
        Item::Tags("taglist, title=(string)news;"),
    ])
    .unwrap();
    record(&mut w, 0..100);
    w.end_stream().unwrap();
    assert_eq!(w.segment_count(), 4, "4 s of 1 s segments");
    drop(w);

    let mut r = Reader::open(dir.path()).unwrap();
    let (entries, payloads) = read_all(&mut r);
    assert_eq!(entries[0], Entry::Caps(TS_CAPS.into()));
    assert!(matches!(&entries[1], Entry::Tags(t) if t.contains("news")));
    assert_eq!(payloads, (0..100).map(payload).collect::<Vec<_>>());
    let sts = buffers(&entries);
    assert_eq!(sts, (0..100).map(|i| i * 40 * MS).collect::<Vec<_>>());
    let first = entries.iter().find_map(|e| match e {
        Entry::Buffer(b) => Some(*b),
        _ => None,
    });
    assert_eq!(first.unwrap().pts, Some(1_000 * MS));
    assert_eq!(first.unwrap().arrival, Some(1_005 * MS));
    assert!(r.take_warnings().is_empty());
}

#[test]
fn mpegts_segments_concatenate_to_the_received_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = Writer::open(dir.path(), config(300)).unwrap();
    w.write(&[Item::Caps(TS_CAPS)]).unwrap();
    record(&mut w, 0..60);
    drop(w);
    let mut ts: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "ts"))
        .collect();
    ts.sort();
    assert!(ts.len() > 3);
    let joined: Vec<u8> = ts.iter().flat_map(|p| fs::read(p).unwrap()).collect();
    assert_eq!(joined, (0..60).flat_map(payload).collect::<Vec<_>>());
}

#[test]
fn segments_start_on_keyframes() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = Writer::open(dir.path(), config(300)).unwrap();
    record(&mut w, 0..50);
    drop(w);
    // Rotation waits for a keyframe: every 10th buffer, 400 ms apart.
    assert_eq!(fanout_store_segments(dir.path()), 5);
    for k in 0..5 {
        let mut r = Reader::open(dir.path()).unwrap();
        assert_eq!(r.seek(k * 400 * MS).unwrap(), Some(k * 400 * MS));
        let (entries, _) = read_all(&mut r);
        assert_eq!(buffers(&entries).len() as u64, 50 - 10 * k);
    }
}

fn fanout_store_segments(dir: &Path) -> usize {
    fs::read_dir(dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "idx")
        })
        .count()
}

#[test]
fn retention_by_time_and_by_bytes_removes_whole_old_segments() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = WriterConfig {
        max_segment_time: 400 * MS,
        max_size_time: 1_000 * MS,
        ..Default::default()
    };
    let mut w = Writer::open(dir.path(), cfg).unwrap();
    record(&mut w, 0..200);
    assert!(w.store_span() <= 1_000 * MS, "{}", w.store_span());
    drop(w);
    let mut r = Reader::open(dir.path()).unwrap();
    let (entries, _) = read_all(&mut r);
    let sts = buffers(&entries);
    assert_eq!(*sts.last().unwrap(), 199 * 40 * MS, "newest data kept");
    assert_eq!(sts[0] % (400 * MS), 0, "oldest kept segment is whole");
    assert!(sts.len() < 40 && sts.len() >= 15, "{}", sts.len());

    let dir = tempfile::tempdir().unwrap();
    let cfg = WriterConfig {
        max_segment_time: 400 * MS,
        max_size_bytes: 5_000,
        ..Default::default()
    };
    let mut w = Writer::open(dir.path(), cfg).unwrap();
    record(&mut w, 0..200);
    assert!(w.store_bytes() <= 5_000, "{}", w.store_bytes());
}

#[test]
fn reader_follows_a_growing_store() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = Writer::open(dir.path(), config(200)).unwrap();
    let mut r = Reader::open(dir.path()).unwrap();
    assert_eq!(
        r.read_next().unwrap(),
        Next::Pending,
        "empty store, writer active"
    );
    let mut got = Vec::new();
    for i in 0..40 {
        record(&mut w, i..i + 1);
        loop {
            match r.read_next().unwrap() {
                Next::Entry(Entry::Buffer(b)) => got.push(b.st),
                Next::Entry(_) => {}
                Next::Pending => break,
                Next::End => panic!("ended while the writer records"),
            }
        }
    }
    w.end_stream().unwrap();
    assert_eq!(r.read_next().unwrap(), Next::End);
    assert_eq!(got, (0..40).map(|i| i * 40 * MS).collect::<Vec<_>>());
}

#[test]
fn a_second_writer_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let _w = Writer::open(dir.path(), config(0)).unwrap();
    let err = Writer::open(dir.path(), config(0)).err().unwrap();
    assert!(err.to_string().contains("another recorder"), "{err}");
}

#[test]
fn reopening_appends_with_continuous_store_time() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = Writer::open(dir.path(), config(0)).unwrap();
    record(&mut w, 0..10);
    drop(w);
    let mut w = Writer::open(dir.path(), config(0)).unwrap();
    // The new recording's running time starts again from zero.
    for i in 0..10u64 {
        let m = RecordMeta {
            pts: Some(i * 40 * MS),
            duration: Some(40 * MS),
            ..Default::default()
        };
        w.write(&[Item::Buffer(m, &[&payload(i)])]).unwrap();
    }
    drop(w);
    let mut r = Reader::open(dir.path()).unwrap();
    let sts = buffers(&read_all(&mut r).0);
    assert_eq!(sts, (0..20).map(|i| i * 40 * MS).collect::<Vec<_>>());
}

#[test]
fn seek_lands_on_the_keyframe_before_with_caps_first() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = Writer::open(dir.path(), config(1_000)).unwrap();
    w.write(&[Item::Caps(TS_CAPS)]).unwrap();
    record(&mut w, 0..100);
    drop(w);
    let mut r = Reader::open(dir.path()).unwrap();
    // Buffer 57 is at 2280 ms; keyframe 50 at 2000 ms.
    assert_eq!(r.seek(2_280 * MS).unwrap(), Some(2_000 * MS));
    assert_eq!(
        r.read_next().unwrap(),
        Next::Entry(Entry::Caps(TS_CAPS.into()))
    );
    let (entries, payloads) = read_all(&mut r);
    assert_eq!(buffers(&entries)[0], 2_000 * MS);
    assert_eq!(payloads[0], payload(50));
    assert_eq!(r.seek(0).unwrap(), Some(0));
    assert_eq!(r.seek(u64::MAX).unwrap(), Some(3_600 * MS));
    let range = r.range().unwrap().unwrap();
    assert_eq!(range, (0, 100 * 40 * MS));
}

#[test]
fn torn_tail_is_cut_on_reopen_and_the_rest_plays() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = Writer::open(dir.path(), config(0)).unwrap();
    record(&mut w, 0..30);
    w.sync().unwrap();
    // A crash: no closing record, and the last index record torn in half.
    std::mem::forget(w);
    let idx = last_index(dir.path());
    let len = fs::metadata(&idx).unwrap().len();
    fs::OpenOptions::new()
        .write(true)
        .open(&idx)
        .unwrap()
        .set_len(len - 30)
        .unwrap();
    // The lock of the forgotten writer is still held by this process; a
    // crashed process's lock is released by the kernel. Drop it by hand.
    fs::remove_file(dir.path().join("writer.lock")).unwrap();
    fs::write(dir.path().join("writer.lock"), b"").unwrap();

    let mut r = Reader::open(dir.path()).unwrap();
    let (entries, payloads) = read_all(&mut r);
    assert_eq!(buffers(&entries).len(), 29);
    assert_eq!(payloads.len(), 29);
    assert_eq!(
        r.take_warnings().len(),
        1,
        "the reader says what it skipped"
    );

    let mut w = Writer::open(dir.path(), config(0)).unwrap();
    let warnings = w.take_warnings();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("kept 29 buffers"), "{warnings:?}");
    record(&mut w, 30..35);
    drop(w);
    let mut r = Reader::open(dir.path()).unwrap();
    let (entries, payloads) = read_all(&mut r);
    assert_eq!(buffers(&entries).len(), 34);
    let mut want: Vec<_> = (0..29).map(payload).collect();
    want.extend((30..35).map(payload));
    assert_eq!(payloads, want);
    assert!(r.take_warnings().is_empty());
}

#[test]
fn zeroed_data_behind_a_valid_index_is_cut_on_reopen() {
    // What a power cut can leave: the index made it to disk, the data did not.
    let dir = tempfile::tempdir().unwrap();
    let mut w = Writer::open(dir.path(), config(0)).unwrap();
    record(&mut w, 0..20);
    std::mem::forget(w);
    let data = last_index(dir.path()).with_extension("bin");
    let mut bytes = fs::read(&data).unwrap();
    let keep = (0..15).map(|i| payload(i).len()).sum::<usize>();
    bytes[keep..].fill(0);
    fs::write(&data, &bytes).unwrap();
    fs::remove_file(dir.path().join("writer.lock")).unwrap();

    fs::write(dir.path().join("writer.lock"), b"").unwrap();
    let mut w = Writer::open(dir.path(), config(0)).unwrap();
    let warnings = w.take_warnings();
    assert!(
        warnings[0].contains("data checksum mismatch"),
        "{warnings:?}"
    );
    drop(w);
    let mut r = Reader::open(dir.path()).unwrap();
    let (_, payloads) = read_all(&mut r);
    assert_eq!(payloads, (0..15).map(payload).collect::<Vec<_>>());
}

#[test]
fn corruption_in_the_middle_is_skipped_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = Writer::open(dir.path(), config(400)).unwrap();
    record(&mut w, 0..40);
    drop(w);
    let mut idx: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "idx"))
        .collect();
    idx.sort();
    assert_eq!(idx.len(), 4);
    // A flipped byte in the first segment's data: that one buffer is skipped.
    let data = idx[0].with_extension("bin");
    let mut bytes = fs::read(&data).unwrap();
    bytes[5] ^= 0xff;
    fs::write(&data, &bytes).unwrap();
    // A flipped byte in the middle of the second index: the rest of it is skipped.
    let mut ib = fs::read(&idx[1]).unwrap();
    let mid = ib.len() / 2;
    ib[mid] ^= 0xff;
    fs::write(&idx[1], &ib).unwrap();

    let mut r = Reader::open(dir.path()).unwrap();
    let (entries, payloads) = read_all(&mut r);
    let n = buffers(&entries).len();
    assert!((25..39).contains(&n), "{n}");
    assert_eq!(payloads.len(), n - 1);
    assert_eq!(
        payloads.last().unwrap(),
        &payload(39),
        "later segments play"
    );
    let warnings = r.take_warnings();
    assert_eq!(warnings.len(), 2, "{warnings:?}");
}

#[test]
fn a_directory_that_is_not_a_store_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let err = Reader::open(dir.path()).err().unwrap();
    assert!(err.to_string().contains("not a fanout recording"), "{err}");
    let err = Reader::open(&dir.path().join("missing")).err().unwrap();
    assert!(err.to_string().contains("No such file"), "{err}");
}

#[test]
fn a_recording_that_stopped_without_closing_reads_without_warnings() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = Writer::open(dir.path(), config(0)).unwrap();
    record(&mut w, 0..10);
    // Killed: no closing record, but every record complete.
    std::mem::forget(w);
    fs::remove_file(dir.path().join("writer.lock")).unwrap();
    fs::write(dir.path().join("writer.lock"), b"").unwrap();
    let mut r = Reader::open(dir.path()).unwrap();
    let (entries, payloads) = read_all(&mut r);
    assert_eq!(buffers(&entries).len(), 10);
    assert_eq!(payloads.len(), 10);
    assert!(r.take_warnings().is_empty());
}

#[test]
fn an_index_naming_missing_data_is_cut_there_before_anything_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = Writer::open(dir.path(), config(0)).unwrap();
    record(&mut w, 0..10);
    drop(w);
    // The data file lost its last bytes; the index still names them.
    let data = last_index(dir.path()).with_extension("bin");
    let len = fs::metadata(&data).unwrap().len();
    fs::OpenOptions::new()
        .write(true)
        .open(&data)
        .unwrap()
        .set_len(len - 50)
        .unwrap();
    let mut r = Reader::open(dir.path()).unwrap();
    let (entries, payloads) = read_all(&mut r);
    assert_eq!(buffers(&entries).len(), 9);
    assert_eq!(payloads, (0..9).map(payload).collect::<Vec<_>>());
    let warnings = r.take_warnings();
    assert!(
        warnings[0].contains("data file ends before"),
        "{warnings:?}"
    );
}

/// A hand-made segment whose records carry the largest times the format can hold: a crafted
/// or corrupt file must not make any arithmetic overflow.
#[test]
fn extreme_times_in_a_crafted_segment_do_not_overflow() {
    use fanout_store::{BufferRecord, Context, DataKind, Record, SegmentHeader};
    let dir = tempfile::tempdir().unwrap();
    let header = SegmentHeader {
        seq: 0,
        data_kind: DataKind::Raw,
        session: 1,
        first_st: u64::MAX - 10,
    };
    let mut index = header.encode().to_vec();
    let mut ctx = Context::new(&header);
    let data = b"0123456789";
    for (i, st) in [u64::MAX - 10, u64::MAX - 1].into_iter().enumerate() {
        let rec = BufferRecord {
            st,
            pts: Some(u64::MAX - 2),
            dts: None,
            duration: Some(u64::MAX - 2),
            arrival: Some(u64::MAX - 2),
            offset: 5 * i as u64,
            size: 5,
            flags: 0,
            data_crc: crc32c::crc32c(&data[5 * i..5 * i + 5]),
        };
        Record::Buffer(rec).encode(&mut index, &mut ctx);
    }
    fs::write(dir.path().join("0000000000.idx"), &index).unwrap();
    fs::write(dir.path().join("0000000000.bin"), data).unwrap();
    fs::write(dir.path().join(fanout_store::LOCK_FILE), b"").unwrap();

    let mut r = Reader::open(dir.path()).unwrap();
    assert_eq!(r.range().unwrap(), Some((u64::MAX - 10, u64::MAX)));
    let (entries, payloads) = read_all(&mut r);
    assert_eq!(buffers(&entries), vec![u64::MAX - 10, u64::MAX - 1]);
    assert_eq!(payloads.concat(), data);
    // The writer scans and closes the unclosed segment, then appends after it.
    let mut w = Writer::open(dir.path(), WriterConfig::default()).unwrap();
    assert_eq!(w.store_bytes(), 10);
    record(&mut w, 0..2);
    drop(w);
    let (entries, _) = read_all(&mut Reader::open(dir.path()).unwrap());
    assert_eq!(buffers(&entries).len(), 4);
}

#[test]
fn store_times_given_by_the_caller_are_kept_monotonic() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = Writer::open(dir.path(), WriterConfig::default()).unwrap();
    // The caller ran a copy of the store clock; one value goes back (a bug upstream).
    let mut clock = w.store_clock();
    let mut given = Vec::new();
    for i in 0..5 {
        let mut m = meta(i, true);
        m.st = Some(clock.next(&m));
        given.push(m.st.unwrap());
        w.write(&[Item::Buffer(m, &[&payload(i)])]).unwrap();
    }
    let back = RecordMeta {
        st: Some(1),
        ..meta(5, true)
    };
    w.write(&[Item::Buffer(back, &[&payload(5)])]).unwrap();
    drop(w);
    let (entries, _) = read_all(&mut Reader::open(dir.path()).unwrap());
    let sts = buffers(&entries);
    assert_eq!(sts[..5], given[..]);
    assert_eq!(sts[5], given[4], "never before the buffer before it");
    assert_eq!(given, vec![0, 40 * MS, 80 * MS, 120 * MS, 160 * MS]);
}
