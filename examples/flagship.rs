//! The flagship, as an application (and the README's demo): one live H.264/MPEG-TS source
//!
//! 1. recorded at its own bitrate (`bitrate-recorder`),
//! 2. time-shifted to three onward streams, 0, 2 and 4 s behind (`offset-tee`), and
//! 3. served as RaptorQ FEC packets (`fec-payloader`), one `session-sink` channel per offset,
//!
//! to three receivers (`session-src ! fec-depayloader`) started before it, each across a
//! link that loses 10 % of the packets each way. It prints a line a second, says who joins
//! and leaves, checks at the end that every receiver got the recording byte for byte at its
//! offset (and measures the offsets), and plots the run.
//!
//! With `--change-offset` (and 6 s or more of source), the 4 s channel moves to 3 s live,
//! while the source still runs: its receiver then gets the recording with a jump forward, to a
//! keyframe, which the check shows.
//!
//! Usage: flagship [DIRECTORY] [SECONDS] [--change-offset]

mod flagship_check;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fanout_examples::LossyRelay;
use flagship_check::{Arrivals, Check};
use gst::prelude::*;

type Error = Box<dyn std::error::Error>;

/// The channels: name and offset.
const CHANNELS: [(&str, u64); 3] = [
    ("now", 0),
    ("plus2s", 2_000_000_000),
    ("plus4s", 4_000_000_000),
];
const LOSS: f64 = 0.10;

fn main() {
    if let Err(err) = run() {
        eprintln!("flagship: {err}");
        std::process::exit(1);
    }
}

struct Receiver {
    channel: &'static str,
    pipeline: gst::Pipeline,
    relay: LossyRelay,
    file: PathBuf,
    arrivals: Arrivals,
}

fn run() -> Result<(), Error> {
    let mut dir = PathBuf::from("fanout-demo");
    let mut seconds = 10u32;
    let mut change_offset = false;
    let mut positional = 0;
    for arg in std::env::args().skip(1) {
        match (arg.as_str(), positional) {
            ("--change-offset", _) => change_offset = true,
            (_, 0) => {
                dir = arg.into();
                positional += 1;
            }
            (s, _) => seconds = s.parse()?,
        }
    }
    let dir = fanout_examples::fresh_dir(&dir)?;
    gst::init()?;
    // Linked in; an application could as well load them from GST_PLUGIN_PATH.
    gstfanoutrecording::plugin_register_static()?;
    gstfanoutfec::plugin_register_static()?;
    gstfanoutsession::plugin_register_static()?;

    let port = free_port()?;
    let server = format!("127.0.0.1:{port}").parse()?;
    println!("fanout flagship: {seconds} s of live H.264/MPEG-TS, recorded, 0/2/4 s behind, FEC to 3 receivers over links losing 10 % each way");

    // The receivers first, each through its lossy link: they keep asking until the server
    // is up, and the server holds the stream until all three joined.
    let mut receivers = Vec::new();
    for (i, (channel, _)) in CHANNELS.iter().enumerate() {
        let relay = LossyRelay::start(server, LOSS, 11 + i as u64)?;
        let file = dir.join(format!("received-{channel}.ts"));
        let pipeline = gst::parse::launch(&format!(
            "session-src name=src host=127.0.0.1 port={} channels={channel} \
             ! fec-depayloader name=receiver-{channel} ! filesink location={}",
            relay.port(),
            file.display()
        ))?
        .downcast::<gst::Pipeline>()
        .map_err(|_| "not a pipeline")?;
        let arrivals = Arrivals::default();
        arrivals.watch(&src_pad(&pipeline, &format!("receiver-{channel}"))?);
        pipeline.set_state(gst::State::Playing)?;
        receivers.push(Receiver {
            channel,
            pipeline,
            relay,
            file,
            arrivals,
        });
    }
    std::thread::sleep(Duration::from_millis(300));

    let sender = sender(&dir, port, seconds)?;
    let input = Arrivals::default();
    // What the recorder takes in: the source's stream.
    let recorder_in = sender
        .by_name("recorder")
        .and_then(|r| r.static_pad("sink"));
    input.watch(
        &recorder_in
            .and_then(|p| p.peer())
            .ok_or("recorder unlinked")?,
    );
    let sink = sender.by_name("sessions").ok_or("no session-sink")?;
    sink.connect("client-added", false, |args| {
        println!(
            "  + receiver {} joined",
            args[1].get::<String>().unwrap_or_default()
        );
        None
    });
    sink.connect("client-removed", false, |args| {
        let who = args[1].get::<String>().unwrap_or_default();
        let why = args[2].get::<String>().unwrap_or_default();
        println!("  - receiver {who} left ({why})");
        None
    });
    let start = Instant::now();
    sender.set_state(gst::State::Playing)?;

    let timeline = Arc::new(Mutex::new(fanout_plot::Timeline::default()));
    let mut ended = vec![false; receivers.len() + 1];
    let mut next_line = start + Duration::from_secs(1);
    let mut changed = !change_offset;
    let deadline = start + Duration::from_secs(u64::from(seconds) + 60);
    while ended.iter().any(|e| !e) {
        if Instant::now() > deadline {
            return Err("the run did not end in time".into());
        }
        let t = start.elapsed().as_secs_f64();
        let pipelines = std::iter::once(&sender).chain(receivers.iter().map(|r| &r.pipeline));
        for (i, p) in pipelines.enumerate() {
            let bus = p.bus().ok_or("no bus")?;
            while let Some(msg) = bus.pop() {
                match msg.view() {
                    gst::MessageView::Eos(_) => ended[i] = true,
                    gst::MessageView::Error(e) => {
                        return Err(format!("{}: {}", source(&msg), e.error()).into())
                    }
                    gst::MessageView::Warning(w) => println!("  ! {}: {}", source(&msg), w.error()),
                    _ => timeline.lock().unwrap().message(&msg, t),
                }
            }
        }
        // While the source still runs, once the 4 s channel has started (with 6 s or more).
        if !changed && t >= 2.0 + f64::from(seconds) / 2.0 {
            changed = true;
            let pad = sender.by_name("delays").and_then(|t| t.static_pad("src_2"));
            if let Some(pad) = pad {
                pad.set_property("offset", 3_000_000_000u64);
                println!("  * plus4s: offset changed live to 3 s");
            }
        }
        if Instant::now() >= next_line {
            next_line += Duration::from_secs(1);
            println!("{}", line(t, &sender, &receivers));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    sender.set_state(gst::State::Null)?;
    for r in &receivers {
        r.pipeline.set_state(gst::State::Null)?;
    }

    let recording = concat_ts(&dir.join("recording"))?;
    println!();
    println!(
        "recording: {} ({} bytes)",
        dir.join("recording").display(),
        recording.len()
    );
    let mut all_good = true;
    let checks: Vec<Check> = receivers
        .iter()
        .map(|r| {
            Ok(Check::new(
                &std::fs::read(&r.file)?,
                &recording,
                &r.arrivals,
                &input,
            ))
        })
        .collect::<Result<_, Error>>()?;
    // Measured against the 0 s channel: network and FEC take the same time on each.
    let base = checks[0].delay;
    for (r, check) in receivers.iter().zip(&checks) {
        let stats = r
            .pipeline
            .by_name(&format!("receiver-{}", r.channel))
            .ok_or("no depay")?
            .property::<gst::Structure>("stats");
        let repaired = stats.get::<u64>("blocks-recovered")?;
        let lost = stats.get::<u64>("blocks-lost")?;
        let offset = match (check.delay, base) {
            (Some(d), Some(b)) => format!(
                "offset {:.3} s ({d:.3} s from the source to this output)",
                d - b
            ),
            _ => "offset not measured".into(),
        };
        println!(
            "{:>7}: {}\n         {offset}; {repaired} blocks repaired, {lost} lost; \
             its link dropped {} datagrams\n         in {}",
            r.channel,
            check.describe(),
            r.relay.dropped(),
            r.file.display()
        );
        let want_whole = !(change_offset && r.channel == "plus4s");
        all_good &= check.is_whole() == want_whole && lost == 0;
    }
    let png = dir.join("flagship.png");
    fanout_plot::render(&timeline.lock().unwrap(), &png)?;
    println!("plot: {}", png.display());
    if !all_good {
        return Err("a receiver did not get the recording as it should".into());
    }
    match change_offset {
        false => println!("every receiver got the recording, byte for byte, at its offset"),
        true => println!(
            "every receiver got the recording, byte for byte, at its offset; plus4s jumped \
             forward at its live change, to a keyframe"
        ),
    }
    Ok(())
}

/// The sender, built element by element as an application would: a live H.264/MPEG-TS
/// source, the recorder, the offset-tee with one request pad per channel, a payloader per
/// channel and one session-sink that waits for the three receivers.
fn sender(dir: &Path, port: u16, seconds: u32) -> Result<gst::Pipeline, Error> {
    let pipeline = gst::Pipeline::new();
    let source = gst::parse::bin_from_description(
        &format!(
            "videotestsrc is-live=true num-buffers={} pattern=ball \
             ! video/x-raw,width=640,height=360,framerate=25/1 \
             ! x264enc tune=zerolatency bitrate=2000 pass=cbr vbv-buf-capacity=500 \
               option-string=nal-hrd=cbr:filler key-int-max=25 speed-preset=ultrafast \
             ! mpegtsmux alignment=7",
            seconds * 25
        ),
        true,
    )?;
    let recorder = gst::ElementFactory::make("bitrate-recorder")
        .name("recorder")
        .property("location", dir.join("recording").to_str().ok_or("path")?)
        .build()?;
    let tee = gst::ElementFactory::make("offset-tee")
        .name("delays")
        .property("location", dir.join("delays").to_str().ok_or("path")?)
        // The delayed channels play out their last seconds after the source ends.
        .property_from_str("eos-mode", "play-out")
        .build()?;
    let sink = gst::ElementFactory::make("session-sink")
        .name("sessions")
        .property("port", u32::from(port))
        .property("wait-for-clients", CHANNELS.len() as u32)
        .build()?;
    pipeline.add_many([source.upcast_ref(), &recorder, &tee, &sink])?;
    gst::Element::link_many([source.upcast_ref(), &recorder, &tee])?;
    for (channel, offset) in CHANNELS {
        let out = tee
            .request_pad_simple("src_%u")
            .ok_or("no offset-tee pad")?;
        out.set_property("offset", offset);
        let pay = gst::ElementFactory::make("fec-payloader")
            .property("repair-percent", 10u32)
            .build()?;
        let input = sink
            .request_pad_simple("sink_%u")
            .ok_or("no session-sink pad")?;
        input.set_property("channel", channel);
        pipeline.add(&pay)?;
        out.link(&pay.static_pad("sink").ok_or("no pad")?)?;
        pay.static_pad("src").ok_or("no pad")?.link(&input)?;
    }
    Ok(pipeline)
}

/// One line a second: receivers in, bitrates in / written / sent, and per receiver blocks
/// repaired and lost.
fn line(t: f64, sender: &gst::Pipeline, receivers: &[Receiver]) -> String {
    let stats = |p: &gst::Pipeline, name: &str| {
        p.by_name(name)
            .map(|e| e.property::<gst::Structure>("stats"))
    };
    let mbps = |s: &Option<gst::Structure>, f: &str| {
        s.as_ref().and_then(|s| s.get::<u64>(f).ok()).unwrap_or(0) as f64 / 1e6
    };
    let rec = stats(sender, "recorder");
    let sink = stats(sender, "sessions");
    let clients = sink
        .as_ref()
        .and_then(|s| s.get::<u32>("clients").ok())
        .unwrap_or(0);
    let sent: u64 = sink
        .as_ref()
        .and_then(|s| s.get::<gst::Array>("receivers").ok())
        .map(|a| {
            a.iter()
                .filter_map(|v| v.get::<gst::Structure>().ok())
                .filter_map(|r| r.get::<u64>("bytes").ok())
                .sum()
        })
        .unwrap_or(0);
    let mut s = format!(
        "{t:5.1} s  receivers {clients}/{}  in {:.2} Mbit/s  written {:.2} Mbit/s  sent {:.1} MB",
        receivers.len(),
        mbps(&rec, "input-bitrate"),
        mbps(&rec, "write-bitrate"),
        sent as f64 / 1e6,
    );
    for r in receivers {
        let d = stats(&r.pipeline, &format!("receiver-{}", r.channel));
        let get = |f: &str| d.as_ref().and_then(|d| d.get::<u64>(f).ok()).unwrap_or(0);
        s += &format!(
            "  | {} {} repaired {} lost",
            r.channel,
            get("blocks-recovered"),
            get("blocks-lost")
        );
    }
    s
}

fn src_pad(p: &gst::Pipeline, element: &str) -> Result<gst::Pad, Error> {
    let e = p.by_name(element).ok_or_else(|| format!("no {element}"))?;
    Ok(e.static_pad("src")
        .ok_or_else(|| format!("{element} has no src pad"))?)
}

fn source(msg: &gst::Message) -> String {
    msg.src()
        .map(|s| s.path_string().to_string())
        .unwrap_or_default()
}

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::UdpSocket::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// A recording's `.ts` segments, concatenated in name order: the bytes it received.
fn concat_ts(dir: &Path) -> std::io::Result<Vec<u8>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "ts"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for f in files {
        out.extend(std::fs::read(f)?);
    }
    Ok(out)
}
