//! The flagship sender against the closest stock construction, in the same run
//! (docs/BENCHMARKS.md): one 8 Mbit/s MPEG-TS source played at its own pace, recorded,
//! delayed 0, 2 and 4 s, and sent to 10 receivers per offset on 127.0.0.1.
//!
//! - fanout: `bitrate-recorder ! offset-tee` (3 outputs, on disk) `! fec-payloader` ×3
//!   `! session-sink` (3 channels), the 30 receivers `session-src` in a process of their own;
//! - stock: `tee ! queue ! filesink` for the recording, `tee ! queue max-size-time !
//!   multiudpsink sync=true ts-offset=…` for the delays (in memory), 10 clients each, no FEC;
//!   the receivers are bare UDP sockets of this process.
//!
//! Each sender is a gst-launch process of its own; its CPU (user + system, from wait4) is
//! what is compared, per second of stream, also net of the source alone. Steps of the
//! fanout sender (recording and delays alone; then FEC; then sessions) say where the time
//! goes. Usage (after `cargo build --release --workspace`): target/release/flagship-bench

use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

mod cpu;

use cpu::wait_with_usage;

const SECONDS: u32 = 20;
const PER_CHANNEL: usize = 10;
const OFFSETS: [u64; 3] = [0, 2_000_000_000, 4_000_000_000];

fn main() {
    let plugins = std::env::current_exe()
        .unwrap()
        .parent()
        .unwrap()
        .to_owned();
    let dir = tempdir();
    let source = dir.join("source.ts");
    make_source(&plugins, &source);
    let src = format!(
        // 1316-byte buffers (7 TS packets), one datagram each, as TS over UDP goes.
        "filesrc location={} ! tsparse set-timestamps=true alignment=7 ! clocksync",
        source.display()
    );
    let bytes = std::fs::metadata(&source).unwrap().len();
    println!(
        "# flagship sender: {:.1} Mbit/s for {SECONDS} s, offsets 0/2/4 s, {PER_CHANNEL} receivers per offset\n",
        bytes as f64 * 8.0 / f64::from(SECONDS) / 1e6
    );
    let run = |pipeline: &str| sender_cpu(&plugins, pipeline, None).0;
    let alone = run(&format!("{src} ! fakesink sync=false"));
    let mut rows = vec![(
        "source alone (`filesrc ! tsparse ! clocksync`)".to_owned(),
        alone,
    )];

    // The stock construction: bare sockets receive what is sent to them, counting bytes.
    let sockets: Vec<UdpSocket> = (0..OFFSETS.len() * PER_CHANNEL)
        .map(|_| UdpSocket::bind("127.0.0.1:0").unwrap())
        .collect();
    let counted: Vec<_> = sockets
        .iter()
        .map(|s| count_bytes(s.try_clone().unwrap()))
        .collect();
    let clients = |c: usize| {
        sockets[c * PER_CHANNEL..(c + 1) * PER_CHANNEL]
            .iter()
            .map(|s| s.local_addr().unwrap().to_string())
            .collect::<Vec<_>>()
            .join(",")
    };
    let mut stock = format!(
        "{src} ! tee name=t t. ! queue ! filesink location={}",
        dir.join("stock.ts").display()
    );
    for (c, offset) in OFFSETS.iter().enumerate() {
        stock += &format!(
            " t. ! queue max-size-time={} max-size-bytes=0 max-size-buffers=0 \
             ! multiudpsink clients={} sync=true ts-offset={offset}",
            offset + 1_000_000_000,
            clients(c)
        );
    }
    rows.push((
        "stock: `tee ! queue ! filesink`, `tee ! queue ! multiudpsink ts-offset` ×3".into(),
        run(&stock),
    ));
    std::thread::sleep(Duration::from_millis(500));
    let least = counted
        .iter()
        .map(|c| c.load(Ordering::Relaxed))
        .min()
        .unwrap();

    // fanout, step by step.
    let store = |name: &str| dir.join(name).display().to_string();
    let delays = |tail: &dyn Fn(usize) -> String, run: &str| {
        let mut p = format!(
            "{src} ! bitrate-recorder location={} ! offset-tee name=t eos-mode=play-out location={}",
            store(&format!("rec-{run}")),
            store(&format!("delay-{run}"))
        );
        for (c, offset) in OFFSETS.iter().enumerate() {
            p += &format!(" src_{c}::offset={offset}");
        }
        for c in 0..OFFSETS.len() {
            p += &format!(" t.src_{c} ! {}", tail(c));
        }
        p
    };
    rows.push((
        "fanout: recording and delays only (`bitrate-recorder ! offset-tee ! fakesink` ×3)".into(),
        run(&delays(&|_| "fakesink sync=false".into(), "a")),
    ));
    rows.push((
        "fanout: + FEC (`… ! fec-payloader ! fakesink` ×3)".into(),
        run(&delays(
            &|_| "fec-payloader ! fakesink sync=false".into(),
            "b",
        )),
    ));
    let port = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut full = delays(&|c| format!("fec-payloader ! s.sink_{c}"), "c");
    full += &format!(
        " session-sink name=s port={port} wait-for-clients={}",
        OFFSETS.len() * PER_CHANNEL
    );
    let mut receivers = String::new();
    for c in 0..OFFSETS.len() {
        full += &format!(" sink_{c}::channel=c{c}");
        for _ in 0..PER_CHANNEL {
            receivers += &format!(
                " session-src host=127.0.0.1 port={port} channels=c{c} \
                 ! fec-depayloader ! fakesink sync=false"
            );
        }
    }
    let (cpu, rx_log) = sender_cpu(&plugins, &full, Some(&receivers));
    rows.push((
        "fanout: the flagship sender (+ `session-sink`, 30 sessions)".into(),
        cpu,
    ));
    let whole = rx_log
        .lines()
        .filter(|l| l.starts_with("stream ended:") && l.contains(", 0 lost"))
        .count();

    let stock_net = rows[1].1 - alone;
    println!(
        "| sender | CPU s | CPU s per s of stream | net of the source | against stock (net) |"
    );
    println!("|---|---|---|---|---|");
    for (name, cpu) in &rows {
        let net = cpu - alone;
        println!(
            "| {name} | {cpu:.2} | {:.3} | {:.3} | {:.2}× |",
            cpu / f64::from(SECONDS),
            net / f64::from(SECONDS),
            net / stock_net
        );
    }
    println!(
        "\nstock receivers: the least served got {:.1} % of the source's bytes",
        least as f64 * 100.0 / bytes as f64
    );
    println!(
        "fanout receivers: {whole} of {} rebuilt the stream with nothing lost",
        OFFSETS.len() * PER_CHANNEL
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn tempdir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("flagship-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn gst_launch(plugins: &Path, pipeline: &str) -> Command {
    let mut cmd = Command::new("gst-launch-1.0");
    cmd.arg("-q")
        .args(pipeline.split_whitespace())
        .env("GST_PLUGIN_PATH", plugins)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    cmd
}

/// A 720p H.264 stream at 8 Mbit/s (constant, with filler), as a TS file.
fn make_source(plugins: &Path, file: &Path) {
    let status = gst_launch(
        plugins,
        &format!(
            "videotestsrc num-buffers={} pattern=smpte ! video/x-raw,width=1280,height=720,framerate=25/1 \
             ! x264enc bitrate=8000 pass=cbr vbv-buf-capacity=500 option-string=nal-hrd=cbr:filler \
             speed-preset=ultrafast key-int-max=25 ! mpegtsmux alignment=7 ! filesink location={}",
            SECONDS * 25,
            file.display()
        ),
    )
    .status()
    .unwrap();
    assert!(status.success(), "making the source failed");
}

/// Runs `sender` to its end (with `receivers` in a process of their own, started first);
/// returns the sender's CPU seconds and what the receivers printed.
fn sender_cpu(plugins: &Path, sender: &str, receivers: Option<&str>) -> (f64, String) {
    let rx: Option<Child> = receivers.map(|r| {
        // Not quiet: the depayloaders' summaries at EOS are printed.
        Command::new("gst-launch-1.0")
            .args(r.split_whitespace())
            .env("GST_PLUGIN_PATH", plugins)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    });
    if rx.is_some() {
        // 30 receivers in one process join in well under this.
        std::thread::sleep(Duration::from_millis(3000));
    }
    // Reaped by wait4(2), which also gives its resource usage.
    #[allow(clippy::zombie_processes)]
    let child = gst_launch(plugins, sender)
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let (ok, _, cpu) = wait_with_usage(child.id() as i32);
    assert!(ok, "the sender failed: {sender}");
    // The receivers end with the sender's streams.
    let log = rx
        .map(|rx| String::from_utf8_lossy(&rx.wait_with_output().unwrap().stdout).into_owned())
        .unwrap_or_default();
    (cpu, log)
}

/// Counts the bytes that arrive on `socket`, on a thread of its own, until the program ends.
fn count_bytes(socket: UdpSocket) -> Arc<AtomicU64> {
    let n = Arc::new(AtomicU64::new(0));
    let counted = n.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 65536];
        while let Ok(len) = socket.recv(&mut buf) {
            counted.fetch_add(len as u64, Ordering::Relaxed);
        }
    });
    n
}
