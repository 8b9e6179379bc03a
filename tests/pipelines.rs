//! Every pipeline in pipelines/ runs, in order, as a user would run it.

use std::path::PathBuf;
use std::time::Duration;

use fanout_tests::{concat_ts, ffprobe_frames, files_with_extension, run, text};

const DEMO_DIR: &str = "/tmp/fanout-demo";

fn pipeline_files() -> Vec<PathBuf> {
    files_with_extension(
        &PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../pipelines"),
        "txt",
    )
}

#[test]
fn every_pipeline_runs_to_its_end() {
    let tmp = tempfile::tempdir().unwrap();
    let files = pipeline_files();
    assert!(files.len() >= 9, "{files:?}");
    for file in files {
        let description: String = std::fs::read_to_string(&file)
            .unwrap()
            .lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .collect::<Vec<_>>()
            .join(" ")
            .replace(DEMO_DIR, tmp.path().to_str().unwrap());
        let out = run(&description, Duration::from_secs(120));
        let log = text(&out);
        assert!(
            out.status.success() && !log.contains("ERROR"),
            "{} failed:\n{log}",
            file.display()
        );
        assert!(
            log.contains("Got EOS"),
            "{}: no EOS:\n{log}",
            file.display()
        );
    }

    // What the pipelines left is what they promise.
    let recording = concat_ts(&tmp.path().join("recording"));
    let joined = tmp.path().join("recording.ts");
    std::fs::write(&joined, &recording).unwrap();
    assert_eq!(ffprobe_frames(&joined), 250);
    let twice = std::fs::read(tmp.path().join("twice.ts")).unwrap();
    let want = [recording.as_slice(), recording.as_slice()].concat();
    let first_diff = twice.iter().zip(&want).position(|(a, b)| a != b);
    assert!(
        twice == want,
        "twice.ts: {} bytes, want {}, first difference at {first_diff:?}",
        twice.len(),
        want.len()
    );
    for copy in ["fec-copy.ts", "carousel-copy.ts"] {
        let got = std::fs::read(tmp.path().join(copy)).unwrap();
        assert!(
            got == recording,
            "{copy}: {} bytes, want {}",
            got.len(),
            recording.len()
        );
    }
    let chase = tmp.path().join("chase.ts");
    std::fs::write(&chase, concat_ts(&tmp.path().join("chase"))).unwrap();
    assert_eq!(ffprobe_frames(&chase), 125);
    let window = fanout_store::Reader::open(&tmp.path().join("window")).unwrap();
    let (first, end) = window.range().unwrap().unwrap();
    assert!(end - first <= 2_000_000_000 && first > 0, "{first} {end}");
}
