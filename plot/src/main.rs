// SPDX-License-Identifier: MPL-2.0

//! `fanout-plot`: a PNG of the stats fanout elements post on the bus.
//!
//! ```text
//! fanout-plot LOG OUT.png                 # LOG: the output of gst-launch-1.0 -m …
//! fanout-plot --launch 'PIPELINE' OUT.png # runs the pipeline to its end and plots its bus
//! ```

use std::path::Path;
use std::time::Instant;

use gst::prelude::*;

type Error = Box<dyn std::error::Error>;

fn main() {
    if let Err(e) = run() {
        eprintln!("fanout-plot: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    gst::init()?;
    let (tl, out) = match args.as_slice() {
        [flag, pipeline, out] if flag == "--launch" => (launch(pipeline)?, out),
        [log, out] => {
            let log = std::fs::read_to_string(log).map_err(|e| format!("{log}: {e}"))?;
            (fanout_plot::from_launch_log(&log), out)
        }
        _ => {
            return Err(
                "usage: fanout-plot LOG OUT.png | fanout-plot --launch 'PIPELINE' OUT.png \
                        (LOG: the output of gst-launch-1.0 -m)"
                    .into(),
            )
        }
    };
    if tl.is_empty() {
        return Err("no fanout stats in the input: run gst-launch-1.0 with -m".into());
    }
    fanout_plot::render(&tl, Path::new(out))?;
    println!("{out}");
    Ok(())
}

/// Runs `pipeline` until EOS (or an error), collecting its stats messages with their time.
fn launch(pipeline: &str) -> Result<fanout_plot::Timeline, Error> {
    let p = gst::parse::launch(pipeline)?;
    let bus = p.bus().ok_or("the pipeline has no bus")?;
    let start = Instant::now();
    p.set_state(gst::State::Playing)?;
    let mut tl = fanout_plot::Timeline::default();
    let result = loop {
        let Some(msg) = bus.timed_pop(gst::ClockTime::NONE) else {
            continue;
        };
        match msg.view() {
            gst::MessageView::Eos(_) => break Ok(()),
            gst::MessageView::Error(e) => {
                break Err(format!(
                    "{}: {}",
                    e.src().map(|s| s.path_string()).unwrap_or_default(),
                    e.error()
                ))
            }
            _ => tl.message(&msg, start.elapsed().as_secs_f64()),
        }
    };
    p.set_state(gst::State::Null)?;
    result?;
    Ok(tl)
}
