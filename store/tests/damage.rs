//! Damaged and crafted stores: repair cuts only what is torn, readers go on past what they
//! cannot read, and crafted files are errors, not crashes.

mod common;

use std::fs;

use common::*;
use fanout_store::{Reader, Writer, WriterConfig};

fn flip(path: &std::path::Path, at: u64) {
    fanout_store::craft::flip(path, at).unwrap();
}

/// 40 buffers in 4 closed segments of 10.
fn four_segments(dir: &std::path::Path) {
    let mut w = Writer::open(dir, config(400)).unwrap();
    record(&mut w, 0..40);
    drop(w);
    assert_eq!(files(dir, "idx").len(), 4);
}

#[test]
fn a_closed_segment_with_a_damaged_header_is_rebuilt_never_removed() {
    let dir = tempfile::tempdir().unwrap();
    four_segments(dir.path());
    for seg in [0, 2] {
        flip(&files(dir.path(), "idx")[seg], 30);
    }
    let (payloads, warnings) = played(dir.path());
    assert_eq!(payloads, (0..40).map(payload).collect::<Vec<_>>());
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(warnings[0].contains("header rebuilt"), "{warnings:?}");
    assert_eq!(
        Reader::open(dir.path())
            .unwrap()
            .range()
            .unwrap()
            .unwrap()
            .0,
        0
    );

    let mut w = Writer::open(dir.path(), WriterConfig::default()).unwrap();
    let warnings = w.take_warnings();
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(warnings[1].contains("segment 2") && warnings[1].contains("header rebuilt"));
    record(&mut w, 40..45);
    drop(w);
    let (payloads, warnings) = played(dir.path());
    assert_eq!(payloads, (0..45).map(payload).collect::<Vec<_>>());
    assert!(
        warnings.is_empty(),
        "the headers were written back: {warnings:?}"
    );
}

#[test]
fn a_flipped_data_bit_in_an_unclosed_segment_costs_one_buffer_not_the_ones_after() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = Writer::open(dir.path(), config(0)).unwrap();
    record(&mut w, 0..200);
    w.sync().unwrap();
    crash(w, dir.path());
    let data = files(dir.path(), "bin").pop().unwrap();
    let offset: usize = (0..10).map(|i| payload(i).len()).sum();
    flip(&data, offset as u64 + 3);

    let mut w = Writer::open(dir.path(), config(0)).unwrap();
    let warnings = w.take_warnings();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("kept 200 buffers") && warnings[0].contains("1 damaged"),
        "{warnings:?}"
    );
    drop(w);
    let (payloads, warnings) = played(dir.path());
    let want: Vec<_> = (0..200).filter(|&i| i != 10).map(payload).collect();
    assert_eq!(payloads, want);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
}

#[test]
fn a_damaged_index_record_costs_its_buffer_only() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = Writer::open(dir.path(), config(0)).unwrap();
    record(&mut w, 0..50);
    crash(w, dir.path());
    let idx = files(dir.path(), "idx").pop().unwrap();
    // The 20th record's last CRC byte: the record decodes, its checksum fails.
    let bytes = fs::read(&idx).unwrap();
    let mut at = 40;
    let mut buffers = 0;
    while buffers < 20 {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        buffers += usize::from(bytes[at + 4] == 1);
        at += len + 9;
    }
    flip(&idx, at as u64 - 1);
    let (payloads, warnings) = played(dir.path());
    let want: Vec<_> = (0..50).filter(|&i| i != 19).map(payload).collect();
    assert_eq!(payloads, want);
    assert_eq!(warnings.len(), 1, "{warnings:?}");

    let mut w = Writer::open(dir.path(), config(0)).unwrap();
    let warnings = w.take_warnings();
    assert!(warnings[0].contains("kept 50 buffers"), "{warnings:?}");
    drop(w);
    assert_eq!(played(dir.path()).0, want);
}

#[test]
fn a_missing_data_file_or_a_garbage_index_in_the_middle_hides_nothing_after_it() {
    for damage in ["missing data", "garbage index"] {
        let dir = tempfile::tempdir().unwrap();
        four_segments(dir.path());
        let seg1 = &files(dir.path(), "idx")[1];
        match damage {
            "missing data" => fs::remove_file(seg1.with_extension("bin")).unwrap(),
            _ => fs::write(seg1, vec![0x5a; 700]).unwrap(),
        }
        let (payloads, warnings) = played(dir.path());
        let mut want: Vec<_> = (0..10).map(payload).collect();
        want.extend((20..40).map(payload));
        assert_eq!(payloads, want, "{damage}");
        assert!(!warnings.is_empty(), "{damage}");

        let before = fs::read_dir(dir.path()).unwrap().count();
        let mut w = Writer::open(dir.path(), config(400)).unwrap();
        assert!(!w.take_warnings().is_empty(), "{damage}");
        record(&mut w, 40..45);
        drop(w);
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            before + 2,
            "{damage}"
        );
        want.extend((40..45).map(payload));
        assert_eq!(played(dir.path()).0, want, "{damage}");
    }
}

#[test]
fn a_damaged_first_segment_never_makes_the_store_empty() {
    let dir = tempfile::tempdir().unwrap();
    four_segments(dir.path());
    let first = &files(dir.path(), "idx")[0];
    fs::write(first, b"not an index").unwrap();
    let r = Reader::open(dir.path()).unwrap();
    assert!(r.range().unwrap().is_some());
    let (payloads, _) = played(dir.path());
    assert_eq!(payloads, (10..40).map(payload).collect::<Vec<_>>());
}

#[test]
fn retention_that_keeps_existing_segments_spares_them_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    four_segments(dir.path());
    let keep = WriterConfig {
        max_segment_time: 400 * MS,
        max_size_time: 500 * MS,
        keep_existing: true,
        ..Default::default()
    };
    let mut w = Writer::open(dir.path(), keep).unwrap();
    let notices = w.take_notices();
    assert!(notices[0].contains("kept the 4 segments"), "{notices:?}");
    record(&mut w, 40..80);
    drop(w);
    let (payloads, _) = played(dir.path());
    // The old 40 buffers, then at most 500 ms (and a segment) of the new ones.
    assert_eq!(payloads[..40], (0..40).map(payload).collect::<Vec<_>>());
    assert!((50..=60).contains(&payloads.len()), "{}", payloads.len());
    assert_eq!(payloads.last().unwrap(), &payload(79));

    // Asked for explicitly, retention applies to all.
    let w = Writer::open(
        dir.path(),
        WriterConfig {
            keep_existing: false,
            ..keep
        },
    )
    .unwrap();
    drop(w);
    assert!(played(dir.path()).0.len() <= 20);
}

#[test]
fn fifos_devices_and_links_out_of_the_store_are_refused_at_open() {
    let dir = tempfile::tempdir().unwrap();
    four_segments(dir.path());
    let idx = files(dir.path(), "idx")[1].clone();
    fs::remove_file(&idx).unwrap();
    std::os::unix::fs::symlink("/dev/urandom", &idx).unwrap();
    let err = Reader::open(dir.path()).err().expect("refused");
    assert!(
        err.to_string().contains("symbolic link out of the store"),
        "{err}"
    );
    let err = Writer::open(dir.path(), WriterConfig::default())
        .err()
        .expect("refused");
    assert!(err.to_string().contains("refused"), "{err}");

    fs::remove_file(&idx).unwrap();
    let path = std::ffi::CString::new(idx.to_str().unwrap()).unwrap();
    // SAFETY: a plain syscall with a valid C string.
    assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o644) }, 0);
    let err = Reader::open(dir.path()).err().expect("refused");
    assert!(err.to_string().contains("not a regular file"), "{err}");
    assert!(Writer::open(dir.path(), WriterConfig::default()).is_err());

    // Not even the lock file may hang an open.
    let dir = tempfile::tempdir().unwrap();
    let lock = dir.path().join(fanout_store::LOCK_FILE);
    let path = std::ffi::CString::new(lock.to_str().unwrap()).unwrap();
    // SAFETY: a plain syscall with a valid C string.
    assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o644) }, 0);
    assert!(Reader::open(dir.path()).is_err());
    assert!(Writer::open(dir.path(), WriterConfig::default()).is_err());
}

#[test]
fn a_crafted_huge_buffer_over_a_sparse_file_is_skipped_without_allocating_it() {
    for size in [u32::MAX, fanout_store::MAX_BUFFER_SIZE] {
        let dir = tempfile::tempdir().unwrap();
        fanout_store::craft::huge_buffers_segment(dir.path(), size, 1, false).unwrap();
        let mut r = Reader::open(dir.path()).unwrap();
        let (entries, _) = read_all(&mut r);
        assert_eq!(buffers(&entries), Vec::<u64>::new(), "{size}");
        let warnings = r.take_warnings();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        let w = Writer::open(dir.path(), WriterConfig::default()).unwrap();
        drop(w);
    }
}

#[test]
fn a_store_time_jump_is_not_counted_by_retention() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = Writer::open(dir.path(), config(400)).unwrap();
    record(&mut w, 0..10);
    // What only a crafted or damaged file holds: a jump of 2^62 ns.
    for i in 10..20 {
        let data = payload(i);
        let m = fanout_store::RecordMeta {
            st: Some((1 << 62) + i * 40 * MS),
            ..meta(i, i % 10 == 0)
        };
        w.write(&[fanout_store::Item::Buffer(m, &[&data])]).unwrap();
    }
    drop(w);
    let mut w = Writer::open(
        dir.path(),
        WriterConfig {
            max_segment_time: 400 * MS,
            max_size_time: 1_500 * MS,
            ..Default::default()
        },
    )
    .unwrap();
    record(&mut w, 20..25);
    drop(w);
    assert_eq!(
        played(dir.path()).0,
        (0..25).map(payload).collect::<Vec<_>>()
    );
}
