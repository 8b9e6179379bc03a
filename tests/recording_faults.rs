//! Faults a recording must survive, provoked as they happen in production:
//! a recorder killed mid-stream, a disk that fills up.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fanout_tests::{concat_ts, ffprobe_frames, gst_launch, is_root, run, text};

const FLUSH_INTERVAL_NS: u64 = 250_000_000;

/// H.264 in MPEG-TS at about 2 Mbit/s (noise does not compress).
fn encoder(num_buffers: Option<u32>, live: bool) -> String {
    let n = num_buffers.map_or(String::new(), |n| format!("num-buffers={n}"));
    format!(
        "videotestsrc is-live={live} {n} pattern=snow ! video/x-raw,width=320,height=240,framerate=25/1 \
         ! x264enc tune=zerolatency bitrate=2000 key-int-max=25 speed-preset=ultrafast ! mpegtsmux alignment=7"
    )
}

/// Plays a recording as fast as possible into a file; returns the file's bytes
/// and the pipeline's output.
fn play_to_file(dir: &Path, out: &Path) -> (Vec<u8>, String) {
    let res = run(
        &format!(
            "bitrate-player location={} is-live=false ! filesink location={}",
            dir.display(),
            out.display()
        ),
        Duration::from_secs(60),
    );
    let log = text(&res);
    assert!(res.status.success(), "{log}");
    (std::fs::read(out).unwrap(), log)
}

/// SIGKILL keeps the page cache, so what this proves is the recorder's own share: what it had
/// received but not yet handed to the kernel (its backlog) stays within one flush interval, the
/// store reads back byte for byte after the kill, and recording resumes after it. That written
/// data also reaches the disk is `a_power_cut_loses_at_most_a_few_flush_intervals`.
#[test]
fn kill_9_leaves_at_most_one_flush_interval_unwritten() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("rec");
    let reference = tmp.path().join("reference.ts");
    // Downstream of the recorder, an unbuffered filesink: what it holds is
    // what the recorder had received and passed on when it was killed.
    let mut child = gst_launch(&format!(
        "{} ! bitrate-recorder location={} flush-interval={FLUSH_INTERVAL_NS} \
         ! filesink location={} buffer-mode=unbuffered",
        encoder(None, true),
        store.display(),
        reference.display()
    ))
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    let started = Instant::now();
    let deadline = started + Duration::from_secs(60);
    // Record for a few seconds of stream (bounded wait).
    while std::fs::metadata(&reference).map_or(0, |m| m.len()) < 500_000 {
        assert!(Instant::now() < deadline, "the recording never got going");
        std::thread::sleep(Duration::from_millis(50));
    }
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    child.wait().unwrap();
    let elapsed = started.elapsed().as_secs_f64();

    let received = std::fs::read(&reference).unwrap();
    let recorded = concat_ts(&store);
    assert!(
        received.starts_with(&recorded),
        "the recording must be a prefix of what was received"
    );
    let bytes_per_s = received.len() as f64 / elapsed;
    let allowed = (bytes_per_s * FLUSH_INTERVAL_NS as f64 / 1e9) as usize;
    let lost = received.len() - recorded.len();
    assert!(
        lost <= allowed,
        "lost {lost} bytes, more than one flush interval ({allowed} bytes at {bytes_per_s:.0} B/s)"
    );

    // The player reads everything that survived, byte for byte; ffprobe too.
    let (played, _) = play_to_file(&store, &tmp.path().join("played.ts"));
    assert_eq!(played, recorded);
    assert!(ffprobe_frames(&tmp.path().join("played.ts")) > 25);

    // Reopening for recording cuts any torn tail and appends after it.
    let res = run(
        &format!(
            "{} ! bitrate-recorder location={} ! fakesink",
            encoder(Some(25), false),
            store.display()
        ),
        Duration::from_secs(60),
    );
    assert!(res.status.success(), "{}", text(&res));
    let (played, _) = play_to_file(&store, &tmp.path().join("played2.ts"));
    assert!(played.starts_with(&recorded) && played.len() > recorded.len());
}

/// A small tmpfs, mounted for the test and unmounted after.
struct SmallDisk(tempfile::TempDir);

impl SmallDisk {
    /// Only as root (scripts/test.sh runs the ignored tests then).
    fn new(size: &str) -> Self {
        assert!(
            is_root(),
            "needs root to mount a tmpfs: run as root with --include-ignored"
        );
        let dir = tempfile::tempdir().unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "mount -t tmpfs failed although we are root");
        SmallDisk(dir)
    }

    fn path(&self) -> &Path {
        self.0.path()
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.0.path()).status();
    }
}

#[test]
#[ignore = "needs root (mount)"]
fn full_disk_with_stop_recording_keeps_the_stream_flowing() {
    let disk = SmallDisk::new("512k");
    let tmp = tempfile::tempdir().unwrap();
    let store = disk.path().join("rec");
    let onward = tmp.path().join("onward.ts");
    let res = run(
        &format!(
            "{} ! bitrate-recorder location={} ! filesink location={}",
            encoder(Some(250), false),
            store.display(),
            onward.display()
        ),
        Duration::from_secs(120),
    );
    let log = text(&res);
    assert!(res.status.success(), "the pipeline must not fail:\n{log}");
    assert!(
        log.contains("WARNING") && log.contains("no space left"),
        "a warning names the problem:\n{log}"
    );
    // Everything flowed on, and the recording up to the full disk plays.
    assert_eq!(ffprobe_frames(&onward), 250);
    let recorded = concat_ts(&store);
    assert!(recorded.len() > 100_000, "{}", recorded.len());
    let onward_bytes = std::fs::read(&onward).unwrap();
    assert!(onward_bytes.starts_with(&recorded));
    let (played, log) = play_to_file(&store, &tmp.path().join("played.ts"));
    assert_eq!(played, recorded, "{log}");
}

#[test]
#[ignore = "needs root (mount)"]
fn full_disk_with_error_fails_the_pipeline_cleanly() {
    let disk = SmallDisk::new("512k");
    let tmp = tempfile::tempdir().unwrap();
    let store = disk.path().join("rec");
    let res = run(
        &format!(
            "{} ! bitrate-recorder location={} on-disk-error=error ! fakesink",
            encoder(Some(250), false),
            store.display()
        ),
        Duration::from_secs(120),
    );
    let log = text(&res);
    assert!(!res.status.success(), "the pipeline must fail:\n{log}");
    assert!(log.contains("No space left"), "{log}");
    // What was written before stays playable.
    let recorded = concat_ts(&store);
    let (played, _) = play_to_file(&store, &tmp.path().join("played.ts"));
    assert_eq!(played, recorded);
}
