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
    // Debian's interpreter has PyGObject; the one first on PATH may not.
    let child = Command::new("/usr/bin/python3")
        .arg(examples_dir().join(example))
        .args(args)
        .env("GST_PLUGIN_PATH", plugin_dir())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("/usr/bin/python3");
    let out = wait_with_timeout(child, Duration::from_secs(60));
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

#[test]
fn rust_example_records_chase_plays_and_replays() {
    let exe = plugin_dir().join("record-and-play");
    assert!(
        exe.exists(),
        "build the workspace first: no {}",
        exe.display()
    );
    let tmp = tempfile::tempdir().unwrap();
    let child = Command::new(exe)
        .arg(tmp.path().join("rec"))
        .arg("3")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let out = wait_with_timeout(child, Duration::from_secs(120));
    let log = text(&out);
    assert!(out.status.success(), "{log}");
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
