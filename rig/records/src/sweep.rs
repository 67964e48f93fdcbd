//! A sweep's result: the outcome of each cycle against the offset the fault was placed at.

use std::collections::HashMap;
use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::render::{render, DrawResult, Figure, PlotFiles, RecordsError};
use crate::style::{
    axis_font, fmt_tick, legend, legend_height, no_data, note_font, shorten, tick_font, title_font,
    KeyedAxis, LegendItem, Swatch, GREEN, LIGHT_GREY, ORANGE, VERMILLION,
};

/// Size in pixels of the [`sweep_chart`] plot.
pub const SWEEP_SIZE: (u32, u32) = (1200, 600);

/// How one cycle of a sweep ended, as the oracle judged it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Every invariant held.
    Pass,
    /// An invariant was broken.
    Violation,
    /// The oracle could not decide (e.g. the terminal reported the reversal as failed).
    Unresolved,
}

impl Outcome {
    /// The outcome's name as the plots show it: `pass`, `violation`, `unresolved`.
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Pass => "pass",
            Outcome::Violation => "violation",
            Outcome::Unresolved => "unresolved",
        }
    }

    /// Rows from the bottom of the chart up.
    const ROWS: [Outcome; 3] = [Outcome::Pass, Outcome::Unresolved, Outcome::Violation];

    fn row(self) -> usize {
        Outcome::ROWS.iter().position(|o| *o == self).unwrap_or(0)
    }

    fn colour(self) -> RGBColor {
        match self {
            Outcome::Pass => GREEN,
            Outcome::Violation => VERMILLION,
            Outcome::Unresolved => ORANGE,
        }
    }
}

/// One cycle of a sweep.
#[derive(Debug, Clone, PartialEq)]
pub struct SweepPoint {
    /// Where the fault was placed, in ms from the sweep's reference event.
    pub offset_ms: f64,
    /// How the cycle ended.
    pub outcome: Outcome,
    /// What the oracle said (the broken invariant, the unresolved reason); empty for a pass.
    pub detail: String,
}

/// Draws a sweep's outcomes against the fault's offset — one row per outcome, one dot per cycle —
/// under `title`, with `x_label` naming the offset and its unit (e.g. `"power cut after the 0200
/// left (ms)"`), and writes it to `STEM.png` and `STEM.svg`.
///
/// Cycles at the same offset with the same outcome are spread a little up and down so each stays
/// visible. The first offset of each distinct violation or unresolved detail is labelled with it
/// (at most six labels). Points whose offset is not finite are left out; with none left the plot
/// says "no data".
pub fn sweep_chart(
    points: &[SweepPoint],
    title: &str,
    x_label: &str,
    stem: impl AsRef<Path>,
) -> Result<PlotFiles, RecordsError> {
    let points: Vec<SweepPoint> = points
        .iter()
        .filter(|p| p.offset_ms.is_finite())
        .cloned()
        .collect();
    render(
        stem.as_ref(),
        &SweepFigure {
            points,
            title: title.to_string(),
            x_label: x_label.to_string(),
        },
    )
}

struct SweepFigure {
    points: Vec<SweepPoint>,
    title: String,
    x_label: String,
}

/// How many details are written on the chart at most.
const MAX_NOTES: usize = 6;

impl SweepFigure {
    fn legend_items(&self) -> Vec<LegendItem> {
        [Outcome::Pass, Outcome::Violation, Outcome::Unresolved]
            .into_iter()
            .map(|o| {
                let n = self.points.iter().filter(|p| p.outcome == o).count();
                LegendItem::new(Swatch::Dot(o.colour()), format!("{} ({n})", o.name()))
            })
            .collect()
    }

    fn x_range(&self) -> std::ops::Range<f64> {
        let min = self
            .points
            .iter()
            .map(|p| p.offset_ms)
            .fold(f64::INFINITY, f64::min);
        let max = self
            .points
            .iter()
            .map(|p| p.offset_ms)
            .fold(f64::NEG_INFINITY, f64::max);
        if !min.is_finite() {
            0.0..1.0
        } else if max - min < 1e-9 {
            min - 1.0..max + 1.0
        } else {
            let pad = (max - min) * 0.04;
            min - pad..max + pad
        }
    }

    /// Each point's height: its row's centre, spread when several share an offset and outcome.
    fn placed(&self) -> Vec<(f64, f64, Outcome)> {
        let mut seen: HashMap<(u64, Outcome), usize> = HashMap::new();
        self.points
            .iter()
            .map(|p| {
                let k = seen.entry((p.offset_ms.to_bits(), p.outcome)).or_insert(0);
                let spread = [0.0, 0.12, -0.12, 0.24, -0.24, 0.06, -0.06, 0.18, -0.18][*k % 9];
                *k += 1;
                (p.offset_ms, p.outcome.row() as f64 + 0.5 + spread, p.outcome)
            })
            .collect()
    }
}

impl Figure for SweepFigure {
    fn size(&self) -> (u32, u32) {
        SWEEP_SIZE
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        let items = self.legend_items();
        let (width, height) = self.size();
        let (top, bottom) = root.split_vertically(height - legend_height(&items, width));
        let mut chart = ChartBuilder::on(&top)
            .caption(&self.title, title_font())
            .margin(16)
            .x_label_area_size(58)
            .y_label_area_size(130)
            .build_cartesian_2d(self.x_range(), KeyedAxis::new(0.0..3.0, vec![0.5, 1.5, 2.5]))?;
        chart
            .configure_mesh()
            .light_line_style(WHITE)
            .bold_line_style(RGBColor(230, 230, 230))
            .x_desc(&self.x_label)
            .y_desc("outcome")
            .axis_desc_style(axis_font())
            .label_style(tick_font())
            .x_label_formatter(&|v| fmt_tick(*v))
            .y_label_formatter(&|v| Outcome::ROWS[(*v as usize).min(2)].name().to_string())
            .draw()?;
        let x_range = self.x_range();
        for boundary in [1.0, 2.0] {
            chart.draw_series(LineSeries::new(
                [(x_range.start, boundary), (x_range.end, boundary)],
                LIGHT_GREY.stroke_width(1),
            ))?;
        }
        if self.points.is_empty() {
            return no_data(
                &chart.plotting_area().strip_coord_spec(),
                "no data: the sweep ran no cycle",
            )
            .and_then(|()| legend(&bottom, &items));
        }
        let placed = self.placed();
        // Passes first, so violations are drawn on top.
        for outcome in Outcome::ROWS {
            chart.draw_series(
                placed
                    .iter()
                    .filter(|(_, _, o)| *o == outcome)
                    .map(|(x, y, o)| Circle::new((*x, *y), 6, o.colour().mix(0.8).filled())),
            )?;
        }

        // The first offset of each distinct detail that is not a pass.
        let mut noted: Vec<&str> = vec![];
        let mut notes = vec![];
        let mut ordered: Vec<(usize, &SweepPoint)> = self.points.iter().enumerate().collect();
        ordered.sort_by(|a, b| a.1.offset_ms.total_cmp(&b.1.offset_ms));
        for (k, p) in ordered {
            if p.outcome != Outcome::Pass && !p.detail.is_empty() && !noted.contains(&p.detail.as_str()) {
                noted.push(&p.detail);
                notes.push((placed[k], shorten(&p.detail, 48)));
            }
        }
        let font = note_font(14);
        // Stagger notes over three heights within the row so neighbours do not overlap.
        let mut row_end: HashMap<(usize, usize), i32> = HashMap::new();
        for ((x, _, outcome), text) in notes.into_iter().take(MAX_NOTES) {
            let (px, _) = chart.backend_coord(&(x, 0.0));
            let (w, _) = top.estimate_text_size(&text, &font)?;
            let left = if px + 10 + w as i32 > chart.backend_coord(&(x_range.end, 0.0)).0 {
                px - 10 - w as i32
            } else {
                px + 10
            };
            let level = (0..3)
                .find(|l| {
                    row_end
                        .get(&(outcome.row(), *l))
                        .is_none_or(|end| *end + 8 < left)
                })
                .unwrap_or(0);
            row_end.insert((outcome.row(), level), left + w as i32);
            let y = outcome.row() as f64 + [0.93, 0.2, 0.8][level];
            let (_, py) = chart.backend_coord(&(x, y));
            top.draw(&Text::new(text, (left, py), font.clone()))?;
        }
        legend(&bottom, &items)
    }
}
