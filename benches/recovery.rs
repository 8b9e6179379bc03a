//! Recovery at equal overhead: fec-payloader / fec-depayloader against the stock
//! `rtpulpfecenc` / `rtpulpfecdec` (RFC 5109), on the same 10 % random loss pattern.
//!
//! ULPFEC is given its best case: each lost packet is announced (`GstRTPPacketLost`, as
//! `rtpjitterbuffer do-lost=true` would) only after the next 64 packets are in, so every FEC
//! packet that could help is there. Residual loss is the share of source data not delivered.

use gst::prelude::*;
use gst_check::Harness;

use crate::{Rng, K, LOSS, REPAIR, T};

/// Packets a lost one is announced after (a jitter buffer's latency, here ~170 ms).
const ANNOUNCE_AFTER: usize = 64;

fn collect(description: &str) -> Vec<gst::Buffer> {
    collect_with(description, |_| ())
}

fn collect_with(description: &str, setup: impl FnOnce(&gst::Pipeline)) -> Vec<gst::Buffer> {
    let pipeline: gst::Pipeline = gst::parse::launch(description).unwrap().downcast().unwrap();
    setup(&pipeline);
    let sink = pipeline
        .by_name("out")
        .unwrap()
        .downcast::<gst_app::AppSink>()
        .unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let mut out = Vec::new();
    while let Ok(sample) = sink.pull_sample() {
        out.push(sample.buffer_owned().unwrap());
    }
    pipeline.set_state(gst::State::Null).unwrap();
    out
}

fn size(buffers: &[&gst::Buffer]) -> usize {
    buffers.iter().map(|b| b.size()).sum()
}

pub fn run(runs: u64) {
    let dir = std::env::temp_dir().join("fanout-fec-recovery");
    std::fs::create_dir_all(&dir).unwrap();
    let clip = dir.join("clip.ts");
    collect(&format!(
        "videotestsrc num-buffers=250 pattern=snow ! video/x-raw,width=320,height=240,framerate=25/1 \
         ! x264enc bitrate=4000 key-int-max=50 speed-preset=ultrafast ! mpegtsmux ! tee name=t \
         t. ! queue ! filesink location={} t. ! queue ! appsink name=out sync=false",
        clip.display()
    ));
    let source_bytes = std::fs::metadata(&clip).unwrap().len() as usize;
    println!(
        "# FEC recovery: {:.1} MB H.264/TS clip, {} % random loss, {runs} loss patterns\n",
        source_bytes as f64 / 1e6,
        LOSS * 100.0
    );

    // ULPFEC: 7 TS packets per RTP packet, 20 % FEC. rtpulpfecenc sends FEC at the RTP
    // marker bit, which rtpmp2tpay never sets: marking every 5th packet gives one FEC packet
    // protecting each run of 5 (the classic row FEC at this overhead).
    let rtp = collect_with(
        &format!(
            "filesrc location={} ! tsparse set-timestamps=true alignment=7 ! rtpmp2tpay ssrc=1 name=pay \
             ! rtpulpfecenc pt=122 percentage={REPAIR} multipacket=true ! appsink name=out sync=false",
            clip.display()
        ),
        |p| {
            let n = std::sync::atomic::AtomicU64::new(0);
            let pad = p.by_name("pay").unwrap().static_pad("src").unwrap();
            pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
                let i = n.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                if i.is_multiple_of(100 / REPAIR as u64) {
                    if let Some(gst::PadProbeData::Buffer(b)) = info.data.as_mut() {
                        let mut rtp = gst_rtp::RTPBuffer::from_buffer_writable(b.make_mut()).unwrap();
                        rtp.set_marker(true);
                    }
                }
                gst::PadProbeReturn::Ok
            });
        },
    );
    let is_fec = |b: &gst::Buffer| {
        let rtp = gst_rtp::RTPBuffer::from_buffer_readable(b).unwrap();
        rtp.payload_type() == 122
    };
    let media: Vec<&gst::Buffer> = rtp.iter().filter(|b| !is_fec(b)).collect();
    let fec: Vec<&gst::Buffer> = rtp.iter().filter(|b| is_fec(b)).collect();
    let (mut ulp_delivered, mut ulp_recovered) = (0u64, 0u64);
    for run in 0..runs {
        let mut rng = Rng(1000 + run);
        let mut h =
            Harness::new_parse("rtpstorage size-time=10000000000 ! rtpulpfecdec pt=122 name=dec");
        h.set_src_caps_str(
            "application/x-rtp, media=video, clock-rate=90000, encoding-name=MP2T, payload=33, ssrc=(uint)1",
        );
        h.play();
        let mut pending: Vec<(usize, gst::Event)> = Vec::new();
        for (i, b) in rtp.iter().enumerate() {
            if rng.lost(LOSS) {
                if !is_fec(b) {
                    let seq = gst_rtp::RTPBuffer::from_buffer_readable(b).unwrap().seq();
                    let s = gst::Structure::builder("GstRTPPacketLost")
                        .field("seqnum", u32::from(seq))
                        .field(
                            "timestamp",
                            b.pts().unwrap_or(gst::ClockTime::ZERO).nseconds(),
                        )
                        .field("duration", 0u64)
                        .build();
                    pending.push((i + ANNOUNCE_AFTER, gst::event::CustomDownstream::new(s)));
                }
            } else {
                h.push(b.clone()).unwrap();
            }
            while pending.first().is_some_and(|(at, _)| *at <= i) {
                h.push_event(pending.remove(0).1);
            }
        }
        for (_, e) in pending {
            h.push_event(e);
        }
        // FEC packets go through the decoder too: count the media ones.
        while let Some(b) = h.try_pull() {
            ulp_delivered += u64::from(!is_fec(&b));
        }
        let bin = h.element().unwrap().downcast::<gst::Bin>().unwrap();
        ulp_recovered += u64::from(bin.by_name("dec").unwrap().property::<u32>("recovered"));
    }
    let ulp_residual = 1.0 - ulp_delivered as f64 / (media.len() as u64 * runs) as f64;
    println!("| contender | repair bytes / source packet bytes | wire bytes / source bytes | residual loss | notes |");
    println!("|---|---|---|---|---|");
    println!(
        "| `rtpulpfecenc percentage={REPAIR}` / `rtpulpfecdec` | {:.1} % | {:.3} | {:.3} % | {} packets recovered per run |",
        100.0 * size(&fec) as f64 / size(&media) as f64,
        (size(&fec) + size(&media)) as f64 / source_bytes as f64,
        100.0 * ulp_residual,
        ulp_recovered / runs
    );

    // Ours: the same clip, K = 100, T = 1280, 20 % repair.
    let packets = collect(&format!(
        "filesrc location={} ! fec-payloader symbol-size={T} max-block-symbols={K} repair-percent={REPAIR} \
         ! appsink name=out sync=false",
        clip.display()
    ));
    let kind = |b: &gst::Buffer| {
        let m = b.map_readable().unwrap();
        (m[3], m[9] & 1)
    };
    let repair: Vec<&gst::Buffer> = packets.iter().filter(|b| kind(b) == (1, 1)).collect();
    let source: Vec<&gst::Buffer> = packets.iter().filter(|b| kind(b) == (1, 0)).collect();
    let (mut delivered, mut blocks_lost, mut blocks) = (0usize, 0u64, 0u64);
    for run in 0..runs {
        let mut rng = Rng(1000 + run);
        let depay = gst::ElementFactory::make("fec-depayloader")
            .property("latency", 60_000_000_000u64)
            .build()
            .unwrap();
        let mut h = Harness::with_element(&depay, Some("sink"), Some("src"));
        h.set_src_caps_str("application/x-fanout-fec");
        h.play();
        for p in &packets {
            if !rng.lost(LOSS) {
                h.push(p.clone()).unwrap();
            }
        }
        h.push_event(gst::event::Eos::new());
        while let Some(b) = h.try_pull() {
            delivered += b.size();
        }
        let stats = depay.property::<gst::Structure>("stats");
        blocks_lost += stats.get::<u64>("blocks-lost").unwrap();
        blocks +=
            stats.get::<u64>("blocks-lost").unwrap() + stats.get::<u64>("blocks-decoded").unwrap();
    }
    let residual = 1.0 - delivered as f64 / (source_bytes as u64 * runs) as f64;
    println!(
        "| `fec-payloader repair-percent={REPAIR}` / `fec-depayloader` | {:.1} % | {:.3} | {:.3} % | {blocks_lost} of {blocks} blocks lost |",
        100.0 * size(&repair) as f64 / size(&source) as f64,
        size(&packets.iter().collect::<Vec<_>>()) as f64 / source_bytes as f64,
        100.0 * residual,
    );
    println!(
        "\nresidual loss ratio (ours / ULPFEC): {:.4}",
        if ulp_residual > 0.0 {
            residual / ulp_residual
        } else {
            f64::NAN
        }
    );
    blocks_at_scale();
}

/// Blocks recovered out of many, at K = 100, T = 1280, 10 % loss, for a few repair shares:
/// the sender and receiver the elements drive, without the pipeline around them.
fn blocks_at_scale() {
    use fanout_fec::{BufferMeta, Codec, Mono, Receiver, ReceiverConfig, Sender, SenderConfig};
    const BLOCKS: usize = 10_000;
    println!(
        "\n## Blocks recovered at scale: {BLOCKS} full blocks, K = {K}, T = {T}, {} % loss\n",
        LOSS * 100.0
    );
    println!("| codec | repair % | blocks recovered | failures |");
    println!("|---|---|---|---|");
    for (codec, repair) in [
        (Codec::RaptorQ, 20),
        (Codec::RaptorQ, 25),
        (Codec::RaptorQ, 30),
        (Codec::ReedSolomon, 20),
        (Codec::ReedSolomon, 30),
    ] {
        let mut sender = Sender::new(SenderConfig {
            codec,
            symbol_size: T as u16,
            max_k: K as u16,
            repair_percent: repair,
            ..SenderConfig::default()
        })
        .unwrap();
        sender.set_stream(String::new(), false).unwrap();
        // Each block has a second to itself: a block is given up when the next one starts.
        let mut rx = Receiver::new(ReceiverConfig {
            latency: std::time::Duration::from_nanos(1),
            ..ReceiverConfig::default()
        });
        let mut rng = Rng(99);
        let mut out = Vec::new();
        // One buffer filling each block exactly (less its piece header).
        let data = vec![0x5a; K * T - 8];
        for i in 0..BLOCKS as u64 {
            let mut packets = Vec::new();
            sender.push_buffer(&BufferMeta::default(), &data, &mut packets);
            sender.flush(&mut packets);
            for p in packets {
                if !rng.lost(LOSS) {
                    rx.push(&p, Mono::from_nanos(i * 1_000_000_000), &mut out);
                }
            }
            out.clear();
        }
        rx.finish(&mut out);
        let lost = rx.stats.blocks_lost;
        println!(
            "| {codec:?} | {repair} | {:.4} % | {lost} |",
            100.0 * (BLOCKS as u64 - lost) as f64 / BLOCKS as f64
        );
    }
}
