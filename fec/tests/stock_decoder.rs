//! A receiver that knows only RFC 6330 and docs/fec-format.md: each block is rebuilt by a
//! stock `raptorq::Decoder` made from the packet's own OTI (bytes 24–35) and fed the FEC
//! Payload ID (bytes 20–23) and symbol, with no code of ours on the receiving side.

use std::collections::BTreeMap;

use fanout_fec::{BufferMeta, Codec, Sender, SenderConfig};
use raptorq::{Decoder, EncodingPacket, ObjectTransmissionInformation, PayloadId};

#[test]
fn a_stock_rfc6330_decoder_rebuilds_every_block_from_the_packets_alone() {
    let mut sender = Sender::new(SenderConfig {
        codec: Codec::RaptorQ,
        // Small blocks, so that block numbers pass what an 8-bit SBN could count.
        max_k: 4,
        max_block_time: std::time::Duration::ZERO,
        repair_percent: 50,
        ..SenderConfig::default()
    })
    .unwrap();
    sender.set_stream(String::new(), false).unwrap();
    let mut packets = Vec::new();
    let mut sent = Vec::new();
    for i in 0..1200u32 {
        let data: Vec<u8> = (0..1316)
            .map(|b| (b as u32 ^ i.wrapping_mul(31)) as u8)
            .collect();
        sender.push_buffer(&BufferMeta::default(), &data, &mut packets);
        sent.push(data);
    }
    sender.flush(&mut packets);
    assert!(
        sender.next_block() > 256,
        "more blocks than an 8-bit SBN counts"
    );

    let mut decoders: BTreeMap<u64, Decoder> = BTreeMap::new();
    let mut blocks: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
    for (n, p) in packets.iter().enumerate() {
        // Type 1 (symbol) per the common header; one in twenty lost, source and repair alike.
        if p[3] != 1 || n % 20 == 3 {
            continue;
        }
        let block = u64::from_be_bytes(p[12..20].try_into().unwrap());
        let payload_id = PayloadId::deserialize(p[20..24].try_into().unwrap());
        let oti = ObjectTransmissionInformation::deserialize(p[24..36].try_into().unwrap());
        let symbol = p[36..p.len() - 4].to_vec();
        if blocks.contains_key(&block) {
            continue;
        }
        let decoder = decoders.entry(block).or_insert_with(|| Decoder::new(oti));
        if let Some(bytes) = decoder.decode(EncodingPacket::new(payload_id, symbol)) {
            blocks.insert(block, bytes);
        }
    }
    assert_eq!(blocks.len() as u64, sender.next_block());
    // The blocks hold the buffers cut into pieces (docs/fec-format.md), in order.
    let mut bytes = Vec::new();
    for block in blocks.values() {
        for piece in fanout_fec::block::parse_pieces(block).unwrap() {
            bytes.extend_from_slice(piece.data);
        }
    }
    assert!(bytes == sent.concat());
}
