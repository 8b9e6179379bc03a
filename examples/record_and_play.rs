//! The quick-start demo, and an example of embedding the recording elements
//! in an application:
//!
//! 1. records a live H.264/MPEG-TS test signal with `bitrate-recorder` while
//!    the stream flows on, printing the recorder's statistics every second;
//! 2. meanwhile plays the recording back with `bitrate-player follow=true`
//!    (chase play) and decodes it;
//! 3. sends the onward stream over a link losing 10 % of its packets, as
//!    RaptorQ FEC packets (`fec-payloader`), and rebuilds it on the far side
//!    (`fec-depayloader`);
//! 4. plays the finished recording again at its recorded rate and compares
//!    the rates.
//!
//! Usage: record-and-play [DIRECTORY] [SECONDS]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use gst::prelude::*;

fn main() {
    if let Err(err) = run() {
        eprintln!("record-and-play: {err}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(
        args.next()
            .unwrap_or_else(|| "fanout-demo-recording".into()),
    );
    let seconds: u32 = args.next().map_or(Ok(8), |s| s.parse())?;
    let dir = fanout_examples::fresh_dir(&dir)?;
    gst::init()?;
    // Linked in; an application could as well load it from GST_PLUGIN_PATH.
    gstfanoutrecording::plugin_register_static()?;
    gstfanoutfec::plugin_register_static()?;

    println!(
        "Recording {seconds} s of a live test signal into {}",
        dir.display()
    );
    let recording = gst::parse::launch(&format!(
        "videotestsrc is-live=true num-buffers={frames} pattern=ball \
         ! video/x-raw,width=640,height=360,framerate=25/1 \
         ! x264enc tune=zerolatency bitrate=2000 pass=cbr vbv-buf-capacity=500 option-string=nal-hrd=cbr:filler key-int-max=50 speed-preset=ultrafast \
         ! mpegtsmux alignment=7 \
         ! bitrate-recorder name=recorder location={dir} max-segment-time=2000000000 \
         ! fec-payloader name=fecpay repair-percent=30 ! identity drop-probability=0.1 \
         ! fec-depayloader name=fecdepay latency=1000000000 ! fakesink name=onward",
        // A second for a block's repair (not the default 200 ms): on a loaded machine the
        // live pipeline can stall that long, and a block it gives up is lost downstream.
        frames = seconds * 25,
        dir = dir.display()
    ))?
    .downcast::<gst::Pipeline>()
    .unwrap();
    let onward_bytes = count_bytes(&recording, "onward");
    recording.set_state(gst::State::Playing)?;

    // Chase play: start reading while the recording is being written.
    let chase = player_pipeline(&dir, "follow=true")?;
    let chase_frames = count_buffers(&chase, "out");
    chase.set_state(gst::State::Playing)?;

    let start = Instant::now();
    let mut recording_done = false;
    let mut chase_done = false;
    while !(recording_done && chase_done) {
        if !recording_done {
            recording_done = poll_bus(&recording, |s| print_stats(s, start))?;
        }
        if !chase_done {
            chase_done = poll_bus(&chase, |_| {})?;
        }
        if start.elapsed() > Duration::from_secs(u64::from(seconds) * 4 + 30) {
            return Err("the demo did not finish in time".into());
        }
    }
    let stats = recording
        .by_name("recorder")
        .unwrap()
        .property::<gst::Structure>("stats");
    let pay = recording
        .by_name("fecpay")
        .unwrap()
        .property::<gst::Structure>("stats");
    let depay = recording
        .by_name("fecdepay")
        .unwrap()
        .property::<gst::Structure>("stats");
    recording.set_state(gst::State::Null)?;
    chase.set_state(gst::State::Null)?;
    let written: u64 = stats.get("bytes-written")?;
    println!(
        "Recorded {written} bytes in {} segments; {} bytes arrived downstream; \
         {} bytes could not be recorded.",
        stats.get::<u64>("segments")?,
        onward_bytes.lock().unwrap(),
        stats.get::<u64>("bytes-not-recorded")?,
    );
    println!(
        "The onward stream crossed a link losing 10 % of its packets: {} FEC packets sent, \
         {} received; {} blocks rebuilt ({} needed repair symbols), {} lost.",
        pay.get::<u64>("packets-out")?,
        depay.get::<u64>("packets")?,
        depay.get::<u64>("blocks-decoded")?,
        depay.get::<u64>("blocks-recovered")?,
        depay.get::<u64>("blocks-lost")?,
    );
    println!(
        "Chase play decoded {} of {} frames while the recording was written.",
        chase_frames.lock().unwrap(),
        seconds * 25
    );

    println!("Playing the finished recording back at its recorded rate...");
    let replay = player_pipeline(&dir, "")?;
    let replay_bytes = count_bytes(&replay, "raw");
    // When the first and the last byte left the player.
    let span_out = std::sync::Arc::new(std::sync::Mutex::new(None::<(Instant, Instant)>));
    let s = span_out.clone();
    let pad = replay.by_name("raw").unwrap().static_pad("sink").unwrap();
    pad.add_probe(gst::PadProbeType::BUFFER, move |_, _| {
        let now = Instant::now();
        let mut s = s.lock().unwrap();
        *s = Some((s.map_or(now, |(first, _)| first), now));
        gst::PadProbeReturn::Ok
    });
    replay.set_state(gst::State::Playing)?;
    while !poll_bus(&replay, |_| {})? {}
    replay.set_state(gst::State::Null)?;
    let (first, last) = span_out.lock().unwrap().ok_or("nothing was played")?;
    let secs = last.duration_since(first).as_secs_f64();
    let bytes = *replay_bytes.lock().unwrap();
    let span = stats.get::<u64>("store-time")? as f64 / 1e9;
    println!(
        "Played {bytes} bytes over {secs:.2} s; they were recorded over {span:.2} s \
         ({:.2} Mbit/s played, {:.2} Mbit/s recorded).",
        bytes as f64 * 8.0 / secs / 1e6,
        written as f64 * 8.0 / span / 1e6,
    );
    println!(
        "The recording stays in {}: its .ts segments, concatenated in name order, are \
         exactly the bytes received (try: cat {}/*.ts | ffprobe -).",
        dir.display(),
        dir.display()
    );
    Ok(())
}

fn player_pipeline(dir: &std::path::Path, props: &str) -> Result<gst::Pipeline, gst::glib::Error> {
    let p = gst::parse::launch(&format!(
        "bitrate-player location={} {props} ! tee name=t \
         t. ! queue ! fakesink name=raw sync=false \
         t. ! queue ! tsdemux ! h264parse ! avdec_h264 ! fakesink name=out sync=true async=false",
        dir.display()
    ))?;
    Ok(p.downcast::<gst::Pipeline>().unwrap())
}

type Counter = std::sync::Arc<std::sync::Mutex<u64>>;

fn count_buffers(p: &gst::Pipeline, sink: &str) -> Counter {
    probe(p, sink, |_| 1)
}

fn count_bytes(p: &gst::Pipeline, sink: &str) -> Counter {
    probe(p, sink, |b| b.size() as u64)
}

fn probe(p: &gst::Pipeline, sink: &str, f: fn(&gst::BufferRef) -> u64) -> Counter {
    let counter = Counter::default();
    let c = counter.clone();
    let pad = p.by_name(sink).unwrap().static_pad("sink").unwrap();
    pad.add_probe(
        gst::PadProbeType::BUFFER | gst::PadProbeType::BUFFER_LIST,
        move |_, info| {
            let mut c = c.lock().unwrap();
            match info.data.as_ref() {
                Some(gst::PadProbeData::Buffer(b)) => *c += f(b),
                Some(gst::PadProbeData::BufferList(l)) => *c += l.iter().map(f).sum::<u64>(),
                _ => (),
            }
            gst::PadProbeReturn::Ok
        },
    );
    counter
}

/// Handles the messages waiting on a pipeline's bus; true at EOS.
fn poll_bus(
    p: &gst::Pipeline,
    mut on_element: impl FnMut(&gst::StructureRef),
) -> Result<bool, Box<dyn std::error::Error>> {
    let bus = p.bus().unwrap();
    while let Some(msg) = bus.timed_pop(gst::ClockTime::from_mseconds(50)) {
        match msg.view() {
            gst::MessageView::Eos(_) => return Ok(true),
            gst::MessageView::Error(e) => {
                return Err(format!("{}: {}", e.error(), e.debug().unwrap_or_default()).into())
            }
            gst::MessageView::Warning(w) => eprintln!("warning: {}", w.error()),
            gst::MessageView::Element(e) => {
                if let Some(s) = e.structure() {
                    on_element(s);
                }
            }
            _ => {}
        }
    }
    Ok(false)
}

fn print_stats(s: &gst::StructureRef, start: Instant) {
    if s.name() != "fanout-bitrate-recorder-stats" {
        return;
    }
    let get = |f: &str| s.get::<u64>(f).unwrap_or(0);
    println!(
        "  t={:4.1}s  in {:5.2} Mbit/s  written {:5.2} Mbit/s  backlog {:6} B  segments {}  synced {} times",
        start.elapsed().as_secs_f64(),
        get("input-bitrate") as f64 / 1e6,
        get("write-bitrate") as f64 / 1e6,
        get("backlog-bytes"),
        get("segments"),
        get("syncs"),
    );
}
