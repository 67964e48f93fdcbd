//! A distribution of measured values (reversal latency, trigger offset), median and p99 marked.

use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::render::{render, DrawResult, Figure, PlotFiles, RecordsError};
use crate::style::{
    axis_font, fmt_tick, fmt_value, legend, legend_height, no_data, tick_font, title_font, LegendItem,
    Swatch, BLUE, VERMILLION,
};

/// Size in pixels of the [`histogram`] plot.
pub const HISTOGRAM_SIZE: (u32, u32) = (1200, 700);

/// Draws the histogram of `values` measured in `unit` (`"ms"`, `"µs"`) under `title`, and writes it
/// to `STEM.png` and `STEM.svg`.
///
/// The bins come from the data (Freedman–Diaconis width, rounded to a 1-2-2.5-5 step so the edges
/// fall on round numbers); the median and the 99th percentile (linear interpolation) are drawn as
/// dashed lines and given in the legend with the number of values. Values that are not finite are
/// left out; with none left the plot says "no data".
pub fn histogram(
    values: &[f64],
    unit: &str,
    title: &str,
    stem: impl AsRef<Path>,
) -> Result<PlotFiles, RecordsError> {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    sorted.sort_by(f64::total_cmp);
    render(
        stem.as_ref(),
        &HistogramFigure {
            bins: Bins::from_sorted(&sorted),
            median: percentile(&sorted, 50.0),
            p99: percentile(&sorted, 99.0),
            count: sorted.len(),
            dropped: values.len() - sorted.len(),
            unit: unit.to_string(),
            title: title.to_string(),
        },
    )
}

/// The bins: equal widths from `start`, counts per bin.
#[derive(Debug, Clone, PartialEq)]
struct Bins {
    start: f64,
    width: f64,
    counts: Vec<u32>,
}

impl Bins {
    /// Bins for sorted, finite values; `None` for no values.
    fn from_sorted(sorted: &[f64]) -> Option<Bins> {
        let (&min, &max) = (sorted.first()?, sorted.last()?);
        let n = sorted.len() as f64;
        let range = max - min;
        let width = if range <= 0.0 {
            nice_step(if min != 0.0 { min.abs() * 0.1 } else { 1.0 })
        } else {
            let iqr = percentile(sorted, 75.0).unwrap_or(max) - percentile(sorted, 25.0).unwrap_or(min);
            let fd = 2.0 * iqr / n.cbrt();
            let sturges = range / (n.log2().ceil() + 1.0);
            let raw = if fd > 0.0 { fd } else { sturges };
            // Between 5 and 60 bins, however skewed the data.
            nice_step(raw.clamp(range / 60.0, range / 5.0))
        };
        // A single value sits in the middle of its bin; otherwise edges fall on multiples of the width.
        let start = if range <= 0.0 {
            min - width / 2.0
        } else {
            (min / width).floor() * width
        };
        let bins = (((max - start) / width).floor() as usize + 1).max(1);
        let mut counts = vec![0u32; bins];
        for v in sorted {
            let k = (((v - start) / width).floor() as usize).min(bins - 1);
            counts[k] += 1;
        }
        Some(Bins { start, width, counts })
    }

    fn end(&self) -> f64 {
        self.start + self.width * self.counts.len() as f64
    }
}

/// The smallest of 1, 2, 2.5, 5 × 10^k not below `raw`.
fn nice_step(raw: f64) -> f64 {
    let raw = if raw.is_finite() && raw > 0.0 { raw } else { 1.0 };
    let magnitude = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|step| *step >= raw * (1.0 - 1e-9))
        .unwrap_or(10.0 * magnitude)
}

/// The `p`th percentile of sorted values, interpolating between the two nearest ranks.
fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    let last = sorted.len().checked_sub(1)?;
    let rank = p / 100.0 * last as f64;
    let (low, high) = (rank.floor() as usize, rank.ceil() as usize);
    Some(sorted[low] + (sorted[high] - sorted[low]) * (rank - low as f64))
}

struct HistogramFigure {
    bins: Option<Bins>,
    median: Option<f64>,
    p99: Option<f64>,
    count: usize,
    dropped: usize,
    unit: String,
    title: String,
}

impl HistogramFigure {
    fn x_label(&self) -> String {
        if self.unit.is_empty() {
            "value".to_string()
        } else {
            format!("value ({})", self.unit)
        }
    }

    fn with_unit(&self, v: f64) -> String {
        if self.unit.is_empty() {
            fmt_value(v)
        } else {
            format!("{} {}", fmt_value(v), self.unit)
        }
    }

    fn legend_items(&self) -> Vec<LegendItem> {
        let values = match self.dropped {
            0 => format!("values (n = {})", self.count),
            dropped => format!("values (n = {}, {dropped} not finite left out)", self.count),
        };
        let mut items = vec![LegendItem::new(Swatch::Bar(BLUE.mix(0.75)), values)];
        if let Some(m) = self.median {
            items.push(LegendItem::new(
                Swatch::Dashed(BLACK),
                format!("median {}", self.with_unit(m)),
            ));
        }
        if let Some(p) = self.p99 {
            items.push(LegendItem::new(
                Swatch::Dashed(VERMILLION),
                format!("p99 {}", self.with_unit(p)),
            ));
        }
        items
    }
}

impl Figure for HistogramFigure {
    fn size(&self) -> (u32, u32) {
        HISTOGRAM_SIZE
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        let items = self.legend_items();
        let (width, height) = self.size();
        let (top, bottom) = root.split_vertically(height - legend_height(&items, width));
        let (x_range, y_max) = match &self.bins {
            Some(bins) => {
                // A bin of room either side when there are few bins, so they do not fill the plot.
                let pad = if bins.counts.len() < 3 { bins.width } else { 0.0 };
                (
                    bins.start - pad..bins.end() + pad,
                    bins.counts.iter().copied().max().unwrap_or(1),
                )
            }
            None => (0.0..1.0, 1),
        };
        let y_max = (y_max as f64 * 1.12).ceil() as u32 + 1;
        let mut chart = ChartBuilder::on(&top)
            .caption(&self.title, title_font())
            .margin(16)
            .x_label_area_size(58)
            .y_label_area_size(76)
            .build_cartesian_2d(x_range, 0u32..y_max)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .light_line_style(WHITE)
            .bold_line_style(LIGHT_GRID)
            .x_desc(self.x_label())
            .y_desc("count")
            .axis_desc_style(axis_font())
            .label_style(tick_font())
            .x_label_formatter(&|v| fmt_tick(*v))
            .draw()?;

        let Some(bins) = &self.bins else {
            no_data(
                &chart.plotting_area().strip_coord_spec(),
                "no data: no values were measured",
            )?;
            return legend(&bottom, &items);
        };
        chart.draw_series(
            bins.counts
                .iter()
                .enumerate()
                .filter(|(_, c)| **c > 0)
                .flat_map(|(k, c)| {
                    let left = bins.start + bins.width * k as f64;
                    let corners = [(left, 0), (left + bins.width, *c)];
                    [
                        Rectangle::new(corners, BLUE.mix(0.75).filled()),
                        Rectangle::new(corners, WHITE.stroke_width(1)),
                    ]
                }),
        )?;
        // p99 first and with shorter dashes, so a median on the same value still shows.
        for (value, colour, dash) in [(self.p99, VERMILLION, 5), (self.median, BLACK, 10)] {
            if let Some(v) = value {
                chart.draw_series(DashedLineSeries::new(
                    [(v, 0), (v, y_max)],
                    dash,
                    6,
                    colour.stroke_width(3),
                ))?;
            }
        }
        legend(&bottom, &items)
    }
}

/// Grid lines: light enough not to compete with the data.
const LIGHT_GRID: RGBColor = RGBColor(225, 225, 225);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_interpolate_between_ranks() {
        let v = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(percentile(&v, 50.0), Some(2.5));
        assert_eq!(percentile(&v, 0.0), Some(1.0));
        assert_eq!(percentile(&v, 100.0), Some(4.0));
        assert_eq!(percentile(&[], 50.0), None);
        assert_eq!(percentile(&[7.0], 99.0), Some(7.0));
    }

    #[test]
    fn steps_are_round() {
        assert_eq!(nice_step(0.7), 1.0);
        assert_eq!(nice_step(1.3), 2.0);
        assert_eq!(nice_step(2.2), 2.5);
        assert_eq!(nice_step(31.0), 50.0);
        assert_eq!(nice_step(0.0), 1.0);
    }

    #[test]
    fn every_value_lands_in_a_bin() {
        let values: Vec<f64> = (0..500)
            .map(|k| 40.0 + (k as f64 * 0.37).sin() * 5.0 + k as f64 * 0.01)
            .collect();
        let mut sorted = values.clone();
        sorted.sort_by(f64::total_cmp);
        let bins = Bins::from_sorted(&sorted).unwrap();
        assert_eq!(bins.counts.iter().sum::<u32>(), 500);
        assert!(bins.start <= sorted[0] && bins.end() > sorted[499]);
        assert!(
            (5..=61).contains(&bins.counts.len()),
            "{} bins",
            bins.counts.len()
        );
    }

    #[test]
    fn equal_values_give_one_bin() {
        let bins = Bins::from_sorted(&[12.0, 12.0, 12.0]).unwrap();
        assert_eq!(bins.counts, vec![3]);
        assert!(bins.start <= 12.0 && bins.end() > 12.0);
        assert_eq!(Bins::from_sorted(&[]), None);
    }
}
