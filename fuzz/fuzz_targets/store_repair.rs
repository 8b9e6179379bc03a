//! A store whose last segment holds arbitrary bytes (a crash, a bad disk, a
//! hostile file): reading never panics, repairing for a new recording never
//! panics, and after the repair the store reads without a single warning.
#![no_main]

use fanout_store::{Item, Next, Reader, RecordMeta, Writer, WriterConfig};
use libfuzzer_sys::fuzz_target;

fn read_all(dir: &std::path::Path) -> (u64, Vec<String>) {
    let mut r = Reader::open(dir).unwrap();
    let mut buffers = 0;
    loop {
        match r.read_next() {
            Ok(Next::Entry(fanout_store::Entry::Buffer(b))) => {
                if b.size <= 1 << 20 {
                    let mut data = vec![0; b.size as usize];
                    let _ = r.read_data(&b, &mut data);
                }
                buffers += 1;
            }
            Ok(Next::Entry(_)) => {}
            Ok(Next::Pending) | Ok(Next::End) | Err(_) => break,
        }
    }
    (buffers, r.take_warnings())
}

fuzz_target!(|input: &[u8]| {
    let Some((&split, rest)) = input.split_first() else {
        return;
    };
    let split = (split as usize * 4).min(rest.len());
    let (tail_index, tail_data) = rest.split_at(split);

    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // Two healthy segments, then a third whose tail is replaced by the input
    // (its closing record too, most of the time).
    {
        let mut w = Writer::open(
            dir,
            WriterConfig {
                max_segment_time: 1,
                ..Default::default()
            },
        )
        .unwrap();
        w.write(&[Item::Caps("video/mpegts")]).unwrap();
        for i in 0..3u64 {
            let meta = RecordMeta {
                pts: Some(i * 10),
                ..Default::default()
            };
            w.write(&[Item::Buffer(meta, &[&[i as u8; 188]])]).unwrap();
        }
    }
    let idx = dir.join("0000000002.idx");
    let ts = dir.join("0000000002.ts");
    let mut index = std::fs::read(&idx).unwrap();
    let keep = index.len().min(40 + tail_index.len() % 200);
    index.truncate(keep);
    index.extend_from_slice(tail_index);
    std::fs::write(&idx, &index).unwrap();
    let mut data = std::fs::read(&ts).unwrap();
    data.extend_from_slice(tail_data);
    std::fs::write(&ts, &data).unwrap();

    let (before, _) = read_all(dir);
    let w = Writer::open(dir, WriterConfig::default()).unwrap();
    drop(w);
    let (after, warnings) = read_all(dir);
    assert!(warnings.is_empty(), "{warnings:?}");
    assert!(after >= 2, "the healthy segments survive");
    assert!(
        after <= before,
        "repair keeps no more than a reader could read"
    );
});
