//! Whole store directories damaged at random: four segments (the last one unclosed, as a
//! crash leaves it), then headers, records and data flipped, overwritten, cut, extended,
//! files removed or replaced by a directory. Reading never panics; a repair (opening for
//! writing) keeps every buffer a reader could read before it, and the store then takes and
//! plays new buffers.
#![no_main]

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use fanout_store::{Entry, Item, Next, Reader, RecordMeta, Writer, WriterConfig};
use libfuzzer_sys::fuzz_target;

/// The payloads a reader plays, counted; `None` if the store is refused.
fn readable(dir: &Path) -> Option<BTreeMap<Vec<u8>, usize>> {
    let mut r = Reader::open(dir).ok()?;
    let mut seen = BTreeMap::new();
    for _ in 0..10_000 {
        match r.read_next() {
            Ok(Next::Entry(Entry::Buffer(b))) => {
                let mut data = vec![0; b.size as usize];
                if r.read_data(&b, &mut data).unwrap_or(false) {
                    *seen.entry(data).or_insert(0) += 1;
                }
            }
            Ok(Next::Entry(_)) => {}
            Ok(Next::Pending) | Ok(Next::End) | Err(_) => break,
        }
    }
    Some(seen)
}

fn payload(i: u64) -> Vec<u8> {
    let len = 1 + (i * 37 % 300) as usize;
    (0..len).map(|b| (b as u64 ^ i) as u8).collect()
}

fn write(w: &mut Writer, range: std::ops::Range<u64>) {
    for i in range {
        let meta = RecordMeta {
            pts: Some(i * 40_000_000),
            duration: Some(40_000_000),
            flags: if i % 3 == 0 {
                0
            } else {
                fanout_store::FLAG_DELTA_UNIT
            },
            ..Default::default()
        };
        w.write(&[Item::Buffer(meta, &[&payload(i)])]).unwrap();
    }
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap() != fanout_store::LOCK_FILE)
        .collect();
    v.sort();
    v
}

/// One damage, driven by 4 input bytes (and more for what it writes).
fn damage(dir: &Path, op: &[u8], input: &mut &[u8]) {
    let files = segment_files(dir);
    if files.is_empty() {
        return;
    }
    let path = &files[op[0] as usize % files.len()];
    let Ok(bytes) = fs::read(path) else { return };
    let at = u16::from_le_bytes([op[2], op[3]]) as usize % (bytes.len() + 1);
    let mut bytes = bytes;
    match op[1] % 8 {
        0 | 1 if at < bytes.len() => bytes[at] ^= 1 << (op[3] % 8),
        2 => bytes.truncate(at),
        3 => {
            let n = input.len().min(op[3] as usize % 64);
            let (new, rest) = input.split_at(n);
            bytes.splice(at..(at + n).min(bytes.len()), new.iter().copied());
            *input = rest;
        }
        4 => bytes.extend(std::iter::repeat_n(op[3], op[2] as usize)),
        5 => {
            let _ = fs::remove_file(path);
            return;
        }
        6 => {
            let _ = fs::remove_file(path);
            let _ = fs::create_dir(path);
            return;
        }
        _ => bytes.clear(),
    }
    let _ = fs::write(path, bytes);
}

fuzz_target!(|input: &[u8]| {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    {
        let mut w = Writer::open(
            dir,
            WriterConfig {
                max_segment_time: 200_000_000,
                ..Default::default()
            },
        )
        .unwrap();
        w.write(&[Item::Caps("video/mpegts")]).unwrap();
        write(&mut w, 0..20);
    }
    // A crash: the last segment without its closing record (41 bytes).
    let last = segment_files(dir).pop().unwrap().with_extension("idx");
    fanout_store::craft::unclose(&last).unwrap();

    let mut rest = input;
    while rest.len() >= 4 {
        let (op, tail) = rest.split_at(4);
        rest = tail;
        damage(dir, op, &mut rest);
    }

    let Some(before) = readable(dir) else {
        assert!(Writer::open(dir, WriterConfig::default()).is_err());
        return;
    };
    let Ok(mut w) = Writer::open(dir, WriterConfig::default()) else {
        return;
    };
    drop(w.take_warnings());
    write(&mut w, 100..102);
    drop(w);
    let after = readable(dir).expect("the writer opened it");
    for (data, n) in &before {
        assert!(
            after.get(data).is_some_and(|m| m >= n),
            "a buffer of {} bytes readable before the repair is gone",
            data.len()
        );
    }
    for i in 100..102 {
        assert!(after.contains_key(&payload(i)), "new buffer {i} not played");
    }
});
