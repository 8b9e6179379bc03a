//! bitrate-recorder against the stock `tee ! queue ! filesink`, on the same
//! stream, in the same run (docs/BENCHMARKS.md):
//!
//! 1. kernel-held unwritten data (`Dirty` + `Writeback` in /proc/meminfo),
//!    sampled every 50 ms while recording a constant-bitrate stream;
//! 2. bytes reaching the disk per 100 ms window (the device's sectors-written
//!    counter) against the input bitrate;
//! 3. CPU time (user + system) of the process per recorded GB, at 320 Mbit/s.
//!
//! Usage (after `cargo build --release --workspace`):
//!   target/release/recorder-bench [DIR] [SECONDS] [MBIT/S]
//! DIR must be on a real disk (not tmpfs); default /var/tmp/fanout-bench.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const FLUSH_INTERVAL_S: f64 = 0.25;
/// 7 TS packets, the usual MPEG-TS-over-IP unit.
const TS_BUFFER: usize = 1316;

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(
        args.next()
            .unwrap_or_else(|| "/var/tmp/fanout-bench".into()),
    );
    let seconds: f64 = args.next().map_or(45.0, |s| s.parse().unwrap());
    let mbps: f64 = args.next().map_or(20.0, |s| s.parse().unwrap());
    std::fs::create_dir_all(&dir).unwrap();
    let plugins = std::env::current_exe()
        .unwrap()
        .parent()
        .unwrap()
        .to_owned();
    let disk_stat = block_stat_path(&dir);
    println!(
        "# recorder benchmark: {} on {}",
        dir.display(),
        disk_stat.display()
    );
    println!("settings: {mbps} Mbit/s CBR, {seconds} s per run, flush-interval 250 ms\n");

    let bytes_per_s = mbps * 1e6 / 8.0;
    let paced = |sink: &str| {
        // A constant-bitrate live stream of TS-sized buffers.
        let n = (bytes_per_s * seconds / TS_BUFFER as f64) as u64;
        format!(
            "fakesrc num-buffers={n} sizetype=fixed sizemax={TS_BUFFER} filltype=zero \
             datarate={} sync=true is-live=true ! {sink}",
            bytes_per_s as u64
        )
    };
    let recorder = |d: &Path| format!("bitrate-recorder location={}", d.display());
    let recorder_paced = |d: &Path| format!("{} ! fakesink", recorder(d));
    let filesink = |d: &Path| {
        format!(
            "tee ! queue ! filesink location={}",
            d.join("stream.ts").display()
        )
    };

    println!("## Paced {mbps} Mbit/s: kernel-held unwritten data and disk writes per 100 ms\n");
    println!("| element | Dirty+Writeback max | mean | goal ≤ 2 × bitrate × interval | 100 ms windows within ±10 % of input | within ±10 % of its own mean | window p5 / p50 / p95 (× input) |");
    println!("|---|---|---|---|---|---|---|");
    let goal = 2.0 * bytes_per_s * FLUSH_INTERVAL_S;
    for (name, sink) in [
        (
            "bitrate-recorder",
            &recorder_paced as &dyn Fn(&Path) -> String,
        ),
        ("tee ! queue ! filesink", &filesink),
    ] {
        let out = fresh_dir(&dir, "paced");
        settle();
        let s = run_sampled(&plugins, &paced(&sink(&out)), &disk_stat);
        assert!(data_bytes(&out) > 0);
        let windows = &s.window_rates;
        let within = windows
            .iter()
            .filter(|r| (**r / bytes_per_s - 1.0).abs() <= 0.10)
            .count() as f64
            / windows.len().max(1) as f64;
        let mean = windows.iter().sum::<f64>() / windows.len().max(1) as f64;
        let steady = windows
            .iter()
            .filter(|r| (**r / mean - 1.0).abs() <= 0.10)
            .count() as f64
            / windows.len().max(1) as f64;
        let mut sorted: Vec<f64> = windows.iter().map(|r| r / bytes_per_s).collect();
        sorted.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let pct = |p: f64| {
            sorted
                .get(((sorted.len() as f64 - 1.0) * p) as usize)
                .copied()
                .unwrap_or(0.0)
        };
        println!(
            "| {name} | {:.2} MB | {:.2} MB | {:.2} MB: {} | {:.0} % | {:.0} % | {:.2} / {:.2} / {:.2} |",
            s.dirty_max / 1e6,
            s.dirty_mean / 1e6,
            goal / 1e6,
            if s.dirty_max <= goal { "met" } else { "not met" },
            within * 100.0,
            steady * 100.0,
            pct(0.05),
            pct(0.5),
            pct(0.95),
        );
        std::fs::remove_dir_all(&out).unwrap();
    }

    // CPU per GB: user + system time of the gst-launch process. filesink
    // leaves writing to disk to the kernel's flusher threads, which are not
    // counted; the recorder starts writeback itself, part of which is.
    // Paced at a rate the disk sustains, so no backlog builds up in memory.
    let fast_mbps = 320.0;
    println!("\n## CPU per recorded GB at {fast_mbps} Mbit/s, 1 GiB per run (user + system of the gst-launch process)\n");
    println!("| buffer size | fakesrc ! fakesink (source cost) | tee ! queue ! filesink | bitrate-recorder | ratio recorder / filesink | ratio net of source |");
    println!("|---|---|---|---|---|---|");
    for size in [TS_BUFFER, 65_536] {
        let n = (1u64 << 30) / size as u64;
        let bytes = n * size as u64;
        let src = format!(
            "fakesrc num-buffers={n} sizetype=fixed sizemax={size} filltype=zero \
             datarate={} sync=true",
            (fast_mbps * 1e6 / 8.0) as u64
        );
        let out = fresh_dir(&dir, "cpu");
        settle();
        let base = cpu_seconds(&plugins, &format!("{src} ! fakesink"));
        settle();
        let fs = cpu_seconds(&plugins, &format!("{src} ! {}", filesink(&out)));
        assert_eq!(data_bytes(&out), bytes, "filesink wrote everything");
        let out = fresh_dir(&dir, "cpu");
        settle();
        let rec = cpu_seconds(&plugins, &format!("{src} ! {} ! fakesink", recorder(&out)));
        assert_eq!(data_bytes(&out), bytes, "the recorder recorded everything");
        std::fs::remove_dir_all(&out).unwrap();
        let gb = bytes as f64 / 1e9;
        println!(
            "| {size} B | {:.2} s/GB | {:.2} s/GB | {:.2} s/GB | {:.2} | {:.2} |",
            base / gb,
            fs / gb,
            rec / gb,
            rec / fs,
            (rec - base) / (fs - base)
        );
    }
}

/// Data bytes in a recording or filesink output directory (not the index).
fn data_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_none_or(|e| e != "idx"))
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum()
}

fn fresh_dir(dir: &Path, name: &str) -> PathBuf {
    let d = dir.join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Lets the previous run's writeback finish so runs do not overlap.
fn settle() {
    Command::new("sync").status().unwrap();
    std::thread::sleep(Duration::from_secs(2));
}

fn gst_launch(plugins: &Path, pipeline: &str) -> Command {
    let mut c = Command::new("gst-launch-1.0");
    c.arg("-q")
        .args(pipeline.split_whitespace())
        .env("GST_PLUGIN_PATH", plugins)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    c
}

struct Sampled {
    dirty_max: f64,
    dirty_mean: f64,
    /// Bytes per second reaching the disk, one value per 100 ms window.
    window_rates: Vec<f64>,
}

fn run_sampled(plugins: &Path, pipeline: &str, disk_stat: &Path) -> Sampled {
    let mut child = gst_launch(plugins, pipeline).spawn().unwrap();
    let mut dirty = Vec::new();
    let mut windows = Vec::new();
    let start = Instant::now();
    let mut last_sectors = sectors_written(disk_stat);
    let mut tick = 0u64;
    // Skip the first second: pipeline start-up.
    while child.try_wait().unwrap().is_none() {
        tick += 1;
        let next = start + Duration::from_millis(50 * tick);
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
        if tick <= 20 {
            last_sectors = sectors_written(disk_stat);
            continue;
        }
        dirty.push(dirty_bytes());
        if tick.is_multiple_of(2) {
            let s = sectors_written(disk_stat);
            windows.push((s - last_sectors) as f64 * 512.0 / 0.1);
            last_sectors = s;
        }
    }
    assert!(
        child.wait().unwrap().success(),
        "pipeline failed: {pipeline}"
    );
    // The last window may be cut short by the end of the stream.
    windows.pop();
    Sampled {
        dirty_max: dirty.iter().copied().fold(0.0, f64::max),
        dirty_mean: dirty.iter().sum::<f64>() / dirty.len().max(1) as f64,
        window_rates: windows,
    }
}

fn cpu_seconds(plugins: &Path, pipeline: &str) -> f64 {
    let before = children_cpu();
    let status = gst_launch(plugins, pipeline).status().unwrap();
    assert!(status.success(), "pipeline failed: {pipeline}");
    children_cpu() - before
}

fn children_cpu() -> f64 {
    // SAFETY: getrusage fills the struct we pass; no other preconditions.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru) };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(ru.ru_utime) + t(ru.ru_stime)
}

fn dirty_bytes() -> f64 {
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap();
    meminfo
        .lines()
        .filter(|l| l.starts_with("Dirty:") || l.starts_with("Writeback:"))
        .map(|l| l.split_whitespace().nth(1).unwrap().parse::<f64>().unwrap() * 1024.0)
        .sum()
}

fn block_stat_path(dir: &Path) -> PathBuf {
    let dev = std::fs::metadata(dir).unwrap().dev();
    let (major, minor) = (libc::major(dev), libc::minor(dev));
    PathBuf::from(format!("/sys/dev/block/{major}:{minor}/stat"))
}

/// Sectors written (field 7 of the block device's stat file).
fn sectors_written(stat: &Path) -> u64 {
    let s = std::fs::read_to_string(stat).unwrap();
    s.split_whitespace().nth(6).unwrap().parse().unwrap()
}
