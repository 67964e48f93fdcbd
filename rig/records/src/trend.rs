//! How the suite fared over the past runs: counts per run, and how long each run took.

use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::render::{render, DrawResult, Figure, PlotFiles, RecordsError};
use crate::style::{
    axis_font, fmt_tick, legend, legend_height, no_data, shorten, tick_font, title_font, KeyedAxis,
    LegendItem, Swatch, BLUE, GREEN, ORANGE, VERMILLION,
};

/// Size in pixels of the [`trend`] plot.
pub const TREND_SIZE: (u32, u32) = (1200, 950);

/// One past run, as the history keeps it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HistoryRow {
    /// The run's id, e.g. `2026-11-21T02:00` or a CI build number.
    pub run_id: String,
    /// Tests that passed.
    pub passed: usize,
    /// Tests that failed.
    pub failed: usize,
    /// Tests the oracle could not decide.
    pub unresolved: usize,
    /// Wall-clock duration of the run, in seconds.
    pub duration_s: f64,
}

/// At most this many run ids are written under the x axis.
const MAX_X_LABELS: usize = 12;

/// Draws the history of runs, oldest first as given, in three panels sharing the run axis: tests
/// passed; tests failed and unresolved (on their own scale, so a few failures stay visible next to
/// hundreds of passes); the run's duration in seconds. Run ids label the x axis (at most twelve
/// of them, evenly spaced). Writes `STEM.png` and `STEM.svg`. With no run the plot says "no data".
pub fn trend(history: &[HistoryRow], stem: impl AsRef<Path>) -> Result<PlotFiles, RecordsError> {
    render(
        stem.as_ref(),
        &TrendFigure {
            history: history.to_vec(),
        },
    )
}

struct TrendFigure {
    history: Vec<HistoryRow>,
}

impl TrendFigure {
    fn x_spec(&self) -> KeyedAxis {
        let n = self.history.len().max(1);
        let step = n.div_ceil(MAX_X_LABELS);
        let keys: Vec<f64> = (0..n).step_by(step).map(|k| k as f64).collect();
        KeyedAxis::new(-0.5..n as f64 - 0.5, keys)
    }

    fn run_label(&self, x: f64) -> String {
        self.history
            .get(x.round().max(0.0) as usize)
            .map(|r| shorten(&r.run_id, 18))
            .unwrap_or_default()
    }
}

/// Reads one count of a run.
type Count = fn(&HistoryRow) -> usize;

/// The failure series of the middle panel: name, colour, value.
const FAILURES: [(&str, RGBColor, Count); 2] = [
    ("failed", VERMILLION, |r| r.failed),
    ("unresolved", ORANGE, |r| r.unresolved),
];

/// One panel of the trend: a y axis and the series drawn against the runs.
struct Panel<'a> {
    y_desc: &'a str,
    y_max: f64,
    series: Vec<(RGBColor, Vec<(f64, f64)>)>,
    x_desc: Option<&'a str>,
    integer: bool,
    /// Whether this panel carries the "no data" message when the history is empty.
    says_no_data: bool,
}

impl TrendFigure {
    fn series(&self, value: impl Fn(&HistoryRow) -> f64) -> Vec<(f64, f64)> {
        self.history
            .iter()
            .enumerate()
            .map(|(k, r)| (k as f64, value(r)))
            .filter(|(_, v)| v.is_finite())
            .collect()
    }

    fn panel<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>, panel: &Panel) -> DrawResult<DB> {
        let y_max = if panel.integer {
            (panel.y_max * 1.12).ceil().max(1.0) + if panel.y_max < 4.0 { 1.0 } else { 0.0 }
        } else {
            (panel.y_max * 1.12).max(1.0)
        };
        let mut chart = ChartBuilder::on(area)
            .margin(16)
            .margin_bottom(if panel.x_desc.is_some() { 16 } else { 2 })
            .x_label_area_size(if panel.x_desc.is_some() { 58 } else { 30 })
            .y_label_area_size(76)
            .build_cartesian_2d(self.x_spec(), 0.0..y_max)?;
        let label = |x: &f64| self.run_label(*x);
        let y_label = |y: &f64| fmt_tick(*y);
        let mut mesh = chart.configure_mesh();
        mesh.light_line_style(WHITE)
            .bold_line_style(RGBColor(225, 225, 225))
            .y_desc(panel.y_desc)
            .axis_desc_style(axis_font())
            .label_style(tick_font())
            .x_label_formatter(&label)
            .y_label_formatter(&y_label);
        if panel.integer {
            // Whole tests only: no tick at 0.5.
            mesh.y_labels((y_max as usize + 1).min(8));
        }
        if let Some(x_desc) = panel.x_desc {
            mesh.x_desc(x_desc);
        }
        mesh.draw()?;
        for (colour, points) in &panel.series {
            chart.draw_series(LineSeries::new(points.iter().copied(), colour.stroke_width(2)))?;
            chart.draw_series(points.iter().map(|p| Circle::new(*p, 4, colour.filled())))?;
        }
        if self.history.is_empty() && panel.says_no_data {
            no_data(
                &chart.plotting_area().strip_coord_spec(),
                "no data: no run in the history",
            )?;
        }
        Ok(())
    }
}

impl Figure for TrendFigure {
    fn size(&self) -> (u32, u32) {
        TREND_SIZE
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        let mut items = vec![LegendItem::new(Swatch::Line(GREEN), "passed (tests)")];
        items.extend(
            FAILURES
                .iter()
                .map(|(name, colour, _)| LegendItem::new(Swatch::Line(*colour), format!("{name} (tests)"))),
        );
        items.push(LegendItem::new(Swatch::Line(BLUE), "duration (s)"));
        let (width, _) = self.size();
        let title = format!("Run history — {} runs", self.history.len());
        let root = root.titled(&title, title_font())?;
        let (body, bottom) = root.split_vertically(root.dim_in_pixel().1 - legend_height(&items, width));
        let body_height = body.dim_in_pixel().1 as f64;
        let (passed_area, rest) = body.split_vertically((body_height * 0.31) as u32);
        let (failures_area, duration_area) = rest.split_vertically((body_height * 0.31) as u32);

        let max = |f: Count| self.history.iter().map(f).max().unwrap_or(0) as f64;
        self.panel(
            &passed_area,
            &Panel {
                y_desc: "passed (tests)",
                y_max: max(|r| r.passed),
                series: vec![(GREEN, self.series(|r| r.passed as f64))],
                x_desc: None,
                integer: true,
                says_no_data: true,
            },
        )?;
        self.panel(
            &failures_area,
            &Panel {
                y_desc: "not passed (tests)",
                y_max: max(|r| r.failed.max(r.unresolved)),
                series: FAILURES
                    .iter()
                    .map(|(_, colour, value)| (*colour, self.series(|r| value(r) as f64)))
                    .collect(),
                x_desc: None,
                integer: true,
                says_no_data: false,
            },
        )?;
        let duration_max = self
            .history
            .iter()
            .map(|r| r.duration_s)
            .filter(|d| d.is_finite())
            .fold(0.0, f64::max);
        self.panel(
            &duration_area,
            &Panel {
                y_desc: "duration (s)",
                y_max: duration_max,
                series: vec![(BLUE, self.series(|r| r.duration_s))],
                x_desc: Some("run"),
                integer: false,
                says_no_data: false,
            },
        )?;
        legend(&bottom, &items)
    }
}
