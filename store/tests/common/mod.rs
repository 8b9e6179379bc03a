//! Helpers shared by the store's tests.
#![allow(dead_code)]

use std::fs;
use std::path::Path;

use fanout_store::{Entry, Item, Next, Reader, RecordMeta, Writer, WriterConfig, FLAG_DELTA_UNIT};

pub const MS: u64 = 1_000_000;
pub const TS_CAPS: &str = "video/mpegts, systemstream=(boolean)true, packetsize=(int)188";

pub fn meta(i: u64, keyframe: bool) -> RecordMeta {
    RecordMeta {
        st: None,
        pts: Some(1_000 * MS + i * 40 * MS),
        dts: None,
        duration: Some(40 * MS),
        arrival: Some(1_005 * MS + i * 40 * MS),
        flags: if keyframe { 0 } else { FLAG_DELTA_UNIT },
    }
}

pub fn payload(i: u64) -> Vec<u8> {
    (0..(100 + (i % 7) * 31))
        .map(|b| (b as u8) ^ (i as u8))
        .collect()
}

/// Writes buffers `range` (every 10th a keyframe), one write call each.
pub fn record(w: &mut Writer, range: std::ops::Range<u64>) {
    for i in range {
        let data = payload(i);
        w.write(&[Item::Buffer(meta(i, i % 10 == 0), &[&data])])
            .unwrap();
    }
}

/// Everything a reader yields until it ends, without waiting.
pub fn read_all(r: &mut Reader) -> (Vec<Entry>, Vec<Vec<u8>>) {
    let mut entries = Vec::new();
    let mut payloads = Vec::new();
    while let Next::Entry(e) = r.read_next().unwrap() {
        if let Entry::Buffer(b) = &e {
            let mut data = vec![0; b.size as usize];
            if r.read_data(b, &mut data).unwrap() {
                payloads.push(data);
            }
        }
        entries.push(e);
    }
    (entries, payloads)
}

pub fn buffers(entries: &[Entry]) -> Vec<u64> {
    entries
        .iter()
        .filter_map(|e| match e {
            Entry::Buffer(b) => Some(b.st),
            _ => None,
        })
        .collect()
}

pub fn config(segment_ms: u64) -> WriterConfig {
    WriterConfig {
        max_segment_time: segment_ms * MS,
        ..Default::default()
    }
}

/// The index of the last segment, as a crash would leave it.
pub fn last_index(dir: &Path) -> std::path::PathBuf {
    let mut idx: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "idx"))
        .collect();
    idx.sort();
    idx.pop().unwrap()
}

/// Leaves `w` as a crash would: no closing record, and the lock free again (the kernel
/// frees a dead process's lock; this process still holds the forgotten one, so the lock
/// file is made anew).
pub fn crash(w: Writer, dir: &Path) {
    std::mem::forget(w);
    fs::remove_file(dir.join("writer.lock")).unwrap();
    fs::write(dir.join("writer.lock"), b"").unwrap();
}

/// The segment files of `dir` with extension `ext`, in order.
pub fn files(dir: &Path, ext: &str) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    v.sort();
    v
}

/// The payloads a fresh reader plays, and its warnings.
pub fn played(dir: &Path) -> (Vec<Vec<u8>>, Vec<String>) {
    let mut r = Reader::open(dir).unwrap();
    let (_, payloads) = read_all(&mut r);
    (payloads, r.take_warnings())
}
