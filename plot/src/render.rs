// SPDX-License-Identifier: MPL-2.0

//! A [`Timeline`] as a PNG: bitrates above, blocks repaired and lost per receiver below.

use std::collections::BTreeMap;
use std::path::Path;

use plotters::prelude::*;

use crate::timeline::{Line, Timeline};

type Error = Box<dyn std::error::Error>;

/// Writes `tl` to `path` as a 1200×900 PNG.
pub fn render(tl: &Timeline, path: &Path) -> Result<(), Error> {
    let root = BitMapBackend::new(path, (1200, 900)).into_drawing_area();
    root.fill(&WHITE)?;
    let (top, bottom) = root.split_vertically(480);
    chart(&top, "Bitrates", "Mbit/s", &tl.bitrates, end_time(tl))?;
    chart(
        &bottom,
        "Blocks rebuilt with repair, and lost, per receiver (running totals)",
        "blocks",
        &tl.blocks,
        end_time(tl),
    )?;
    root.present()?;
    Ok(())
}

fn end_time(tl: &Timeline) -> f64 {
    tl.bitrates
        .values()
        .chain(tl.blocks.values())
        .flat_map(|l| l.iter().map(|p| p.0))
        .fold(1.0, f64::max)
}

fn chart(
    area: &DrawingArea<BitMapBackend, plotters::coord::Shift>,
    title: &str,
    unit: &str,
    lines: &BTreeMap<String, Line>,
    end: f64,
) -> Result<(), Error> {
    let top = lines
        .values()
        .flat_map(|l| l.iter().map(|p| p.1))
        .fold(1.0, f64::max)
        * 1.1;
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..end, 0.0..top)?;
    chart
        .configure_mesh()
        .x_desc("seconds")
        .y_desc(unit)
        .draw()?;
    for (i, (name, points)) in lines.iter().enumerate() {
        let color = Palette99::pick(i).stroke_width(2);
        chart
            .draw_series(LineSeries::new(points.iter().copied(), color))?
            .label(name.as_str())
            .legend(move |(x, y)| {
                PathElement::new(
                    vec![(x, y), (x + 20, y)],
                    Palette99::pick(i).stroke_width(2),
                )
            });
    }
    if !lines.is_empty() {
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .position(SeriesLabelPosition::UpperLeft)
            .draw()?;
    }
    Ok(())
}
