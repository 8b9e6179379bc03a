//! Writes seed inputs for the FEC fuzz targets (fuzz/README.md): real packet streams of each
//! codec and mode, in the framing each target reads.

use std::path::PathBuf;

use fanout_fec::{BufferMeta, Codec, Mode, Sender, SenderConfig};

fn main() {
    let corpus = PathBuf::from(
        std::env::args()
            .nth(1)
            .expect("usage: fuzz_seeds <fuzz/corpus>"),
    );
    let mut n = 0;
    for codec in [Codec::RaptorQ, Codec::ReedSolomon, Codec::None] {
        for mode in [Mode::Stream, Mode::Carousel] {
            if codec == Codec::None && mode == Mode::Carousel {
                continue;
            }
            let mut sender = Sender::new(SenderConfig {
                codec,
                mode,
                symbol_size: 64,
                max_k: 8,
                description_interval: 8,
                ..SenderConfig::default()
            })
            .unwrap();
            sender.set_stream("video/mpegts".into(), true).unwrap();
            let mut packets = Vec::new();
            for i in 0..6u64 {
                let meta = BufferMeta {
                    pts: Some(i * 40_000_000),
                    ..BufferMeta::default()
                };
                sender.push_buffer(&meta, &vec![i as u8; 100 + 60 * i as usize], &mut packets);
            }
            sender.flush(&mut packets);
            let (mut framed_packet, mut framed_receiver) = (Vec::new(), Vec::new());
            for p in &packets {
                framed_packet.extend_from_slice(&(p.len() as u16).to_le_bytes());
                framed_packet.extend_from_slice(p);
                framed_receiver.push(2);
                framed_receiver.extend_from_slice(&(p.len() as u16).to_le_bytes());
                framed_receiver.extend_from_slice(p);
            }
            for (target, bytes) in [
                ("fec_packet", framed_packet),
                ("fec_receiver", framed_receiver),
            ] {
                let dir = corpus.join(target);
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::write(dir.join(format!("seed-{n}")), bytes).unwrap();
            }
            n += 1;
        }
    }
    println!("{n} seeds per target under {}", corpus.display());
}
