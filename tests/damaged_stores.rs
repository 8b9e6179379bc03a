//! Damaged and crafted recordings opened by the elements as users run them: bitrate-player
//! plays all that is intact, bitrate-recorder and offset-tee repair only what is torn and say
//! what they cut, and crafted files end in a clear message, never a crash or a hang, under
//! a memory limit.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use fanout_store::{Context, Item, Record, RecordMeta, Writer, WriterConfig};
use fanout_tests::{
    concat_ts, encoder, files_with_extension, gst_launch, play_to_file, run, text,
    wait_with_timeout,
};

const SECOND: u64 = 1_000_000_000;

/// `frames` of H.264 in MPEG-TS recorded into `dir`, one segment a second.
fn record(dir: &Path, frames: u32) -> Output {
    let res = run(
        &format!(
            "{} ! bitrate-recorder location={} max-segment-time={SECOND} ! fakesink",
            encoder(Some(frames), false),
            dir.display()
        ),
        Duration::from_secs(120),
    );
    assert!(res.status.success(), "{}", text(&res));
    res
}

/// The same, through offset-tee (its own retention: no max-size-* set).
fn through_offset_tee(dir: &Path, frames: u32) -> Output {
    let res = run(
        &format!(
            "{} ! offset-tee name=t sync=false location={} max-segment-time={SECOND} \
             t.src_0 ! fakesink",
            encoder(Some(frames), false),
            dir.display()
        ),
        Duration::from_secs(120),
    );
    assert!(res.status.success(), "{}", text(&res));
    res
}

fn flip(path: &Path, at: u64) {
    fanout_store::craft::flip(path, at).unwrap();
}

fn indexes(dir: &Path) -> Vec<PathBuf> {
    files_with_extension(dir, "idx")
}

/// The data files of a store by name.
fn data_files(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    files_with_extension(dir, "ts")
        .into_iter()
        .map(|p| {
            let bytes = fs::read(&p).unwrap();
            (p.file_name().unwrap().into(), bytes)
        })
        .collect()
}

/// What each element opening a damaged store must do: the recorder and offset-tee (each on
/// a copy of its own) leave every data file as it was and say what they found.
fn opened_by_writers_keeps(dir: &Path, said: &str) {
    let before = data_files(dir);
    for name in ["bitrate-recorder", "offset-tee"] {
        let copy = dir.with_extension(name);
        let status = std::process::Command::new("cp")
            .args(["-a", dir.to_str().unwrap(), copy.to_str().unwrap()])
            .status()
            .unwrap();
        assert!(status.success());
        let res = match name {
            "bitrate-recorder" => record(&copy, 25),
            _ => through_offset_tee(&copy, 25),
        };
        let log = text(&res);
        let after = data_files(&copy);
        for (file, bytes) in &before {
            assert!(after.get(file) == Some(bytes), "{name} changed {file:?}");
        }
        assert!(after.len() > before.len(), "{name} recorded nothing");
        assert!(log.contains(said), "{name} did not say '{said}':\n{log}");
    }
}

#[test]
fn a_flipped_bit_in_a_closed_segments_header_costs_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("rec");
    record(&store, 150);
    let all = concat_ts(&store);
    assert!(indexes(&store).len() >= 5);
    flip(&indexes(&store)[2], 30);
    let (played, log) = play_to_file(&store, &tmp.path().join("out.ts"));
    assert!(
        played == all,
        "played {} of {} bytes",
        played.len(),
        all.len()
    );
    assert!(log.contains("header rebuilt"), "{log}");
    opened_by_writers_keeps(&store, "header rebuilt");
}

#[test]
fn a_flipped_data_bit_in_a_crashed_recording_costs_one_buffer() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("rec");
    record(&store, 100);
    // A crash: the last segment without its closing record; then one bit of its data flips.
    let last = indexes(&store).pop().unwrap();
    fanout_store::craft::unclose(&last).unwrap();
    let data = last.with_extension("ts");
    flip(&data, 1316 * 3 + 100);
    let all = concat_ts(&store);

    let (played, log) = play_to_file(&store, &tmp.path().join("out.ts"));
    assert_eq!(
        played.len(),
        all.len() - 1316,
        "one buffer of 1316 bytes skipped"
    );
    assert!(log.contains("data checksum mismatch"), "{log}");
    opened_by_writers_keeps(&store, "1 damaged records among them kept");
}

#[test]
fn a_damaged_middle_segment_hides_nothing_after_it() {
    for damage in ["missing data file", "garbage index"] {
        let tmp = tempfile::tempdir().unwrap();
        let store = tmp.path().join("rec");
        record(&store, 150);
        let segs = indexes(&store);
        let before: Vec<u8> = segs[..2]
            .iter()
            .flat_map(|p| fs::read(p.with_extension("ts")).unwrap())
            .collect();
        let after: Vec<u8> = segs[3..]
            .iter()
            .flat_map(|p| fs::read(p.with_extension("ts")).unwrap())
            .collect();
        match damage {
            "missing data file" => fs::remove_file(segs[2].with_extension("ts")).unwrap(),
            _ => fs::write(&segs[2], vec![0x5a; 5000]).unwrap(),
        }
        let (played, log) = play_to_file(&store, &tmp.path().join("out.ts"));
        assert!(
            played == [before.clone(), after.clone()].concat(),
            "{damage}: played {} bytes, want {}\n{log}",
            played.len(),
            before.len() + after.len()
        );
        assert!(log.contains("segment 2"), "{damage}: {log}");
        opened_by_writers_keeps(&store, "segment 2");
    }
}

#[test]
fn offset_tee_pointed_at_a_long_recording_keeps_all_of_it_and_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("rec");
    // 20 s: twice what offset-tee's own retention keeps with no offset.
    record(&store, 500);
    let all = concat_ts(&store);
    let segments = indexes(&store).len();
    let res = through_offset_tee(&store, 50);
    let log = text(&res);
    assert!(
        log.contains("kept the 20 segments recorded there before"),
        "{log}"
    );
    assert!(indexes(&store).len() > segments);
    assert!(concat_ts(&store).starts_with(&all));
}

/// A pipeline run under a 2.5 GB address-space limit and a time limit.
fn limited(args: &str) -> Output {
    let mut cmd = gst_launch(args);
    cmd.stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    // SAFETY: setrlimit is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: 2_500 << 20,
                rlim_max: 2_500 << 20,
            };
            if libc::setrlimit(libc::RLIMIT_AS, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    wait_with_timeout(cmd.spawn().unwrap(), Duration::from_secs(60))
}

/// Ended by itself with an exit code (not killed by a signal such as SIGABRT).
fn ended_cleanly(res: &Output) -> String {
    let log = text(res);
    assert!(
        res.status.code().is_some(),
        "killed: {:?}\n{log}",
        res.status
    );
    log
}

#[test]
fn crafted_huge_buffers_over_sparse_files_are_skipped_not_allocated() {
    for size in [u32::MAX, fanout_store::MAX_BUFFER_SIZE] {
        let tmp = tempfile::tempdir().unwrap();
        let store = tmp.path().join("rec");
        fanout_store::craft::huge_buffers_segment(&store, size, 1, false).unwrap();
        let res = limited(&format!(
            "bitrate-player location={} ! fakesink",
            store.display()
        ));
        let log = ended_cleanly(&res);
        assert!(log.contains("Damaged recording"), "{size}: {log}");
        let res = limited(&format!(
            "{} ! offset-tee name=t sync=false location={} t.src_0 ! fakesink",
            encoder(Some(10), false),
            store.display()
        ));
        let log = ended_cleanly(&res);
        assert!(res.status.success(), "{size}: {log}");
        assert!(log.contains("Repaired recording"), "{size}: {log}");
    }
}

#[test]
fn an_index_that_is_a_fifo_or_a_link_to_a_device_is_refused_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("rec");
    record(&store, 50);
    let idx = indexes(&store)[0].clone();
    for kind in ["link", "fifo"] {
        fs::remove_file(&idx).unwrap();
        match kind {
            "link" => std::os::unix::fs::symlink("/dev/urandom", &idx).unwrap(),
            _ => {
                let path = std::ffi::CString::new(idx.to_str().unwrap()).unwrap();
                // SAFETY: a plain syscall with a valid C string.
                assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o644) }, 0);
            }
        }
        for pipeline in [
            format!("bitrate-player location={} ! fakesink", store.display()),
            format!(
                "{} ! offset-tee name=t location={} t.src_0 ! fakesink",
                encoder(Some(10), false),
                store.display()
            ),
        ] {
            let res = limited(&pipeline);
            let log = ended_cleanly(&res);
            assert!(!res.status.success(), "{kind}: {log}");
            assert!(log.contains("refused"), "{kind}: {log}");
        }
    }
}

/// 5 segments of 20 buffers, 40 ms apart, with a store-time jump of 2^62 ns in the middle
/// of the third: what only a crafted or damaged file holds.
fn crafted_time_jump(dir: &Path) {
    let mut w = Writer::open(
        dir,
        WriterConfig {
            max_segment_time: 800_000_000,
            ..Default::default()
        },
    )
    .unwrap();
    w.write(&[Item::Caps("application/octet-stream")]).unwrap();
    for i in 0..100u64 {
        let jump = if i >= 50 { 1 << 62 } else { 0 };
        let meta = RecordMeta {
            st: Some(jump + i * 40_000_000),
            pts: Some(i * 40_000_000),
            duration: Some(40_000_000),
            ..Default::default()
        };
        w.write(&[Item::Buffer(meta, &[&[i as u8; 100]])]).unwrap();
    }
    drop(w);
}

#[test]
fn a_store_time_jump_neither_hangs_a_live_player_nor_empties_the_store() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("rec");
    crafted_time_jump(&store);
    let segments = indexes(&store).len();
    let out = tmp.path().join("out.bin");
    let res = limited(&format!(
        "bitrate-player location={} is-live=true ! filesink location={}",
        store.display(),
        out.display()
    ));
    let log = ended_cleanly(&res);
    assert!(res.status.success(), "{log}");
    assert_eq!(fs::metadata(&out).unwrap().len(), 100 * 100);
    assert!(log.contains("its time jumps"), "{log}");

    let res = limited(&format!(
        "{} ! offset-tee name=t sync=false location={} t.src_0 ! fakesink",
        encoder(Some(10), false),
        store.display()
    ));
    ended_cleanly(&res);
    assert!(
        indexes(&store).len() > segments,
        "offset-tee removed segments"
    );
    let (played, _) = play_to_file(&store, &out);
    assert!(played.len() >= 100 * 100, "{} bytes left", played.len());
}

#[test]
fn buffers_with_one_real_byte_over_holes_cost_no_time_or_memory() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("rec");
    fanout_store::craft::huge_buffers_segment(&store, fanout_store::MAX_BUFFER_SIZE, 40, true)
        .unwrap();
    let started = std::time::Instant::now();
    let res = limited(&format!(
        "bitrate-player location={} is-live=false ! fakesink",
        store.display()
    ));
    let log = ended_cleanly(&res);
    assert!(res.status.success(), "{log}");
    assert_eq!(log.matches("never written").count(), 40, "{log}");
    eprintln!(
        "40 crafted buffers of 256 MiB skipped in {:?}",
        started.elapsed()
    );
}

/// The store's segments, as the player would report its span: how many there are.
fn segments(dir: &Path) -> usize {
    indexes(dir).len()
}

#[test]
fn a_closing_summary_ending_at_the_end_of_time_neither_freezes_the_store_nor_empties_it() {
    let tmp = tempfile::tempdir().unwrap();
    let crafted = tmp.path().join("crafted");
    record(&crafted, 300);
    let untouched = tmp.path().join("untouched");
    let status = std::process::Command::new("cp")
        .args(["-a", crafted.to_str().unwrap(), untouched.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(status.success());
    // The last segment's stream-end record says it ends at 2^64 - 1, with a valid checksum.
    let last = indexes(&crafted).pop().unwrap();
    let mut bytes = fs::read(&last).unwrap();
    let at = bytes.len() - 41;
    let Ok((Record::StreamEnd(mut summary), _)) =
        fanout_store::decode_record(&bytes[at..], &mut Context::default())
    else {
        panic!("no stream-end record")
    };
    summary.end_st = u64::MAX;
    bytes.truncate(at);
    Record::StreamEnd(summary).encode(&mut bytes, &mut Context::default());
    fs::write(&last, bytes).unwrap();
    for dir in [&crafted, &untouched] {
        let res = run(
            &format!(
                "{} ! bitrate-recorder location={} max-segment-time={SECOND} \
                 max-size-time={} ! fakesink",
                encoder(Some(50), false),
                dir.display(),
                5 * SECOND
            ),
            Duration::from_secs(120),
        );
        assert!(res.status.success(), "{}", text(&res));
    }
    // Retention keeps as much as it keeps of the same store undamaged, and the new data
    // goes on rotating segments (time runs).
    assert!(
        segments(&crafted) + 1 >= segments(&untouched),
        "{} segments left, {} without the damage",
        segments(&crafted),
        segments(&untouched)
    );
    assert!(segments(&crafted) >= 4, "{}", segments(&crafted));
}

#[test]
fn an_empty_index_in_the_middle_is_said_every_time_its_data_is_skipped() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("rec");
    record(&store, 150);
    let seg = indexes(&store)[3].clone();
    fs::write(&seg, b"").unwrap();
    let res = record(&store, 25);
    assert!(text(&res).contains("holds no header"), "{}", text(&res));
    assert_eq!(fs::metadata(&seg).unwrap().len(), 0, "left as it was");
    let (_, log) = play_to_file(&store, &tmp.path().join("out.ts"));
    assert!(log.contains("no index record names"), "{log}");
}

#[test]
fn a_live_player_says_when_the_recording_pauses_for_long() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("rec");
    let mut w = Writer::open(&store, WriterConfig::default()).unwrap();
    w.write(&[Item::Caps("application/octet-stream")]).unwrap();
    for i in 0..20u64 {
        // 23 h of silence after the tenth buffer: within a day, so it is waited for.
        let pause = if i >= 10 { 23 * 3600 * SECOND } else { 0 };
        let meta = RecordMeta {
            pts: Some(pause + i * 40_000_000),
            duration: Some(40_000_000),
            ..Default::default()
        };
        w.write(&[Item::Buffer(meta, &[&[i as u8; 100]])]).unwrap();
    }
    drop(w);
    let child = gst_launch(&format!(
        "bitrate-player location={} is-live=true ! fakesink",
        store.display()
    ))
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped())
    .spawn()
    .unwrap();
    std::thread::sleep(Duration::from_secs(5));
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let res = wait_with_timeout(child, Duration::from_secs(30));
    let log = text(&res);
    assert!(log.contains("pauses here for 82"), "{log}");
}
