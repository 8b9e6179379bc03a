// SPDX-License-Identifier: MPL-2.0

//! Block packing: a block's packets in one buffer where downstream asks for it, a buffer
//! per datagram for anything else; the packet list checked as untrusted.

mod common;

use common::*;
use gst::prelude::*;
use gstfanoutfec::packing;

/// Keeps the packing `fec-payloader name=pay` chooses, from the caps it sends.
fn watch_packing(p: &gst::Pipeline) -> std::sync::Arc<std::sync::Mutex<Option<String>>> {
    let chosen = std::sync::Arc::new(std::sync::Mutex::new(None));
    let c = chosen.clone();
    let pad = p.by_name("pay").unwrap().static_pad("src").unwrap();
    pad.add_probe(gst::PadProbeType::EVENT_DOWNSTREAM, move |_, info| {
        if let Some(gst::PadProbeData::Event(e)) = info.data.as_ref() {
            if let gst::EventView::Caps(caps) = e.view() {
                let s = caps.caps().structure(0).unwrap();
                *c.lock().unwrap() = s.get::<String>(packing::PACKING).ok();
            }
        }
        gst::PadProbeReturn::Ok
    });
    chosen
}

#[test]
fn a_stream_through_block_packing_comes_out_byte_for_byte_with_a_buffer_per_block() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out.ts");
    let p = pipeline(&format!(
        "filesrc location={} ! video/mpegts,systemstream=true ! fec-payloader name=pay \
         ! capsfilter caps=application/x-fanout-fec,packing=block ! identity name=mid \
         ! fec-depayloader name=depay ! filesink location={}",
        ts_file().display(),
        out.display()
    ));
    let chosen = watch_packing(&p);
    let buffers = std::sync::Arc::new(std::sync::Mutex::new((0u64, 0u64)));
    let b = buffers.clone();
    p.by_name("mid")
        .unwrap()
        .static_pad("src")
        .unwrap()
        .add_probe(
            gst::PadProbeType::BUFFER | gst::PadProbeType::BUFFER_LIST,
            move |_, info| {
                let mut b = b.lock().unwrap();
                let mut count = |buf: &gst::BufferRef| {
                    b.0 += 1;
                    b.1 += packing::packets(buf).map_or(1, |r| r.unwrap().len() as u64);
                };
                match info.data.as_ref() {
                    Some(gst::PadProbeData::Buffer(buf)) => count(buf),
                    Some(gst::PadProbeData::BufferList(l)) => l.iter().for_each(count),
                    _ => (),
                }
                gst::PadProbeReturn::Ok
            },
        );
    run_pipeline(&p);
    assert_same_file(ts_file(), &out);
    assert_eq!(chosen.lock().unwrap().as_deref(), Some(packing::BLOCK));
    let (buffers, packets) = *buffers.lock().unwrap();
    assert_eq!(packets, stat(&p, "pay", "packets-out"));
    assert!(
        buffers * 20 < packets,
        "{buffers} buffers for {packets} packets"
    );
    assert_eq!(stat(&p, "depay", "malformed"), 0);
}

#[test]
fn stock_sinks_and_anything_that_takes_any_caps_get_datagrams() {
    for sink in [
        "fakesink",
        "udpsink host=127.0.0.1 port=9",
        "multiudpsink clients=127.0.0.1:9",
        "identity ! fakesink",
        "fec-depayloader ! fakesink",
    ] {
        let p = pipeline(&format!(
            "filesrc location={} num-buffers=20 ! video/mpegts,systemstream=true ! fec-payloader name=pay ! {sink}",
            ts_file().display()
        ));
        let chosen = watch_packing(&p);
        run_pipeline(&p);
        let chosen = chosen.lock().unwrap().clone();
        assert_eq!(chosen.as_deref(), Some(packing::DATAGRAM), "{sink}");
    }
}

#[test]
fn a_block_buffer_whose_packet_list_does_not_fit_is_one_malformed_packet() {
    init();
    let mut h = gst_check::Harness::new("fec-depayloader");
    h.set_src_caps_str("application/x-fanout-fec,packing=block");
    let mut bad = gst::Buffer::from_slice(vec![0u8; 100]);
    // One packet of 200 bytes in a buffer of 100; then 3 bytes that are not whole pairs.
    let places: Vec<u8> = [0u32, 200].iter().flat_map(|v| v.to_be_bytes()).collect();
    packing::set_packets(bad.get_mut().unwrap(), places);
    assert!(h.push(bad).is_ok());
    let mut odd = gst::Buffer::from_slice(vec![0u8; 100]);
    packing::set_packets(odd.get_mut().unwrap(), vec![0, 0, 1]);
    assert!(h.push(odd).is_ok());
    let s = h.element().unwrap().property::<gst::Structure>("stats");
    assert_eq!(s.get::<u64>("malformed").unwrap(), 2, "{s}");
    assert_eq!(s.get::<u64>("packets").unwrap(), 2, "{s}");
}

/// The buffers `appsink name=out` of `p` got, once `p` ran to EOS.
fn collect(p: &gst::Pipeline) -> std::sync::Arc<std::sync::Mutex<Vec<gst::Buffer>>> {
    let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let g = got.clone();
    let sink = element::<gst_app::AppSink>(p, "out");
    sink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |s| {
                let sample = s.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                g.lock().unwrap().push(sample.buffer_owned().unwrap());
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );
    got
}

#[test]
fn a_list_of_input_goes_out_a_buffer_per_block_as_each_block_is_made() {
    init();
    // One push of 600 TS-sized buffers (about six blocks of 100 symbols of 1280 bytes), then
    // one buffer of three blocks and more.
    let input: Vec<u8> = (0..600 * 1316u32 + 400_000)
        .map(|i| (i * 7 + i / 1316) as u8)
        .collect();
    let p = pipeline(
        "appsrc name=in format=bytes caps=video/mpegts,systemstream=true,packetsize=188 \
         ! fec-payloader name=pay symbol-size=1280 max-block-symbols=100 max-block-time=0 \
         ! capsfilter caps=application/x-fanout-fec,packing=block ! appsink name=out sync=false",
    );
    let got = collect(&p);
    let src = element::<gst_app::AppSrc>(&p, "in");
    let (small, large) = input.split_at(600 * 1316);
    let list: gst::BufferList = small
        .chunks(1316)
        .chain([large])
        .map(|c| gst::Buffer::from_slice(c.to_vec()))
        .collect();
    src.push_buffer_list(list).unwrap();
    src.end_of_stream().unwrap();
    run_pipeline(&p);
    let blocks = stat(&p, "pay", "blocks");
    assert!(blocks >= 9, "{blocks} blocks");
    let got = got.lock().unwrap().clone();
    assert_eq!(
        got.len() as u64,
        blocks,
        "a buffer per block, not one for the whole push"
    );
    for (n, b) in got.iter().enumerate() {
        let map = b.map_readable().unwrap();
        let numbers: std::collections::BTreeSet<u64> = packing::packets(b)
            .expect("block packed")
            .unwrap()
            .into_iter()
            .filter_map(|r| match fanout_fec::packet::parse(&map[r]) {
                Ok(fanout_fec::packet::Packet::Symbol { header, .. }) => Some(header.block),
                _ => None,
            })
            .collect();
        assert_eq!(numbers.into_iter().collect::<Vec<_>>(), [n as u64]);
    }

    // And the receiver rebuilds the input from those buffers, byte for byte.
    let d = pipeline(
        "appsrc name=in format=bytes caps=application/x-fanout-fec,packing=block \
         ! fec-depayloader ! appsink name=out sync=false",
    );
    let out = collect(&d);
    let src = element::<gst_app::AppSrc>(&d, "in");
    for b in got {
        src.push_buffer(b).unwrap();
    }
    src.end_of_stream().unwrap();
    run_pipeline(&d);
    let bytes: Vec<u8> = out
        .lock()
        .unwrap()
        .iter()
        .flat_map(|b| b.map_readable().unwrap().to_vec())
        .collect();
    assert!(
        bytes == input,
        "{} bytes out of {}",
        bytes.len(),
        input.len()
    );
}
