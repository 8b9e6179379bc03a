//! offset-tee under faults, as they happen in production: killed and restarted on the same
//! store, a damaged store, a directory it cannot write, a full disk.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use fanout_tests::{concat_ts, encoder, ffprobe_frames, gst_launch, run, spawn, text, SmallDisk};

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn after_kill_9_and_a_restart_a_delayed_output_delivers_what_was_stored_before() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("shift");
    let mut child = gst_launch(&format!(
        "{} ! offset-tee name=t location={} t.src_0 ! fakesink",
        encoder(None, true),
        store.display()
    ))
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !store.exists() || concat_ts(&store).len() < 600_000 {
        assert!(Instant::now() < deadline, "nothing stored");
        std::thread::sleep(Duration::from_millis(100));
    }
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    child.wait().unwrap();
    let before = concat_ts(&store);

    // Restarted: an output 1 s behind starts with the second before the kill.
    let out = tmp.path().join("delayed.ts");
    let res = run(
        &format!(
            "{} ! offset-tee location={} name=t src_0::offset=1000000000 t.src_0 ! filesink location={}",
            encoder(Some(50), true),
            store.display(),
            out.display()
        ),
        Duration::from_secs(60),
    );
    let log = text(&res);
    assert!(res.status.success(), "{log}");
    let delayed = std::fs::read(&out).unwrap();
    assert!(delayed.len() > 100_000, "{} bytes", delayed.len());
    assert!(
        contains(&before, &delayed[..188 * 7]),
        "the delayed output does not start with what was stored before the restart"
    );
    // And goes on into what the restarted pipeline recorded.
    let after = concat_ts(&store);
    assert!(contains(
        &after[before.len() - 1000..],
        &delayed[delayed.len() - 188 * 7..]
    ));

    // The store is a recording like any other: bitrate-player plays all of it.
    assert!(played_back(&store, tmp.path()) == after);
}

#[test]
fn a_damaged_store_is_repaired_with_a_warning_and_an_unwritable_one_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("shift");
    let record = |props: &str| {
        run(
            &format!(
                "{} ! offset-tee location={} {props} t.src_0 ! fakesink",
                encoder(Some(25), false),
                store.display()
            )
            .replacen("offset-tee", "offset-tee name=t sync=false", 1),
            Duration::from_secs(60),
        )
    };
    let res = record("");
    assert!(res.status.success(), "{}", text(&res));
    // A torn tail: half a record of garbage after the last one.
    let index = std::fs::read_dir(&store)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "idx"))
        .max()
        .unwrap();
    let mut bytes = std::fs::read(&index).unwrap();
    let cut = bytes.len() - 20;
    bytes.truncate(cut);
    bytes.extend_from_slice(&[0xAB; 7]);
    std::fs::write(&index, bytes).unwrap();
    let res = record("");
    let log = text(&res);
    assert!(res.status.success(), "{log}");
    assert!(
        log.contains("WARNING") && log.contains("Repaired recording"),
        "{log}"
    );

    let res = run(
        &format!(
            "{} ! offset-tee location=/proc/fanout-cannot-write t.src_0 ! fakesink",
            encoder(Some(5), false)
        )
        .replacen("offset-tee", "offset-tee name=t", 1),
        Duration::from_secs(60),
    );
    let log = text(&res);
    assert!(!res.status.success(), "{log}");
    assert!(
        log.contains("Could not open recording /proc/fanout-cannot-write"),
        "{log}"
    );
}

#[test]
#[ignore = "needs root (mount)"]
fn a_full_disk_stops_the_store_but_not_the_output_without_offset() {
    let disk = SmallDisk::new("512k");
    let tmp = tempfile::tempdir().unwrap();
    let onward = tmp.path().join("onward.ts");
    let res = run(
        &format!(
            "{} ! offset-tee name=t sync=false location={} on-disk-error=stop-recording \
             t.src_0 ! filesink location={}",
            encoder(Some(250), false),
            disk.path().join("shift").display(),
            onward.display()
        ),
        Duration::from_secs(120),
    );
    let log = text(&res);
    assert!(res.status.success(), "{log}");
    assert!(
        log.contains("WARNING") && log.contains("no space left"),
        "{log}"
    );
    assert_eq!(ffprobe_frames(&onward), 250);
}

/// Issue 15 (5): `gst-launch-1.0 -e` and Ctrl-C with an output an hour behind and one looping
/// forever ends within seconds; the store is complete, and the output without offset got all
/// of it.
#[test]
fn ctrl_c_under_gst_launch_e_ends_at_once_with_long_offsets_and_endless_loops() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("shift");
    let onward = tmp.path().join("onward.ts");
    let child = spawn(&format!(
        "{} ! offset-tee name=t location={} src_0::offset=3600000000000 src_1::loop=-1 \
         t.src_0 ! fakesink t.src_1 ! filesink location={}",
        encoder(None, true),
        store.display(),
        onward.display()
    ));
    let deadline = Instant::now() + Duration::from_secs(60);
    while !store.exists() || concat_ts(&store).len() < 200_000 {
        assert!(Instant::now() < deadline, "nothing stored");
        std::thread::sleep(Duration::from_millis(100));
    }
    // SAFETY: kill(2) on our own child's pid; SIGINT is Ctrl-C.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let started = Instant::now();
    let res = fanout_tests::wait_with_timeout(child, Duration::from_secs(20));
    let log = text(&res);
    assert!(
        res.status.success() && started.elapsed() < Duration::from_secs(20),
        "{log}"
    );
    assert!(log.contains("Got EOS"), "{log}");
    let stored = concat_ts(&store);
    assert_eq!(
        std::fs::read(&onward).unwrap(),
        stored,
        "the undelayed output"
    );
    assert!(played_back(&store, tmp.path()) == stored);
}

/// What `bitrate-player` plays of the store at `store` (into a file under `dir`).
fn played_back(store: &Path, dir: &Path) -> Vec<u8> {
    let played = dir.join("played.ts");
    let res = run(
        &format!(
            "bitrate-player location={} is-live=false ! filesink location={}",
            store.display(),
            played.display()
        ),
        Duration::from_secs(60),
    );
    assert!(res.status.success(), "{}", text(&res));
    std::fs::read(&played).unwrap()
}
