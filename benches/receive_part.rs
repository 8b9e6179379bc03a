//! The receiving side (issue 20): `session-bench receive-side [seconds [rounds]]`.
//!
//! A sender in this process (blocks made by `fanout_fec::Sender`, 10 % of their packets
//! dropped, the rest a block to a buffer into `session-sink`: about 200 Mbit/s of source,
//! sealed, GSO) and a receiver in a child process (this binary again,
//! `session-bench receive-gro …`) that measures its own CPU: `session-src gro=false` against
//! `gro=true`, each `! fakesink` (datagrams per CPU-second) and `! fec-depayloader !
//! fakesink` (source Mbit/s per CPU-second), against the raw `raptorq` decoder on blocks of
//! the same shape (K = 100, T = 1400, 20 % repair, 10 % lost) in this process.

use std::process::Command;
use std::time::{Duration, Instant};

use gst::prelude::*;
use gst_app::AppSrc;
use raptorq::{
    EncodingPacket, ObjectTransmissionInformation, SourceBlockDecoder, SourceBlockEncoder,
};

use fanout_fec::packet;
use fanout_fec::{BufferMeta, Sender, SenderConfig};
use gstfanoutfec::packing;

use crate::cpu::Cpu;
use crate::{free_port, median, ratio_range, PAYLOAD};

/// Source bytes a second the sender pushes: 200 Mbit/s.
const RATE: usize = 25_000_000;
const K: usize = 100;
const T: usize = 1400;
const REPAIR: u32 = 20;

/// What a receiver measured: datagrams taken, CPU-seconds, source bytes given out.
struct Measured {
    datagrams: f64,
    cpu: f64,
    bytes: f64,
}

type Feeder = (
    std::thread::JoinHandle<()>,
    std::sync::Arc<std::sync::atomic::AtomicBool>,
);

/// The sender: blocks made here (`fanout_fec::Sender`, what fec-payloader runs), 10 % of
/// their symbol packets dropped at random, the rest pushed a block to a buffer into
/// session-sink as fec-payloader would (packing=block), which sends them with GSO.
fn sender(port: u16) -> (gst::Pipeline, Feeder) {
    let p = gst::parse::launch(&format!(
        "appsrc name=in caps=application/x-fanout-fec,flow=0,packing=block \
         ! session-sink port={port} wait-for-clients=1"
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let src = p.by_name("in").unwrap().downcast::<AppSrc>().unwrap();
    src.set_max_bytes(64 << 20);
    p.set_state(gst::State::Playing).unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let s = stop.clone();
    let feeder = std::thread::spawn(move || {
        let mut fec = Sender::new(SenderConfig {
            symbol_size: T as u16,
            max_k: K as u16,
            repair_percent: REPAIR,
            max_block_time: Duration::ZERO,
            ..SenderConfig::default()
        })
        .unwrap();
        fec.set_stream("video/mpegts".into(), false).unwrap();
        let mut rng = 0x9E37_79B9_7F4A_7C15u64;
        // A tick's worth every 10 ms, paced by the wall clock.
        let per_tick = RATE / 100 / PAYLOAD;
        let start = Instant::now();
        let mut ticks = 0u32;
        while !s.load(std::sync::atomic::Ordering::Relaxed) {
            let mut packets = Vec::new();
            for i in 0..per_tick {
                let data = vec![(i + ticks as usize) as u8; PAYLOAD];
                fec.push_buffer(&BufferMeta::default(), &data, &mut packets);
            }
            packets.retain(|p| !is_symbol(p) || !lost(&mut rng));
            if !packets.is_empty() && src.push_buffer(packing::block_buffer(&packets)).is_err() {
                break;
            }
            ticks += 1;
            let due = start + Duration::from_millis(10) * ticks;
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
    });
    (p, (feeder, stop))
}

fn is_symbol(p: &[u8]) -> bool {
    matches!(packet::parse(p), Ok(packet::Packet::Symbol { .. }))
}

/// 10 % of the time, from an xorshift64.
fn lost(x: &mut u64) -> bool {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    (*x).is_multiple_of(10)
}

fn measure(gro: bool, depay: bool, seconds: f64) -> Measured {
    let port = free_port();
    let (p, (feeder, stop)) = sender(port);
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "receive-gro",
            &port.to_string(),
            &gro.to_string(),
            &depay.to_string(),
            &seconds.to_string(),
        ])
        .output()
        .unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = feeder.join();
    p.set_state(gst::State::Null).unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let v: Vec<f64> = text
        .split_whitespace()
        .map(|x| x.parse().unwrap())
        .collect();
    assert_eq!(
        v.len(),
        3,
        "receiver said {text:?} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    if std::env::var_os("FANOUT_BENCH_VERBOSE").is_some() {
        eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    }
    Measured {
        datagrams: v[0],
        cpu: v[1],
        bytes: v[2],
    }
}

/// The child: `receive-gro PORT GRO DEPAY SECONDS`; prints datagrams, CPU-seconds, bytes.
pub fn child(args: &[String]) {
    let (port, gro, depay, seconds): (u16, bool, bool, f64) = (
        args[0].parse().unwrap(),
        args[1].parse().unwrap(),
        args[2].parse().unwrap(),
        args[3].parse().unwrap(),
    );
    let tail = if depay {
        "fec-depayloader name=depay ! fakesink sync=false"
    } else {
        "fakesink sync=false"
    };
    let p = gst::parse::launch(&format!(
        "session-src name=src port={port} gro={gro} ! {tail}"
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    p.set_state(gst::State::Playing).unwrap();
    let src = p.by_name("src").unwrap();
    let now = || {
        let d = src
            .property::<gst::Structure>("stats")
            .get::<u64>("datagrams")
            .unwrap_or(0);
        let b = p.by_name("depay").map_or(0, |e| {
            e.property::<gst::Structure>("stats")
                .get::<u64>("bytes-out")
                .unwrap_or(0)
        });
        (d as f64, b as f64)
    };
    let start = Instant::now();
    while now().0 < 10_000.0 {
        assert!(start.elapsed() < Duration::from_secs(30), "no data");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(1));
    let (d0, b0) = now();
    let cpu = Cpu::now();
    std::thread::sleep(Duration::from_secs_f64(seconds));
    let (d1, b1) = now();
    let cpu = cpu.elapsed();
    println!("{} {cpu} {}", d1 - d0, b1 - b0);
    if let Some(d) = p.by_name("depay") {
        eprintln!("{}", d.property::<gst::Structure>("stats"));
    }
    p.set_state(gst::State::Null).unwrap();
    std::process::exit(0);
}

/// The raw decoder on blocks of the same shape, the same 10 % lost: source Mbit/s per
/// CPU-second.
fn raw_decode() -> f64 {
    let config = ObjectTransmissionInformation::new((K * T) as u64, T as u16, 1, 1, 8);
    let mut rng = 0x2545_F491_4F6C_DD1Du64;
    let blocks: Vec<Vec<Vec<u8>>> = (0..200u32)
        .map(|n| {
            let data: Vec<u8> = (0..K * T).map(|i| (i as u32 ^ n) as u8).collect();
            let enc = SourceBlockEncoder::new(0, &config, &data);
            let mut packets = enc.source_packets();
            packets.extend(enc.repair_packets(0, REPAIR));
            packets
                .iter()
                .filter(|_| !lost(&mut rng))
                .map(EncodingPacket::serialize)
                .collect()
        })
        .collect();
    let mut best = f64::MAX;
    for _ in 0..3 {
        let cpu = Cpu::now();
        let mut out = 0;
        for packets in &blocks {
            let mut dec = SourceBlockDecoder::new(0, &config, (K * T) as u64);
            if let Some(b) = dec.decode(packets.iter().map(|p| EncodingPacket::deserialize(p))) {
                out += b.len();
            }
        }
        assert!(out > blocks.len() * K * T * 9 / 10);
        best = best.min(cpu.elapsed());
    }
    (blocks.len() * K * T) as f64 * 8.0 / 1e6 / best
}

pub fn run(seconds: f64, rounds: usize) {
    let raw = raw_decode();
    let mut runs = Vec::new();
    for r in 0..rounds {
        // Rotated, so neither always runs on a fresher machine.
        let mut run = Vec::new();
        for k in 0..4 {
            let i = (r + k) % 4;
            run.push((i, measure(i % 2 == 1, i >= 2, seconds)));
        }
        run.sort_by_key(|(i, _)| *i);
        runs.push(run.into_iter().map(|(_, m)| m).collect::<Vec<_>>());
    }
    let per_cpu = |i: usize| median(runs.iter().map(|r| r[i].datagrams / r[i].cpu).collect());
    let mbit = |i: usize| {
        median(
            runs.iter()
                .map(|r| r[i].bytes * 8.0 / 1e6 / r[i].cpu)
                .collect(),
        )
    };
    println!("Receiving {} Mbit/s (K = {K}, T = {T}, {REPAIR} % repair, 10 % of packets lost at random, sealed, GSO from the sender), median of {rounds} runs of {seconds} s:\n", RATE * 8 / 1_000_000);
    println!("| receiver | datagrams per CPU-second | source Mbit/s per CPU-second |");
    println!("|---|---|---|");
    println!(
        "| `session-src gro=false ! fakesink` | {:.0} | |",
        per_cpu(0)
    );
    println!(
        "| `session-src gro=true ! fakesink` | {:.0} | |",
        per_cpu(1)
    );
    println!(
        "| `session-src gro=false ! fec-depayloader ! fakesink` | {:.0} | {:.0} |",
        per_cpu(2),
        mbit(2)
    );
    println!(
        "| `session-src gro=true ! fec-depayloader ! fakesink` | {:.0} | {:.0} |",
        per_cpu(3),
        mbit(3)
    );
    println!("| raw `raptorq` decode, blocks of the same shape, 10 % lost | | {raw:.0} |");
    let ratio = |a: usize, b: usize| {
        ratio_range(
            runs.iter()
                .map(|r| (r[a].datagrams / r[a].cpu) / (r[b].datagrams / r[b].cpu))
                .collect(),
        )
    };
    println!(
        "\nGRO on / off, datagrams per CPU-second: `! fakesink` {}, `! fec-depayloader` {}",
        ratio(1, 0),
        ratio(3, 2)
    );
    let dec = |i: usize| {
        ratio_range(
            runs.iter()
                .map(|r| r[i].bytes * 8.0 / 1e6 / r[i].cpu / raw)
                .collect(),
        )
    };
    println!(
        "`session-src ! fec-depayloader` / raw decode: gro=false {}, gro=true {}",
        dec(2),
        dec(3)
    );
    // What is left once the reading (socket, opening sealed datagrams, handing on) is taken
    // away at what it cost into fakesink in the same round: the depayloader's own figure.
    let alone = ratio_range(
        runs.iter()
            .map(|r| {
                let reading = r[3].datagrams * r[1].cpu / r[1].datagrams;
                r[3].bytes * 8.0 / 1e6 / (r[3].cpu - reading).max(1e-6) / raw
            })
            .collect(),
    );
    println!(
        "`fec-depayloader` alone (gro=true, less the reading cost measured into fakesink) / raw decode: {alone}"
    );
}
