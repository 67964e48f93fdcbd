//! What every plot shares: colours, fonts, the legend strip, the "no data" message, number format.

use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint};
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::render::DrawResult;

/// Family name the embedded font is registered under.
pub(crate) const FAMILY: &str = "sans-serif";

// Okabe–Ito colours: told apart by colour-blind readers too.
/// Pass, power on, link up.
pub(crate) const GREEN: RGBColor = RGBColor(0, 158, 115);
/// Violation, failed, power off, link down.
pub(crate) const VERMILLION: RGBColor = RGBColor(213, 94, 0);
/// Unresolved, impairment.
pub(crate) const ORANGE: RGBColor = RGBColor(230, 159, 0);
/// Card in, host received, values.
pub(crate) const BLUE: RGBColor = RGBColor(0, 114, 178);
/// Host sent.
pub(crate) const SKY: RGBColor = RGBColor(86, 180, 233);
/// Trigger firings.
pub(crate) const PURPLE: RGBColor = RGBColor(150, 60, 150);
/// Skipped, secondary text.
pub(crate) const GREY: RGBColor = RGBColor(110, 110, 110);
/// Raw console lines, separators.
pub(crate) const LIGHT_GREY: RGBColor = RGBColor(190, 190, 190);

/// The plot's title.
pub(crate) fn title_font() -> TextStyle<'static> {
    (FAMILY, 26).into_font().color(&BLACK)
}

/// Axis descriptions.
pub(crate) fn axis_font() -> TextStyle<'static> {
    (FAMILY, 18).into_font().color(&BLACK)
}

/// Tick labels.
pub(crate) fn tick_font() -> TextStyle<'static> {
    (FAMILY, 15).into_font().color(&BLACK)
}

/// Legend entries.
pub(crate) fn legend_font() -> TextStyle<'static> {
    (FAMILY, 16).into_font().color(&BLACK)
}

/// Labels placed on the data.
pub(crate) fn note_font(size: u32) -> TextStyle<'static> {
    (FAMILY, size).into_font().color(&BLACK)
}

/// How a legend entry is drawn.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Swatch {
    /// A filled box.
    Bar(RGBAColor),
    /// A solid line.
    Line(RGBColor),
    /// A dashed line.
    Dashed(RGBColor),
    /// A short vertical tick.
    Tick(RGBAColor),
    /// A filled dot.
    Dot(RGBColor),
}

/// One legend entry.
#[derive(Debug, Clone)]
pub(crate) struct LegendItem {
    pub swatch: Swatch,
    pub label: String,
}

impl LegendItem {
    pub(crate) fn new(swatch: Swatch, label: impl Into<String>) -> LegendItem {
        LegendItem {
            swatch,
            label: label.into(),
        }
    }
}

/// Height in pixels of one row of the legend strip.
pub(crate) const LEGEND_ROW: u32 = 26;

/// Draws `items` as centred rows on `area` (a strip below the chart), wrapping when a row is full.
pub(crate) fn legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    items: &[LegendItem],
) -> DrawResult<DB> {
    const SWATCH: i32 = 24;
    const GAP: i32 = 7;
    const SPACING: i32 = 28;
    let font = legend_font();
    let (width, height) = area.dim_in_pixel();
    let mut widths = Vec::with_capacity(items.len());
    for item in items {
        let (w, _) = area.estimate_text_size(&item.label, &font)?;
        widths.push(SWATCH + GAP + w as i32);
    }
    let mut rows: Vec<Vec<usize>> = vec![];
    let mut used = 0;
    for (k, w) in widths.iter().enumerate() {
        match rows.last_mut() {
            Some(row) if used + SPACING + w <= width as i32 - 20 => {
                row.push(k);
                used += SPACING + w;
            }
            _ => {
                rows.push(vec![k]);
                used = *w;
            }
        }
    }
    let top = (height as i32 - rows.len() as i32 * LEGEND_ROW as i32) / 2;
    for (r, row) in rows.iter().enumerate() {
        let row_width: i32 = row.iter().map(|&k| widths[k]).sum::<i32>() + SPACING * (row.len() as i32 - 1);
        let mut x = (width as i32 - row_width) / 2;
        let y = top + r as i32 * LEGEND_ROW as i32 + LEGEND_ROW as i32 / 2;
        for &k in row {
            draw_swatch(area, items[k].swatch, x, y, SWATCH)?;
            area.draw(&Text::new(
                items[k].label.clone(),
                (x + SWATCH + GAP, y),
                font.pos(Pos::new(HPos::Left, VPos::Center)),
            ))?;
            x += widths[k] + SPACING;
        }
    }
    Ok(())
}

/// The legend strip's height for `items` on a plot `width` pixels wide (a generous estimate).
pub(crate) fn legend_height(items: &[LegendItem], width: u32) -> u32 {
    // About 9 px per character at 16 px, plus the swatch and spacing.
    let mut rows = 1;
    let mut used = 0;
    for item in items {
        let w = 24 + 7 + 28 + item.label.chars().count() as u32 * 9;
        if used > 0 && used + w > width.saturating_sub(20) {
            rows += 1;
            used = 0;
        }
        used += w;
    }
    rows * LEGEND_ROW + 12
}

fn draw_swatch<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    swatch: Swatch,
    x: i32,
    y: i32,
    w: i32,
) -> DrawResult<DB> {
    match swatch {
        Swatch::Bar(colour) => {
            area.draw(&Rectangle::new([(x, y - 7), (x + w, y + 7)], colour.filled()))?;
            area.draw(&Rectangle::new(
                [(x, y - 7), (x + w, y + 7)],
                GREY.stroke_width(1),
            ))
        }
        Swatch::Line(colour) => area.draw(&PathElement::new(
            vec![(x, y), (x + w, y)],
            colour.stroke_width(3),
        )),
        Swatch::Dashed(colour) => {
            for k in 0..3 {
                let x0 = x + k * 9;
                area.draw(&PathElement::new(
                    vec![(x0, y), (x0 + 5, y)],
                    colour.stroke_width(3),
                ))?;
            }
            Ok(())
        }
        Swatch::Tick(colour) => area.draw(&PathElement::new(
            vec![(x + w / 2, y - 9), (x + w / 2, y + 9)],
            colour.stroke_width(3),
        )),
        Swatch::Dot(colour) => area.draw(&Circle::new((x + w / 2, y), 6, colour.filled())),
    }
}

/// An f64 axis with its ticks exactly where the plot wants them: lane centres, group centres, run
/// indices. (plotters' own `WithKeyPoints` has no default formatting, so no mesh can be drawn on it.)
#[derive(Clone)]
pub(crate) struct KeyedAxis {
    inner: RangedCoordf64,
    keys: Vec<f64>,
}

impl KeyedAxis {
    pub(crate) fn new(range: std::ops::Range<f64>, keys: Vec<f64>) -> KeyedAxis {
        KeyedAxis {
            inner: range.into(),
            keys,
        }
    }
}

impl Ranged for KeyedAxis {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        self.inner.map(value, limit)
    }

    fn key_points<Hint: KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        if hint.weight().allow_light_points() {
            vec![]
        } else {
            self.keys.clone()
        }
    }

    fn range(&self) -> std::ops::Range<f64> {
        self.inner.range()
    }
}

/// Writes `message` in the middle of `area`: what a plot shows when it has nothing to show.
pub(crate) fn no_data<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, message: &str) -> DrawResult<DB> {
    let (w, h) = area.dim_in_pixel();
    area.draw(&Text::new(
        message.to_string(),
        (w as i32 / 2, h as i32 / 2),
        (FAMILY, 24)
            .into_font()
            .color(&GREY)
            .pos(Pos::new(HPos::Center, VPos::Center)),
    ))
}

/// A number with as many decimals as its size calls for: 1234, 123, 12.3, 1.23, 0.123.
pub(crate) fn fmt_value(v: f64) -> String {
    let a = v.abs();
    let decimals = if a >= 100.0 || a == 0.0 {
        0
    } else if a >= 10.0 {
        1
    } else if a >= 1.0 {
        2
    } else {
        3
    };
    format!("{v:.decimals$}")
}

/// An axis tick: no more decimals than it has, `40` rather than `40.0`, `2.5`, `0.125`.
pub(crate) fn fmt_tick(v: f64) -> String {
    let text = format!("{v:.3}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    if text == "-0" {
        "0".to_string()
    } else {
        text.to_string()
    }
}

/// `text` cut to `max` characters, with an ellipsis when cut.
pub(crate) fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
        out.push('…');
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_get_sensible_decimals() {
        assert_eq!(fmt_value(1234.5), "1234");
        assert_eq!(fmt_value(42.26), "42.3");
        assert_eq!(fmt_value(4.226), "4.23");
        assert_eq!(fmt_value(0.1234), "0.123");
        assert_eq!(fmt_value(0.0), "0");
    }

    #[test]
    fn ticks_have_no_useless_decimals() {
        assert_eq!(fmt_tick(40.0), "40");
        assert_eq!(fmt_tick(2.5), "2.5");
        assert_eq!(fmt_tick(0.125), "0.125");
        assert_eq!(fmt_tick(-0.0001), "0");
        assert_eq!(fmt_tick(1200.0), "1200");
    }

    #[test]
    fn long_text_is_shortened_with_an_ellipsis() {
        assert_eq!(shorten("reversal_pending", 8), "reversa…");
        assert_eq!(shorten("approved", 8), "approved");
    }
}
