//! The example applications run as documented.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use fanout_tests::{plugin_dir, text, wait_with_timeout};

fn examples_dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../examples"))
}

/// Runs a Python example with `args`; returns what it printed, once it succeeded.
fn run_python(example: &str, args: &[&Path]) -> String {
    run_python_for(example, args, 60)
}

/// [`run_python`], given `seconds` to end.
fn run_python_for(example: &str, args: &[&Path], seconds: u64) -> String {
    // Debian's interpreter has PyGObject; the one first on PATH may not.
    let child = Command::new("/usr/bin/python3")
        .arg(examples_dir().join(example))
        .args(args)
        .env("GST_PLUGIN_PATH", plugin_dir())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("/usr/bin/python3");
    let out = wait_with_timeout(child, Duration::from_secs(seconds));
    let log = text(&out);
    assert!(out.status.success(), "{log}");
    log
}

#[test]
fn python_example_records_and_plays_back() {
    let tmp = tempfile::tempdir().unwrap();
    let log = run_python("record_and_play.py", &[&tmp.path().join("rec")]);
    assert!(log.contains("played back"), "{log}");
}

#[test]
fn python_example_sets_offsets_from_upstream() {
    let log = run_python("offsets_from_python.py", &[]);
    assert!(log.contains("offsets set from upstream"), "{log}");
}

/// Runs a Rust example (built with the workspace) with `args`; returns what it printed,
/// once it succeeded.
fn run_rust(example: &str, args: &[&std::ffi::OsStr]) -> String {
    let exe = plugin_dir().join(example);
    assert!(
        exe.exists(),
        "build the workspace first: no {}",
        exe.display()
    );
    let child = Command::new(exe)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let out = wait_with_timeout(child, Duration::from_secs(120));
    let log = text(&out);
    assert!(out.status.success(), "{log}");
    log
}

#[test]
fn rust_example_records_chase_plays_and_replays() {
    let tmp = tempfile::tempdir().unwrap();
    let rec = tmp.path().join("rec");
    let log = run_rust("record-and-play", &[rec.as_os_str(), "3".as_ref()]);
    assert!(log.contains("Chase play decoded 75 of 75 frames"), "{log}");
    assert!(log.contains("0 bytes could not be recorded"), "{log}");
    assert!(log.contains("losing 10 % of its packets"), "{log}");
    // What arrived through the lossy link is what was recorded.
    let line = log.lines().find(|l| l.starts_with("Recorded ")).unwrap();
    let numbers: Vec<u64> = line.split(' ').filter_map(|w| w.parse().ok()).collect();
    assert_eq!(numbers[0], numbers[2], "{line}");
}

#[test]
fn python_example_authorizes_receivers_by_token() {
    let log = run_python("sessions_from_python.py", &[]);
    assert!(log.contains("refused the JOIN: not authorized"), "{log}");
    assert!(log.contains("authorized by token from Python"), "{log}");
}

#[test]
fn rust_flagship_records_delays_and_serves_every_byte_and_changes_an_offset_live() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("demo");
    let log = run_rust(
        "flagship",
        &[dir.as_os_str(), "6".as_ref(), "--change-offset".as_ref()],
    );
    assert_eq!(log.matches(" joined").count(), 3, "{log}");
    assert!(log.contains("receivers 3/3"), "{log}");
    assert!(log.contains("offset changed live to 3 s"), "{log}");
    // Each channel's receiver: the recording byte for byte, at its offset within two
    // frames (80 ms); the 4 s one with the jump of its live change.
    let report = |channel: &str| -> (String, f64) {
        let mut lines = log
            .lines()
            .skip_while(|l| !l.trim_start().starts_with(&format!("{channel}:")));
        let what = lines
            .next()
            .unwrap_or_else(|| panic!("no {channel} in {log}"))
            .to_owned();
        let offset = lines
            .next()
            .and_then(|l| l.trim_start().strip_prefix("offset "))
            .and_then(|l| l.split(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no offset for {channel} in {log}"));
        (what, offset)
    };
    for (channel, want) in [("now", 0.0), ("plus2s", 2.0), ("plus4s", 4.0)] {
        let (what, offset) = report(channel);
        assert!(
            (offset - want).abs() <= 0.08,
            "{channel}: offset {offset}: {log}"
        );
        if channel == "plus4s" {
            assert!(what.contains(" then "), "no jump: {what}");
        } else {
            assert!(
                what.contains("the whole recording, byte for byte"),
                "{what}"
            );
        }
    }
    let png = dir.join("flagship.png");
    assert!(std::fs::read(&png).unwrap().starts_with(b"\x89PNG"));
    assert!(fanout_tests::coloured_pixels(&png) > 2000, "an empty plot");
}

#[test]
fn fanout_plot_draws_a_gst_launch_m_log_and_a_live_pipeline() {
    let exe = plugin_dir().join("fanout-plot");
    assert!(
        exe.exists(),
        "build the workspace first: no {}",
        exe.display()
    );
    let tmp = tempfile::tempdir().unwrap();
    let pipeline = |rec: &str| {
        format!(
            "videotestsrc is-live=true num-buffers=75 ! video/x-raw,width=160,height=120,framerate=25/1 \
             ! bitrate-recorder name=rec location={} ! fec-payloader ! identity drop-probability=0.05 \
             ! fec-depayloader name=rx ! fakesink",
            tmp.path().join(rec).display()
        )
    };
    let out = fanout_tests::run(&format!("-m {}", pipeline("rec")), Duration::from_secs(60));
    assert!(out.status.success(), "{}", text(&out));
    let log = tmp.path().join("run.log");
    std::fs::write(&log, text(&out)).unwrap();
    let from_log = tmp.path().join("from-log.png");
    let live = tmp.path().join("live.png");
    let runs: [Vec<std::ffi::OsString>; 2] = [
        vec![log.into(), from_log.clone().into()],
        vec![
            "--launch".into(),
            pipeline("live-rec").into(),
            live.clone().into(),
        ],
    ];
    for args in runs {
        let child = Command::new(&exe)
            .args(&args)
            .env("GST_PLUGIN_PATH", plugin_dir())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let out = wait_with_timeout(child, Duration::from_secs(60));
        assert!(out.status.success(), "{args:?}: {}", text(&out));
    }
    for png in [from_log, live] {
        assert!(
            fanout_tests::coloured_pixels(&png) > 1000,
            "{png:?}: an empty plot"
        );
    }
}

#[test]
fn python_flagship_builds_serves_and_changes_an_offset_live() {
    let tmp = tempfile::tempdir().unwrap();
    let log = run_python_for(
        "flagship.py",
        &[&tmp.path().join("py"), Path::new("6")],
        120,
    );
    assert_eq!(log.matches(" joined").count(), 3, "{log}");
    assert!(log.contains("offset changed live to 3 s"), "{log}");
    assert!(log.contains("receivers 3/3"), "{log}");
    assert_eq!(
        log.matches("the whole recording, byte for byte").count(),
        2,
        "{log}"
    );
    assert!(
        log.contains("every receiver got the recording at its offset"),
        "{log}"
    );
}
