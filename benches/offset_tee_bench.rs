//! offset-tee against the stock `tee ! queue ! fakesink ts-offset=…` construct, in the same
//! run (docs/BENCHMARKS.md): peak RSS and CPU of a process serving 8 outputs of one 8 Mbit/s
//! stream whose offsets span 0–1 min, 0–10 min and 0–60 min. The pipeline clock runs `RATE`
//! times faster than real time (a system clock with a calibration rate), so an hour of offset
//! passes in a minute; the source is a cheap constant-bitrate `fakesrc`. Every output's bytes
//! are checked to be the input's.
//!
//! Usage (after `cargo build --release --workspace`):
//!   target/release/offset-tee-bench [RATE] [SPANS_IN_MINUTES...]   (default 120, 1 10 60)
//! Each contender runs in a process of its own (this binary with `--run`), so its peak RSS
//! and CPU are its own.

use std::process::Command;
use std::sync::{Arc, Mutex};

use gst::prelude::*;

mod cpu;

use cpu::wait_with_usage;

const OUTPUTS: u64 = 8;
/// 8 Mbit/s.
const BYTES_PER_S: u64 = 1_000_000;
/// 100 TS packets of 1316 bytes: a cheap source, and few enough buffers per second to run the
/// clock fast.
const BUFFER: u64 = 131_600;
/// How long the input goes on after the largest offset, so every output runs a while at once.
const TAIL_S: u64 = 20;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--run") {
        let ok = run(&args[1], args[2].parse().unwrap(), args[3].parse().unwrap());
        std::process::exit(if ok { 0 } else { 1 });
    }
    let rate: u64 = args.first().map_or(120, |s| s.parse().unwrap());
    let spans: Vec<u64> = if args.len() > 1 {
        args[1..].iter().map(|s| s.parse().unwrap()).collect()
    } else {
        vec![1, 10, 60]
    };
    println!("# offset-tee: {OUTPUTS} outputs of one 8 Mbit/s stream, clock {rate}x real time\n");
    println!("| contender | offsets | peak RSS | CPU | CPU per output | all bytes identical |");
    println!("|---|---|---|---|---|---|");
    for span in spans {
        for contender in ["offset-tee", "tee-queue"] {
            // An hour at 8 Mbit/s is 3.6 GB in the queues, about 12 GiB of RSS: not tried.
            if contender == "tee-queue" && span > 10 {
                println!(
                    "| `tee ! queue ! fakesink ts-offset` | 0–{span} min | not run: ~{} GiB needed | | | |",
                    span * 12 / 60
                );
                continue;
            }
            let exe = std::env::current_exe().unwrap();
            // Reaped by wait4(2), which also gives its resource usage.
            #[allow(clippy::zombie_processes)]
            let child = Command::new(exe)
                .args(["--run", contender, &span.to_string(), &rate.to_string()])
                .spawn()
                .unwrap();
            let (ok, rss_kb, cpu) = wait_with_usage(child.id() as i32);
            let name = match contender {
                "offset-tee" => "`offset-tee`",
                _ => "`tee ! queue ! fakesink ts-offset`",
            };
            println!(
                "| {name} | 0–{span} min | {:.0} MB | {cpu:.1} s | {:.2} s | {} |",
                rss_kb as f64 / 1024.0,
                cpu / OUTPUTS as f64,
                if ok { "yes" } else { "NO" }
            );
        }
    }
}

/// What one output got: bytes and their checksum.
#[derive(Default, Clone, Copy, PartialEq, Eq, Debug)]
struct Tally {
    bytes: u64,
    crc: u32,
}

fn count(sink: &gst::Element) -> Arc<Mutex<Tally>> {
    let tally = Arc::new(Mutex::new(Tally::default()));
    let t = tally.clone();
    sink.set_property("signal-handoffs", true);
    sink.connect("handoff", false, move |args| {
        let buffer = args[1].get::<gst::Buffer>().unwrap();
        let map = buffer.map_readable().unwrap();
        let mut t = t.lock().unwrap();
        t.bytes += map.len() as u64;
        t.crc = crc32c::crc32c_append(t.crc, &map);
        None
    });
    tally
}

/// Moves `clock` on at `rate` times real time, releasing every wait that falls due on the way
/// (a test clock releases none by itself).
fn drive(
    clock: gst_check::TestClock,
    rate: u64,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let start = std::time::Instant::now();
        while !stop.load(std::sync::atomic::Ordering::SeqCst) {
            let target = gst::ClockTime::from_nseconds(
                (start.elapsed().as_nanos() as u64).saturating_mul(rate),
            );
            while let Some(due) = clock.next_entry_time().filter(|&t| t <= target) {
                if clock.time() < due {
                    clock.set_time(due);
                }
                if clock.process_next_clock_id().is_none() {
                    break;
                }
            }
            if clock.time() < target {
                clock.set_time(target);
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    })
}

/// One contender, in this process: true if every output got exactly the input's bytes.
fn run(contender: &str, span_min: u64, rate: u64) -> bool {
    gst::init().unwrap();
    gstfanoutrecording::plugin_register_static().unwrap();
    let span = span_min * 60_000_000_000;
    let offsets: Vec<u64> = (0..OUTPUTS).map(|k| span * k / (OUTPUTS - 1)).collect();
    let input_s = span / 1_000_000_000 + TAIL_S;
    let buffers = input_s * BYTES_PER_S / BUFFER;
    let src = format!(
        "fakesrc is-live=true sync=true num-buffers={buffers} sizetype=fixed sizemax={BUFFER} \
         filltype=pattern-span datarate={BYTES_PER_S} ! identity name=in"
    );
    let outputs: String = offsets
        .iter()
        .enumerate()
        .map(|(k, off)| match contender {
            "offset-tee" => format!(" t.src_{k} ! fakesink name=o{k} sync=false"),
            _ => format!(
                " t. ! queue max-size-time={} max-size-bytes=0 max-size-buffers=0 \
                 ! fakesink name=o{k} sync=true async=false ts-offset={off}",
                off + 5_000_000_000
            ),
        })
        .collect();
    let tee = match contender {
        "offset-tee" => {
            let props: String = offsets
                .iter()
                .enumerate()
                .map(|(k, off)| format!(" src_{k}::offset={off}"))
                .collect();
            // Every output plays to its end, so all bytes can be compared.
            format!("offset-tee name=t eos-mode=play-out{props}")
        }
        _ => "tee name=t".to_string(),
    };
    let pipeline = gst::parse::launch(&format!("{src} ! {tee}{outputs}"))
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
    // A test clock driven `rate` times faster than real time.
    let clock = gst_check::TestClock::new();
    pipeline.use_clock(Some(&clock));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let driver = drive(clock.clone(), rate, stop.clone());
    let input = count(&pipeline.by_name("in").unwrap());
    let outs: Vec<_> = (0..OUTPUTS)
        .map(|k| count(&pipeline.by_name(&format!("o{k}")).unwrap()))
        .collect();
    let bus = pipeline.bus().unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let msg = bus.timed_pop_filtered(
        gst::ClockTime::NONE,
        &[gst::MessageType::Eos, gst::MessageType::Error],
    );
    pipeline.set_state(gst::State::Null).unwrap();
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    driver.join().unwrap();
    if let Some(gst::MessageView::Error(e)) = msg.as_ref().map(|m| m.view()) {
        eprintln!("{contender}: {} {:?}", e.error(), e.debug());
        return false;
    }
    let want = *input.lock().unwrap();
    let mut ok = want.bytes > 0;
    for (k, out) in outs.iter().enumerate() {
        let got = *out.lock().unwrap();
        if got != want {
            eprintln!("{contender}: output {k} got {got:?}, the input was {want:?}");
            ok = false;
        }
    }
    ok
}
