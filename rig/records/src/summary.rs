//! A run at a glance: passed, failed, unresolved and skipped tests per scenario group.

use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::render::{render, DrawResult, Figure, PlotFiles, RecordsError};
use crate::style::{
    axis_font, legend, legend_height, no_data, note_font, shorten, tick_font, title_font, KeyedAxis,
    LegendItem, Swatch, GREEN, ORANGE, VERMILLION,
};

/// Size in pixels of the [`run_summary`] plot.
pub const RUN_SUMMARY_SIZE: (u32, u32) = (1200, 700);

/// How the tests of one scenario group ended.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupCount {
    /// The scenario group: `purchase`, `reversal`, `power loss`, …
    pub group: String,
    /// Tests that passed.
    pub passed: usize,
    /// Tests that failed (an invariant broken, or an error).
    pub failed: usize,
    /// Tests the oracle could not decide.
    pub unresolved: usize,
    /// Tests that did not run.
    pub skipped: usize,
}

impl GroupCount {
    fn total(&self) -> usize {
        self.passed + self.failed + self.unresolved + self.skipped
    }

    /// The counts from the bottom of the bar up.
    fn layers(&self) -> [usize; 4] {
        [self.passed, self.failed, self.unresolved, self.skipped]
    }
}

/// The stacked layers, bottom up: name and colour.
const LAYERS: [(&str, RGBColor); 4] = [
    ("passed", GREEN),
    ("failed", VERMILLION),
    ("unresolved", ORANGE),
    ("skipped", RGBColor(170, 170, 170)),
];

/// Draws one stacked bar per scenario group — passed, failed, unresolved, skipped from the bottom
/// up, the total above the bar — titled with the run's totals, and writes it to `STEM.png` and
/// `STEM.svg`. With no group the plot says "no data".
pub fn run_summary(groups: &[GroupCount], stem: impl AsRef<Path>) -> Result<PlotFiles, RecordsError> {
    render(
        stem.as_ref(),
        &SummaryFigure {
            groups: groups.to_vec(),
        },
    )
}

struct SummaryFigure {
    groups: Vec<GroupCount>,
}

impl SummaryFigure {
    fn title(&self) -> String {
        let sum = |f: fn(&GroupCount) -> usize| self.groups.iter().map(f).sum::<usize>();
        format!(
            "Run summary — {} tests: {} passed, {} failed, {} unresolved, {} skipped",
            sum(GroupCount::total),
            sum(|g| g.passed),
            sum(|g| g.failed),
            sum(|g| g.unresolved),
            sum(|g| g.skipped)
        )
    }
}

impl Figure for SummaryFigure {
    fn size(&self) -> (u32, u32) {
        RUN_SUMMARY_SIZE
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        let items: Vec<LegendItem> = LAYERS
            .iter()
            .map(|(name, colour)| LegendItem::new(Swatch::Bar(colour.to_rgba()), *name))
            .collect();
        let (width, height) = self.size();
        let (top, bottom) = root.split_vertically(height - legend_height(&items, width));
        let n = self.groups.len().max(1);
        let max_total = self.groups.iter().map(GroupCount::total).max().unwrap_or(0);
        let y_max = (max_total as f64 * 1.12).ceil() as u32 + 1;
        // Long names are cut so neighbouring labels do not run into each other.
        let label_chars = (1080 / n / 9).clamp(6, 28);
        let names: Vec<String> = self
            .groups
            .iter()
            .map(|g| shorten(&g.group, label_chars))
            .collect();
        // One unit per group, the bar centred on the group's index.
        let centres: Vec<f64> = (0..n).map(|k| k as f64).collect();
        let mut chart = ChartBuilder::on(&top)
            .caption(self.title(), title_font())
            .margin(16)
            .x_label_area_size(58)
            .y_label_area_size(76)
            .build_cartesian_2d(KeyedAxis::new(-0.5..n as f64 - 0.5, centres), 0u32..y_max)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .light_line_style(WHITE)
            .bold_line_style(RGBColor(225, 225, 225))
            .x_desc("scenario group")
            .y_desc("tests")
            .axis_desc_style(axis_font())
            .label_style(tick_font())
            .x_label_formatter(&|x| {
                names
                    .get(x.round().max(0.0) as usize)
                    .cloned()
                    .unwrap_or_default()
            })
            .draw()?;
        if self.groups.is_empty() {
            no_data(&chart.plotting_area().strip_coord_spec(), "no data: no test ran")?;
            return legend(&bottom, &items);
        }

        let half = 0.32;
        for (k, g) in self.groups.iter().enumerate() {
            let x = k as f64;
            let mut below = 0u32;
            for (count, (_, colour)) in g.layers().into_iter().zip(LAYERS) {
                if count == 0 {
                    continue;
                }
                let corners = [(x - half, below), (x + half, below + count as u32)];
                chart.draw_series([
                    Rectangle::new(corners, colour.filled()),
                    Rectangle::new(corners, WHITE.stroke_width(1)),
                ])?;
                below += count as u32;
            }
        }
        // The total just above each bar.
        for (k, g) in self.groups.iter().enumerate() {
            let (x, y) = chart.backend_coord(&(k as f64, g.total() as u32));
            top.draw(&Text::new(
                g.total().to_string(),
                (x, y - 5),
                note_font(16).pos(Pos::new(HPos::Center, VPos::Bottom)),
            ))?;
        }
        legend(&bottom, &items)
    }
}
