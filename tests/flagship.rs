//! The flagship as users run it: the sender of pipelines/21 and receivers of pipelines/22
//! and 24, each a gst-launch process, the receivers started first, each across a link losing
//! 10 % of the packets each way. Every receiver gets the recording byte for byte from its
//! first byte to its last, at its offset; and again after the sender restarts with the same
//! locations. Pipelines 23 and 25 (multicast, with fallback) run in network namespaces.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fanout_examples::{pieces, LossyRelay, Piece};
use fanout_tests::{concat_ts, pipeline_text, spawn, text, wait_with_timeout, Network};

const SENDER_PORT: u16 = 5620;
const LOSS: f64 = 0.10;
/// Two frames at 25 frames a second.
const TWO_FRAMES: f64 = 0.08;

/// A receiver of 22 for `channel`, joining through `relay`, writing `file`.
fn receiver_22(out: &Path, channel: &str, relay: &LossyRelay, file: &Path) -> String {
    pipeline_text("22-flagship-receiver", out)
        .replace(
            &format!("port={SENDER_PORT}"),
            &format!("port={}", relay.port()),
        )
        .replace("channels=plus2s", &format!("channels={channel}"))
        .replace(
            &out.join("flagship/plus2s.ts").display().to_string(),
            &file.display().to_string(),
        )
}

/// Polls the size of files every 10 ms: when each of them reached which size.
struct Growth {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Vec<Vec<(Instant, u64)>>>,
}

impl Growth {
    fn watch(files: Vec<PathBuf>) -> Growth {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut log = vec![Vec::<(Instant, u64)>::new(); files.len()];
            while !s.load(Ordering::Relaxed) {
                let now = Instant::now();
                for (f, log) in files.iter().zip(&mut log) {
                    let size = std::fs::metadata(f).map_or(0, |m| m.len());
                    if log.last().is_none_or(|&(_, last)| last != size) {
                        log.push((now, size));
                    }
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            log
        });
        Growth { stop, thread }
    }

    fn finish(self) -> Vec<Vec<(Instant, u64)>> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap()
    }
}

/// When `log` (a file's growth) first held byte `pos` of the file.
fn reached(log: &[(Instant, u64)], pos: usize) -> Option<Instant> {
    log.iter().find(|&&(_, s)| s > pos as u64).map(|&(t, _)| t)
}

/// Median seconds by which file `b` got the recording's bytes `range` after file `a` did;
/// each file holds the recording from its byte `a.1` / `b.1` on (written unbuffered).
fn behind(
    a: (&[(Instant, u64)], usize),
    b: (&[(Instant, u64)], usize),
    range: std::ops::Range<usize>,
) -> f64 {
    let mut d: Vec<f64> = range
        .step_by(13_160)
        .filter_map(|p| {
            let ta = reached(a.0, p.checked_sub(a.1)?)?;
            let tb = reached(b.0, p.checked_sub(b.1)?)?;
            Some(match tb.checked_duration_since(ta) {
                Some(d) => d.as_secs_f64(),
                None => -ta.duration_since(tb).as_secs_f64(),
            })
        })
        .collect();
    d.sort_by(f64::total_cmp);
    d.get(d.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Runs the sender of 21 with `receivers` (gst-launch arguments, started first); returns
/// their logs once all ended.
fn run_flagship(out: &Path, receivers: Vec<String>) -> Vec<String> {
    let children: Vec<_> = receivers.iter().map(|r| spawn(r)).collect();
    std::thread::sleep(Duration::from_millis(300));
    let sender = fanout_tests::run(
        &pipeline_text("21-flagship-sender", out),
        Duration::from_secs(120),
    );
    let log = text(&sender);
    assert!(sender.status.success() && log.contains("Got EOS"), "{log}");
    assert!(
        !log.contains("receivers joined within"),
        "the hold timed out: {log}"
    );
    children
        .into_iter()
        .map(|c| {
            let o = wait_with_timeout(c, Duration::from_secs(60));
            let log = text(&o);
            assert!(o.status.success() && log.contains("Got EOS"), "{log}");
            assert!(!log.contains("could not be rebuilt"), "{log}");
            log
        })
        .collect()
}

fn describe(got: &[u8], sent: &[u8]) -> String {
    format!(
        "{} bytes of {}: {:?}",
        got.len(),
        sent.len(),
        pieces(got, sent)
    )
}

#[test]
fn every_receiver_gets_the_recording_at_its_offset_through_loss_and_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path();
    let server: SocketAddr = format!("127.0.0.1:{SENDER_PORT}").parse().unwrap();
    let channels = [("now", 0.0), ("plus2s", 2.0), ("plus4s", 4.0)];

    // First run: a receiver of 22 per channel.
    let relays: Vec<LossyRelay> = (0..3)
        .map(|i| LossyRelay::start(server, LOSS, 100 + i).unwrap())
        .collect();
    let files: Vec<PathBuf> = channels
        .iter()
        .map(|(c, _)| out.join(format!("flagship/{c}-1.ts")))
        .collect();
    std::fs::create_dir_all(out.join("flagship")).unwrap();
    let growth = Growth::watch(files.clone());
    let receivers = channels
        .iter()
        .zip(&relays)
        .zip(&files)
        .map(|(((c, _), relay), file)| receiver_22(out, c, relay, file))
        .collect();
    run_flagship(out, receivers);
    let growth = growth.finish();
    let recording = concat_ts(&out.join("flagship/recording"));
    assert!(
        recording.len() > 1_000_000,
        "{} bytes recorded",
        recording.len()
    );
    for (i, ((c, offset), file)) in channels.iter().zip(&files).enumerate() {
        let got = std::fs::read(file).unwrap();
        assert!(got == recording, "{c}: {}", describe(&got, &recording));
        let measured = behind((&growth[0], 0), (&growth[i], 0), 0..recording.len());
        assert!(
            (measured - offset).abs() <= TWO_FRAMES,
            "{c}: {measured} s behind the 0 s channel, want {offset}"
        );
    }
    for r in &relays {
        assert!(r.dropped() > 100, "the link lost nothing");
    }
    drop(relays);

    // The sender restarts with the same locations; receivers of 22 for the delayed channels
    // and the receiving server of 24 for the other.
    let len1 = recording.len();
    let relays: Vec<LossyRelay> = (0..3)
        .map(|i| LossyRelay::start(server, LOSS, 200 + i).unwrap())
        .collect();
    let delayed: Vec<PathBuf> = ["plus2s", "plus4s"]
        .iter()
        .map(|c| out.join(format!("flagship/{c}-2.ts")))
        .collect();
    let receivers = vec![
        receiver_22(out, "plus2s", &relays[0], &delayed[0]),
        receiver_22(out, "plus4s", &relays[1], &delayed[1]),
        pipeline_text("24-flagship-receiving-server", out).replace(
            &format!("port={SENDER_PORT}"),
            &format!("port={}", relays[2].port()),
        ),
    ];
    let growth = Growth::watch(delayed.clone());
    run_flagship(out, receivers);
    let growth = growth.finish();
    let recording = concat_ts(&out.join("flagship/recording"));
    assert!(recording.len() > len1 * 3 / 2, "the recording went on");
    let received = concat_ts(&out.join("flagship/received"));
    assert!(
        received == recording[len1..],
        "now, recorded at the recipient: {}",
        describe(&received, &recording[len1..])
    );
    // A delayed channel resumes its offset behind at once: the last seconds stored before
    // the restart, then the new input, in one piece to the end.
    let bytes_per_second = len1 as f64 / 10.0;
    let mut starts = Vec::new();
    for (file, offset) in delayed.iter().zip([2.0, 4.0]) {
        let got = std::fs::read(file).unwrap();
        let p = pieces(&got, &recording);
        let Some([Piece { at, len }]) = p.as_deref() else {
            panic!("{}: {}", file.display(), describe(&got, &recording));
        };
        assert_eq!(
            at + len,
            recording.len(),
            "{}: not to the end",
            file.display()
        );
        starts.push(*at);
        let before = (len1 - at) as f64 / bytes_per_second;
        assert!(
            (before - offset).abs() <= 0.5,
            "{}: starts {before} s before the restart, want {offset}",
            file.display()
        );
    }
    // And 2 s apart, as before the restart, over what both got of the new input.
    let measured = behind(
        (&growth[0], starts[0]),
        (&growth[1], starts[1]),
        len1..recording.len(),
    );
    assert!(
        (measured - 2.0).abs() <= TWO_FRAMES,
        "after the restart plus4s is {measured} s behind plus2s, want 2"
    );
}

#[test]
#[ignore = "needs root: network namespaces"]
fn multicast_flagship_reaches_receivers_by_group_udp_and_tcp() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path();
    std::fs::create_dir_all(out.join("flagship-mc")).unwrap();
    let net = Network::new(&[
        ("origin", "10.79.0.1"),
        ("rx1", "10.79.0.11"),
        ("rx2", "10.79.0.12"),
        ("rx3", "10.79.0.13"),
    ]);
    // rx2's network carries no multicast, rx3's no UDP at all.
    net.drop_input("rx2", &["ip daddr 224.0.0.0/4"]);
    net.drop_input("rx3", &["meta l4proto udp"]);
    let auto = pipeline_text("25-flagship-receive-auto", out);
    let rx = |channel: &str| {
        auto.replace("channels=plus4s", &format!("channels={channel}"))
            .replace("plus4s.ts", &format!("{channel}.ts"))
    };
    let mut children = vec![
        (
            "rx1",
            net.gst_launch("rx1", &format!("-m {}", rx("plus4s")))
                .spawn()
                .unwrap(),
        ),
        (
            "rx2",
            net.gst_launch("rx2", &format!("-m {}", rx("plus2s")))
                .spawn()
                .unwrap(),
        ),
        (
            "rx3",
            net.gst_launch("rx3", &format!("-m {}", rx("now")))
                .spawn()
                .unwrap(),
        ),
    ];
    std::thread::sleep(Duration::from_millis(500));
    let sender = net
        .gst_launch(
            "origin",
            &pipeline_text("23-flagship-sender-multicast", out),
        )
        .spawn()
        .unwrap();
    children.insert(0, ("origin", sender));
    let mut logs = Vec::new();
    for (host, child) in children {
        let o = wait_with_timeout(child, Duration::from_secs(120));
        assert!(o.status.success(), "{host}: {}", text(&o));
        logs.push((host, text(&o)));
    }
    let recording = concat_ts(&out.join("flagship-mc/recording"));
    for (c, host) in [("now", "rx3"), ("plus2s", "rx2"), ("plus4s", "rx1")] {
        let got = std::fs::read(out.join(format!("flagship-mc/{c}.ts"))).unwrap();
        let log = &logs.iter().find(|(h, _)| *h == host).unwrap().1;
        assert!(
            got == recording,
            "{c} on {host}: {}\n{log}",
            describe(&got, &recording)
        );
    }
    let changes = |host: &str| -> Vec<String> {
        let log = &logs.iter().find(|(h, _)| *h == host).unwrap().1;
        log.lines()
            .filter(|l| l.contains("fanout-session-transport"))
            .filter_map(|l| l.split("transport=(string)").nth(1))
            .map(|t| t.split([',', ';']).next().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        changes("rx1"),
        Vec::<String>::new(),
        "the group reaches rx1"
    );
    assert_eq!(changes("rx2"), vec!["udp"], "no multicast: UDP unicast");
    assert_eq!(changes("rx3"), vec!["udp", "tcp"], "no UDP: TCP");
}

#[test]
fn ctrl_c_while_the_sender_waits_for_receivers_ends_it_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path();
    // No receiver comes: the sender of 21 holds its stream (wait-for-clients=3, 30 s).
    let sender = spawn(&pipeline_text("21-flagship-sender", out).replace(
        &format!("port={SENDER_PORT}"),
        &format!("port={}", SENDER_PORT + 1),
    ));
    std::thread::sleep(Duration::from_secs(3));
    let start = std::time::Instant::now();
    // SAFETY: signalling a child process this test started.
    unsafe { libc::kill(sender.id() as i32, libc::SIGINT) };
    let o = wait_with_timeout(sender, Duration::from_secs(20));
    let log = text(&o);
    assert!(o.status.success() && log.contains("Got EOS"), "{log}");
    assert!(
        start.elapsed() < Duration::from_secs(15),
        "Ctrl-C took {:?}: the hold (30 s) held it",
        start.elapsed()
    );
    // What was recorded meanwhile is complete on disk.
    let recording = concat_ts(&out.join("flagship/recording"));
    assert!(
        recording.len() > 300_000,
        "{} bytes recorded",
        recording.len()
    );
}
