//! fec-payloader / fec-depayloader against their peers, in the same run (docs/BENCHMARKS.md):
//!
//! 1. throughput, in source Mbit/s per CPU-second of the process: the elements (`filesrc ! fec-payloader ! fakesink
//!    sync=false` fed 1316-byte buffers from memory by `appsrc`, and the packets with 10 % loss
//!    through `appsrc ! fec-depayloader ! fakesink`)
//!    against the raw `raptorq` (and `reed-solomon-simd`) crate doing the same encode and
//!    decode of the same data: K = 100, T = 1280, 20 % repair;
//! 2. recovery at equal overhead against the stock `rtpulpfecenc` / `rtpulpfecdec` on the
//!    same loss pattern: see `--recovery`.
//!
//! Usage (after `cargo build --release --workspace`):
//!   target/release/fec-bench [MBYTES]          throughput (default 64 MB of data)
//!   target/release/fec-bench --recovery [RUNS] recovery (default 20 runs of a 10 s clip)

use gst::prelude::*;
use raptorq::{
    EncodingPacket, ObjectTransmissionInformation, SourceBlockDecoder, SourceBlockEncoder,
};

mod cpu;
mod recovery;

pub use cpu::Cpu;

const K: usize = 100;
const T: usize = 1280;
const REPAIR: usize = 20;
const LOSS: f64 = 0.10;

/// xorshift64*: the same loss pattern for every contender.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn lost(&mut self, p: f64) -> bool {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }
}

fn mbps(bytes: usize, seconds: f64) -> f64 {
    bytes as f64 * 8.0 / seconds / 1e6
}

fn main() {
    gst::init().unwrap();
    gstfanoutfec::plugin_register_static().unwrap();
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--recovery") {
        let runs = args.get(1).map_or(20, |s| s.parse().unwrap());
        recovery::run(runs);
        return;
    }
    let mbytes: usize = args.first().map_or(64, |s| s.parse().unwrap());
    let mut rng = Rng(7);
    let data: Vec<u8> = (0..mbytes << 20).map(|_| rng.next_u64() as u8).collect();
    let file = std::env::temp_dir().join("fanout-fec-bench.bin");
    std::fs::write(&file, &data).unwrap();
    println!(
        "# FEC throughput: {mbytes} MB, K = {K}, T = {T}, {REPAIR} % repair, decode at {} % loss\n",
        LOSS * 100.0
    );
    println!("| contender | encode Mbit/s | decode Mbit/s |");
    println!("|---|---|---|");
    let (raw_enc, raw_dec) = raw_raptorq(&data);
    println!("| raw `raptorq` 2.0 | {raw_enc:.0} | {raw_dec:.0} |");
    let el = elements(&file, data.len(), "raptorq", false);
    el.print(
        "fec-payloader / fec-depayloader codec=raptorq",
        raw_enc,
        raw_dec,
    );
    let bl = elements(&file, data.len(), "raptorq", true);
    bl.print(
        "the same, packing=block (a buffer per block, as to session-sink)",
        raw_enc,
        raw_dec,
    );
    let (rs_enc, rs_dec) = raw_reed_solomon(&data);
    println!("| raw `reed-solomon-simd` 3.1 | {rs_enc:.0} | {rs_dec:.0} |");
    let rs = elements(&file, data.len(), "reed-solomon", false);
    rs.print(
        "fec-payloader / fec-depayloader codec=reed-solomon",
        rs_enc,
        rs_dec,
    );
    let _ = std::fs::remove_file(file);
    encode_breakdown(&data);
}

/// Where the encoding element's time goes, in the same run: the GStreamer-free sender alone
/// on the same 1316-byte pushes, and as many packet-sized `GstBuffer`s as the element makes
/// going through `appsrc ! fakesink` (made, listed, pushed, freed) with no encoding at all.
fn encode_breakdown(data: &[u8]) {
    let cfg = fanout_fec::SenderConfig {
        symbol_size: T as u16,
        max_k: K as u16,
        repair_percent: REPAIR as u32,
        max_block_time: std::time::Duration::ZERO,
        ..fanout_fec::SenderConfig::default()
    };
    let mut packets = 0;
    let mut packet_len = 0;
    let sender_s = best_of(|| {
        let mut sender = fanout_fec::Sender::new(cfg.clone()).unwrap();
        sender.set_stream(String::new(), false).unwrap();
        let start = Cpu::now();
        let mut out = Vec::new();
        packets = 0;
        for chunk in data.chunks(1316) {
            sender.push_buffer(&fanout_fec::BufferMeta::default(), chunk, &mut out);
            packets += out.len();
            packet_len = out.last().map_or(packet_len, Vec::len);
            out.clear();
        }
        sender.flush(&mut out);
        packets += out.len();
        start.elapsed()
    });
    let buffers_s = best_of(|| {
        let pipeline = launch("appsrc name=in format=bytes ! fakesink sync=false");
        let src = appsrc(&pipeline);
        let start = Cpu::now();
        // Made in the timed span, as the element makes them: one list per input block.
        for block in (0..packets).collect::<Vec<_>>().chunks(K + REPAIR) {
            let list: gst::BufferList = block
                .iter()
                .map(|_| gst::Buffer::from_mut_slice(vec![0u8; packet_len]))
                .collect();
            src.push_buffer_list(list).unwrap();
        }
        src.end_of_stream().unwrap();
        time_pipeline(&pipeline);
        start.elapsed()
    });
    println!("\n# Where the encode time goes (raptorq)\n");
    println!("| part | Mbit/s of source | per output packet |");
    println!("|---|---|---|");
    let per_packet = |s: f64| format!("{:.2} µs", s * 1e6 / packets as f64);
    println!(
        "| `fanout_fec::Sender` alone (blocks, codec, packets, checksums) | {:.0} | {} |",
        mbps(data.len(), sender_s),
        per_packet(sender_s)
    );
    println!(
        "| {packets} packet `GstBuffer`s through `appsrc ! fakesink`, no encoding | {:.0} | {} |",
        mbps(data.len(), buffers_s),
        per_packet(buffers_s)
    );
}

fn raw_raptorq(data: &[u8]) -> (f64, f64) {
    let block = K * T;
    let config = ObjectTransmissionInformation::new((block) as u64, T as u16, 1, 1, 8);
    let mut encoded = Vec::new();
    let enc_s = best_of(|| {
        encoded.clear();
        let start = Cpu::now();
        for (n, chunk) in data.chunks(block).enumerate() {
            let mut padded = chunk.to_vec();
            padded.resize(block, 0);
            let enc = SourceBlockEncoder::new(n as u8, &config, &padded);
            let mut packets = enc.source_packets();
            packets.extend(enc.repair_packets(0, REPAIR as u32));
            // Serialized as a sender would put them on the wire.
            let wire: Vec<Vec<u8>> = packets.iter().map(EncodingPacket::serialize).collect();
            encoded.push(wire);
        }
        start.elapsed()
    });
    let mut rng = Rng(11);
    let received: Vec<Vec<Vec<u8>>> = encoded
        .into_iter()
        .map(|b| b.into_iter().filter(|_| !rng.lost(LOSS)).collect())
        .collect();
    let mut out = 0;
    let dec_s = best_of(|| {
        out = 0;
        let start = Cpu::now();
        for (n, packets) in received.iter().enumerate() {
            let mut dec = SourceBlockDecoder::new(n as u8, &config, block as u64);
            if let Some(b) = dec.decode(packets.iter().map(|p| EncodingPacket::deserialize(p))) {
                out += b.len();
            }
        }
        start.elapsed()
    });
    assert!(out > data.len() * 9 / 10);
    (mbps(data.len(), enc_s), mbps(data.len(), dec_s))
}

fn raw_reed_solomon(data: &[u8]) -> (f64, f64) {
    let block = K * T;
    let mut encoded = Vec::new();
    let enc_s = best_of(|| {
        encoded.clear();
        let start = Cpu::now();
        for chunk in data.chunks(block) {
            let mut padded = chunk.to_vec();
            padded.resize(block, 0);
            let mut enc = reed_solomon_simd::ReedSolomonEncoder::new(K, REPAIR, T).unwrap();
            for shard in padded.chunks_exact(T) {
                enc.add_original_shard(shard).unwrap();
            }
            let result = enc.encode().unwrap();
            let mut shards: Vec<(usize, Vec<u8>)> = padded
                .chunks_exact(T)
                .map(<[u8]>::to_vec)
                .enumerate()
                .collect();
            shards.extend(
                result
                    .recovery_iter()
                    .enumerate()
                    .map(|(i, s)| (K + i, s.to_vec())),
            );
            encoded.push(shards);
        }
        start.elapsed()
    });
    let mut rng = Rng(11);
    let received: Vec<Vec<(usize, Vec<u8>)>> = encoded
        .into_iter()
        .map(|b| b.into_iter().filter(|_| !rng.lost(LOSS)).collect())
        .collect();
    let dec_s = best_of(|| {
        let start = Cpu::now();
        for shards in &received {
            if shards.len() < K {
                continue;
            }
            let mut dec = reed_solomon_simd::ReedSolomonDecoder::new(K, REPAIR, T).unwrap();
            let mut restored = vec![None; K];
            for (i, s) in shards {
                if *i < K {
                    dec.add_original_shard(*i, s).unwrap();
                    restored[*i] = Some(s.clone());
                } else {
                    dec.add_recovery_shard(i - K, s).unwrap();
                }
            }
            let result = dec.decode().unwrap();
            for (i, s) in result.restored_original_iter() {
                restored[i] = Some(s.to_vec());
            }
            let block: Vec<u8> = restored.into_iter().flatten().flatten().collect();
            assert_eq!(block.len(), K * T);
        }
        start.elapsed()
    });
    (mbps(data.len(), enc_s), mbps(data.len(), dec_s))
}

/// Runs a pipeline to EOS and returns the CPU seconds it took, preroll included (the sources
/// hold everything already, so all of the time is the elements' work).
fn time_pipeline(pipeline: &gst::Pipeline) -> f64 {
    let bus = pipeline.bus().unwrap();
    let start = Cpu::now();
    pipeline.set_state(gst::State::Playing).unwrap();
    for msg in bus.iter_timed(gst::ClockTime::NONE) {
        match msg.view() {
            gst::MessageView::Eos(_) => break,
            gst::MessageView::Error(e) => panic!("{} {:?}", e.error(), e.debug()),
            _ => (),
        }
    }
    let s = start.elapsed();
    pipeline.set_state(gst::State::Null).unwrap();
    s
}

/// The shortest of three runs: the first pays for warming caches and memory up.
fn best_of(mut f: impl FnMut() -> f64) -> f64 {
    (0..3).map(|_| f()).fold(f64::INFINITY, f64::min)
}

fn launch(description: &str) -> gst::Pipeline {
    gst::parse::launch(description).unwrap().downcast().unwrap()
}

/// The pipeline's appsrc `in`, queueing without limit.
fn appsrc(pipeline: &gst::Pipeline) -> gst_app::AppSrc {
    let src = pipeline
        .by_name("in")
        .unwrap()
        .downcast::<gst_app::AppSrc>()
        .unwrap();
    src.set_max_bytes(0);
    src
}

/// Queues all of `list` and EOS in the pipeline's appsrc `in`.
fn feed(pipeline: &gst::Pipeline, list: gst::BufferList) {
    let src = appsrc(pipeline);
    src.push_buffer_list(list).unwrap();
    src.end_of_stream().unwrap();
}

/// The elements' figures in Mbit/s: the pipelines', and the elements' alone (without the
/// time the same `appsrc ! fakesink` takes with no element between them).
struct Figures {
    enc: f64,
    dec: f64,
    enc_alone: f64,
    dec_alone: f64,
}

impl Figures {
    fn print(&self, name: &str, raw_enc: f64, raw_dec: f64) {
        println!("| {name} | {:.0} | {:.0} |", self.enc, self.dec);
        println!(
            "| ratio (elements / raw) | {:.2} | {:.2} |",
            self.enc / raw_enc,
            self.dec / raw_dec
        );
        println!(
            "| ratio, the elements alone (net of appsrc and fakesink) | {:.2} | {:.2} |",
            self.enc_alone / raw_enc,
            self.dec_alone / raw_dec
        );
    }
}

/// The elements' encode and decode, a buffer per packet or (`block`) per block.
fn elements(file: &std::path::Path, bytes: usize, codec: &str, block: bool) -> Figures {
    let packing = if block { "block" } else { "datagram" };
    let pay = format!(
        "fec-payloader codec={codec} symbol-size={T} max-block-symbols={K} repair-percent={REPAIR} max-block-time=0 \
         ! capsfilter caps=application/x-fanout-fec,packing={packing}"
    );
    // Encode: 1316-byte buffers (7 TS packets) from memory, so that only the element is timed.
    let data = std::fs::read(file).unwrap();
    let input = || {
        let mut list = gst::BufferList::new_sized(data.len() / 1316 + 1);
        for chunk in data.chunks(1316) {
            list.get_mut()
                .unwrap()
                .add(gst::Buffer::from_slice(chunk.to_vec()));
        }
        list
    };
    // With caps, as a TS has: input without caps makes output without caps (datagrams).
    let ts = "appsrc name=in format=bytes caps=video/mpegts,systemstream=true,packetsize=188";
    let enc_s = best_of(|| {
        let encode = launch(&format!("{ts} ! {pay} ! fakesink sync=false"));
        feed(&encode, input());
        time_pipeline(&encode)
    });
    // The same source and sink without the element, to tell the element's own cost.
    let enc_base_s = best_of(|| {
        let baseline = launch(&format!("{ts} ! fakesink sync=false"));
        feed(&baseline, input());
        time_pipeline(&baseline)
    });

    // The packets, once, to feed the depayloader with the same 10 % loss pattern.
    let collect = launch(&format!("{ts} ! {pay} ! appsink name=out sync=false"));
    feed(&collect, input());
    let sink = collect
        .by_name("out")
        .unwrap()
        .downcast::<gst_app::AppSink>()
        .unwrap();
    let packets = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let p = packets.clone();
    sink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |s| {
                let sample = s.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                p.lock().unwrap().push(sample.buffer_owned().unwrap());
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );
    time_pipeline(&collect);
    let buffers = std::mem::take(&mut *packets.lock().unwrap());
    let mut rng = Rng(11);
    let mut list = gst::BufferList::new();
    for b in buffers {
        let map = b.map_readable().unwrap();
        // The same loss pattern either way: packet by packet.
        let kept: Vec<Vec<u8>> = match gstfanoutfec::packing::packets(&b) {
            Some(places) => places
                .unwrap()
                .into_iter()
                .map(|r| map[r].to_vec())
                .collect(),
            None => vec![map.to_vec()],
        }
        .into_iter()
        .filter(|_| !rng.lost(LOSS))
        .collect();
        if block {
            list.get_mut()
                .unwrap()
                .add(gstfanoutfec::packing::block_buffer(&kept));
        } else {
            for p in kept {
                list.get_mut().unwrap().add(gst::Buffer::from_mut_slice(p));
            }
        }
    }
    let dec_base_s = best_of(|| {
        let baseline = launch("appsrc name=in format=bytes ! fakesink sync=false");
        feed(&baseline, list.copy());
        time_pipeline(&baseline)
    });
    let mut stats = None;
    let dec_s = best_of(|| {
        let decode = launch(&format!(
            "appsrc name=in format=bytes caps=application/x-fanout-fec,packing={packing} \
             ! fec-depayloader latency=60000000000 name=depay ! fakesink sync=false"
        ));
        feed(&decode, list.copy());
        let s = time_pipeline(&decode);
        stats = Some(
            decode
                .by_name("depay")
                .unwrap()
                .property::<gst::Structure>("stats"),
        );
        s
    });
    let stats = stats.unwrap();
    let lost = stats.get::<u64>("blocks-lost").unwrap();
    let decoded = stats.get::<u64>("blocks-decoded").unwrap();
    assert!(lost * 10 < decoded, "{stats}");
    println!(
        "  ({codec}: source and sink alone take {:.0} % of the encode time, {:.0} % of the decode time)",
        100.0 * enc_base_s / enc_s,
        100.0 * dec_base_s / dec_s
    );
    Figures {
        enc: mbps(bytes, enc_s),
        dec: mbps(bytes, dec_s),
        // The difference of two timings: never below a microsecond, whatever the noise.
        enc_alone: mbps(bytes, (enc_s - enc_base_s).max(1e-6)),
        dec_alone: mbps(bytes, (dec_s - dec_base_s).max(1e-6)),
    }
}
