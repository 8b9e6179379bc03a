//! Every pipeline in pipelines/ runs as a user would run it, each in a test of its own. A
//! pipeline that plays what another recorded runs that one first (once per test run).

use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use fanout_tests::{
    concat_ts, ffprobe_frames, files_with_extension, pipeline_text, pipelines_dir, run, spawn,
    spawn_receiver, text, wait_with_timeout, Network,
};

/// Each pipeline file, with the one whose output it reads.
const PIPELINES: &[(&str, Option<&str>)] = &[
    ("01-record-ts", None),
    ("02-play-at-recorded-rate", Some("01-record-ts")),
    ("03-play-twice-to-file", Some("01-record-ts")),
    ("04-chase-play", None),
    ("05-time-shift-window", None),
    ("06-record-any-caps", None),
    ("07-play-any-caps", Some("06-record-any-caps")),
    ("08-fec-lossy-link", Some("01-record-ts")),
    ("09-fec-carousel", Some("08-fec-lossy-link")),
    ("10-record-a-ts-file", Some("08-fec-lossy-link")),
    ("11-offset-tee-time-zones", None),
    ("12-offset-tee-loop", None),
    // Run together, by their own test.
    ("13-session-server", Some("01-record-ts")),
    ("14-session-receive-to-player", None),
    ("15-session-receive-to-recorder", None),
    // An origin, two edges, three receivers, each in a network namespace: by their own test.
    ("16-scale-out-origin", None),
    ("17-scale-out-edge", None),
    ("18-scale-out-edge-multicast", None),
    ("19-receive-from-two-edges", None),
    ("20-receive-auto", None),
    // The flagship, senders and receivers together: by tests/flagship.rs.
    ("21-flagship-sender", None),
    ("22-flagship-receiver", None),
    ("23-flagship-sender-multicast", None),
    ("24-flagship-receiving-server", None),
    ("25-flagship-receive-auto", None),
    ("26-nvod-from-a-file", Some("08-fec-lossy-link")),
    ("27-loop-a-recording-to-sessions", Some("01-record-ts")),
    ("28-hls-origin-at-two-offsets", None),
];

/// Where the pipelines' `/tmp/fanout-demo` goes in this test run.
fn out_dir() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().unwrap()).path()
}

/// Runs pipeline `name` (after the one it reads) once; the result is shared by all tests.
fn ran(name: &str) -> Result<(), String> {
    static RESULTS: OnceLock<Vec<OnceLock<Result<(), String>>>> = OnceLock::new();
    let results = RESULTS.get_or_init(|| PIPELINES.iter().map(|_| OnceLock::new()).collect());
    let i = PIPELINES
        .iter()
        .position(|(n, _)| *n == name)
        .unwrap_or_else(|| panic!("{name} is not in PIPELINES"));
    results[i]
        .get_or_init(|| {
            if let Some(first) = PIPELINES[i].1 {
                ran(first).map_err(|e| format!("{first}, which {name} reads, failed: {e}"))?;
            }
            launch(name)
        })
        .clone()
}

/// Pipeline `name` as gst-launch arguments, writing under this run's directory.
fn description(name: &str) -> String {
    pipeline_text(name, out_dir())
}

fn launch(name: &str) -> Result<(), String> {
    let file = pipelines_dir().join(format!("{name}.txt"));
    let out = run(&description(name), Duration::from_secs(120));
    check_output(&file, &out)
}

fn check_output(file: &Path, out: &std::process::Output) -> Result<(), String> {
    let log = text(out);
    if !out.status.success() || log.contains("ERROR") {
        return Err(format!("{} failed:\n{log}", file.display()));
    }
    if !log.contains("Got EOS") {
        return Err(format!("{}: no EOS:\n{log}", file.display()));
    }
    Ok(())
}

fn check(name: &str) {
    if let Err(e) = ran(name) {
        panic!("{e}");
    }
}

/// The recording 01 made, as one file.
fn recording() -> Vec<u8> {
    concat_ts(&out_dir().join("recording"))
}

fn assert_same_bytes(file: &str, want: &[u8]) {
    let got = std::fs::read(out_dir().join(file)).unwrap();
    let first_diff = got.iter().zip(want).position(|(a, b)| a != b);
    assert!(
        got == want,
        "{file}: {} bytes, want {}, first difference at {first_diff:?}",
        got.len(),
        want.len()
    );
}

#[test]
fn every_pipeline_file_has_a_test() {
    let files: Vec<String> = files_with_extension(&pipelines_dir(), "txt")
        .iter()
        .map(|f| f.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    let listed: Vec<String> = PIPELINES.iter().map(|(n, _)| n.to_string()).collect();
    assert_eq!(files, listed);
}

#[test]
fn p01_records_a_ts_signal_in_segments_any_tool_reads() {
    check("01-record-ts");
    let joined = out_dir().join("recording.ts");
    std::fs::write(&joined, recording()).unwrap();
    assert_eq!(ffprobe_frames(&joined), 250);
}

#[test]
fn p02_plays_at_the_recorded_rate() {
    check("02-play-at-recorded-rate");
}

#[test]
fn p03_plays_twice_into_one_file() {
    check("03-play-twice-to-file");
    let recording = recording();
    assert_same_bytes("twice.ts", &[recording.as_slice(), &recording].concat());
}

#[test]
fn p04_chase_plays_while_recording() {
    check("04-chase-play");
    let chase = out_dir().join("chase.ts");
    std::fs::write(&chase, concat_ts(&out_dir().join("chase"))).unwrap();
    assert_eq!(ffprobe_frames(&chase), 125);
}

#[test]
fn p05_keeps_a_rolling_window() {
    check("05-time-shift-window");
    let window = fanout_store::Reader::open(&out_dir().join("window")).unwrap();
    let (first, end) = window.range().unwrap().unwrap();
    assert!(end - first <= 2_000_000_000 && first > 0, "{first} {end}");
}

#[test]
fn p06_p07_record_and_play_any_caps() {
    check("06-record-any-caps");
    check("07-play-any-caps");
    let bins = files_with_extension(&out_dir().join("audio"), "bin");
    assert!(!bins.is_empty());
}

#[test]
fn p08_rebuilds_the_stream_across_a_lossy_link() {
    check("08-fec-lossy-link");
    assert_same_bytes("fec-copy.ts", &recording());
}

#[test]
fn p09_rebuilds_a_file_from_the_carousel() {
    check("09-fec-carousel");
    assert_same_bytes("carousel-copy.ts", &recording());
}

#[test]
fn p10_records_a_ts_file_paced_by_its_pcr() {
    check("10-record-a-ts-file");
    let store = fanout_store::Reader::open(&out_dir().join("from-file")).unwrap();
    let (first, end) = store.range().unwrap().unwrap();
    // The file's own 10 s, not the instant it took to read it.
    assert!(end - first > 9_000_000_000, "{first} {end}");
    assert_same_bytes("fec-copy.ts", &concat_ts(&out_dir().join("from-file")));
}

#[test]
fn p11_serves_three_offsets_over_udp() {
    check("11-offset-tee-time-zones");
}

#[test]
fn p12_loops_a_stored_output() {
    check("12-offset-tee-loop");
    let looped = std::fs::read(out_dir().join("looped.ts")).unwrap();
    let third = looped.len() / 3;
    assert!(
        third > 10_000 && looped.len().is_multiple_of(3),
        "{} bytes",
        looped.len()
    );
    assert!(looped[..third] == looped[third..2 * third] && looped[..third] == looped[2 * third..]);
}

#[test]
fn p13_p14_p15_serve_a_recording_to_a_player_and_a_recorder_at_once() {
    check("01-record-ts");
    // The receivers first: they keep trying until the server is there.
    let receivers: Vec<_> = [
        "14-session-receive-to-player",
        "15-session-receive-to-recorder",
    ]
    .iter()
    .map(|name| {
        let child = spawn(&description(name));
        (name, child)
    })
    .collect();
    std::thread::sleep(Duration::from_millis(500));
    check_output(
        &pipelines_dir().join("13-session-server.txt"),
        &run(&description("13-session-server"), Duration::from_secs(120)),
    )
    .unwrap();
    for (name, child) in receivers {
        let out = wait_with_timeout(child, Duration::from_secs(30));
        check_output(&pipelines_dir().join(format!("{name}.txt")), &out).unwrap();
    }
    // The recorder has the stream from where it joined on, byte for byte.
    let received = concat_ts(&out_dir().join("received"));
    let recording = recording();
    assert!(
        recording.ends_with(&received) && received.len() >= recording.len() * 8 / 10,
        "received {} of {} bytes, the recording's end: {}",
        received.len(),
        recording.len(),
        recording.ends_with(&received)
    );
}

/// `received` is the end of `sent` (a receiver that joined late starts late), at least
/// `share` of it; `log` is the receiver's output, its warnings shown if not.
fn assert_tail(name: &str, received: &[u8], sent: &[u8], share: f64, log: &str) {
    let warnings: Vec<&str> = log.lines().filter(|l| l.contains("WARN")).collect();
    assert!(
        sent.ends_with(received) && received.len() as f64 >= sent.len() as f64 * share,
        "{name}: received {} of {} bytes, the end of what was sent: {} (the last {} bytes \
         agree); warnings: {warnings:#?}",
        received.len(),
        sent.len(),
        sent.ends_with(received),
        received
            .iter()
            .rev()
            .zip(sent.iter().rev())
            .take_while(|(a, b)| a == b)
            .count()
    );
}

#[test]
#[ignore = "needs root: network namespaces"]
fn p16_to_p20_an_origin_two_edges_and_three_receivers_on_a_lan() {
    let net = Network::new(&[
        ("origin", "10.78.0.1"),
        ("edge1", "10.78.0.2"),
        ("edge2", "10.78.0.3"),
        ("rx1", "10.78.0.11"),
        ("rx2", "10.78.0.12"),
        ("rx3", "10.78.0.13"),
    ]);
    // rx1 loses 30 % of what comes from each edge; rx2's network carries no multicast,
    // rx3's no UDP at all.
    net.drop_input(
        "rx1",
        &[
            "ip saddr 10.78.0.2 numgen random mod 100 < 30",
            "ip saddr 10.78.0.3 numgen random mod 100 < 30",
        ],
    );
    net.drop_input("rx2", &["ip daddr 224.0.0.0/4"]);
    net.drop_input("rx3", &["meta l4proto udp"]);
    let auto = description("20-receive-auto");
    let start = |host: &str, desc: String| {
        (
            host.to_owned(),
            net.gst_launch(host, &desc).spawn().unwrap(),
        )
    };
    // Edges and receivers first: they keep trying until the origin is there.
    let mut children = vec![
        start("edge1", description("17-scale-out-edge")),
        start("edge2", description("18-scale-out-edge-multicast")),
        start("rx1", description("19-receive-from-two-edges")),
        start(
            "rx2",
            format!("-m {}", auto.replace("received-auto", "received-rx2")),
        ),
        start(
            "rx3",
            format!("-m {}", auto.replace("received-auto", "received-rx3")),
        ),
    ];
    std::thread::sleep(Duration::from_millis(1500));
    let origin = net
        .gst_launch("origin", &description("16-scale-out-origin"))
        .spawn()
        .unwrap();
    children.insert(0, ("origin".into(), origin));
    let mut outputs = Vec::new();
    for (host, child) in children {
        let out = wait_with_timeout(child, Duration::from_secs(90));
        assert!(out.status.success(), "{host}: {}", text(&out));
        outputs.push((host, text(&out)));
    }
    let sent = std::fs::read(out_dir().join("origin.ts")).unwrap();
    assert!(sent.len() > 2_000_000, "{} bytes sent", sent.len());
    let read = |f: &str| std::fs::read(out_dir().join(f)).unwrap();
    let log = |host: &str| outputs.iter().find(|(h, _)| h == host).unwrap().1.as_str();
    assert_tail(
        "rx1",
        &read("received-two-edges.ts"),
        &sent,
        0.7,
        log("rx1"),
    );
    assert_tail("rx2", &read("received-rx2.ts"), &sent, 0.5, log("rx2"));
    assert_tail("rx3", &read("received-rx3.ts"), &sent, 0.4, log("rx3"));
    let changes = |host: &str| -> Vec<String> {
        log(host)
            .lines()
            .filter(|l| l.contains("fanout-session-transport"))
            .filter_map(|l| l.split("transport=(string)").nth(1))
            .map(|t| t.split([',', ';']).next().unwrap().to_owned())
            .collect()
    };
    assert_eq!(changes("rx2"), vec!["udp"], "no multicast: UDP unicast");
    assert_eq!(changes("rx3"), vec!["udp", "tcp"], "no UDP: TCP");
}

#[test]
fn p26_starts_a_file_again_on_delayed_channels() {
    check("08-fec-lossy-link");
    // A receiver of the 4 s start, there before it: the whole file, byte for byte.
    let copy = out_dir().join("nvod-start4.ts");
    let receiver = spawn_receiver("port=5640 channels=start4", "", &copy);
    std::thread::sleep(Duration::from_millis(500));
    check_output(
        &pipelines_dir().join("26-nvod-from-a-file.txt"),
        &run(
            &description("26-nvod-from-a-file"),
            Duration::from_secs(120),
        ),
    )
    .unwrap();
    let out = wait_with_timeout(receiver, Duration::from_secs(30));
    assert!(out.status.success(), "{}", text(&out));
    assert_same_bytes(
        "nvod-start4.ts",
        &std::fs::read(out_dir().join("fec-copy.ts")).unwrap(),
    );
}

#[test]
fn p27_loops_a_recording_to_receivers_until_ctrl_c() {
    check("01-record-ts");
    let recording = recording();
    let sender = spawn(&description("27-loop-a-recording-to-sessions"));
    let copy = out_dir().join("looped-sessions.ts");
    let receiver = spawn_receiver("port=5650", "", &copy);
    // More than one play of the recording reaches the receiver.
    let start = std::time::Instant::now();
    while std::fs::metadata(&copy).map_or(0, |m| m.len()) < recording.len() as u64 * 3 / 2 {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the playout does not loop"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Ctrl-C: gst-launch -e sends EOS, the receiver ends with it.
    // SAFETY: signalling a child process this test started.
    unsafe { libc::kill(sender.id() as i32, libc::SIGINT) };
    let out = wait_with_timeout(sender, Duration::from_secs(20));
    check_output(
        &pipelines_dir().join("27-loop-a-recording-to-sessions.txt"),
        &out,
    )
    .unwrap();
    let out = wait_with_timeout(receiver, Duration::from_secs(20));
    assert!(out.status.success(), "{}", text(&out));
    // What came is the recording over and over, from where the receiver joined.
    let got = std::fs::read(&copy).unwrap();
    let pieces = fanout_examples::pieces(&got, &recording).expect("only the recording's bytes");
    assert!(pieces.len() >= 2, "{pieces:?}");
    for p in &pieces[1..] {
        assert_eq!(p.at, 0, "each play from the start: {pieces:?}");
    }
    for p in &pieces[..pieces.len() - 1] {
        assert_eq!(
            p.at + p.len,
            recording.len(),
            "each play to the end: {pieces:?}"
        );
    }
}

#[test]
fn p28_publishes_hls_at_two_offsets_that_a_stock_player_reads_whole() {
    for d in ["hls/now", "hls/plus2s"] {
        std::fs::create_dir_all(out_dir().join(d)).unwrap();
    }
    check("28-hls-origin-at-two-offsets");
    for d in ["now", "plus2s"] {
        let playlist = out_dir().join(format!("hls/{d}/playlist.m3u8"));
        let text = std::fs::read_to_string(&playlist).unwrap();
        assert!(text.contains("#EXT-X-ENDLIST"), "{d}: {text}");
        assert_eq!(ffprobe_frames(&playlist), 150, "{d}");
    }
}
