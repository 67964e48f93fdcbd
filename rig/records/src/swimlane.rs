//! One test's timeline as swimlanes: what the rig did, what the terminal said, what the host saw.

use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use posrig_core::timeline::{Entry, Source};

use crate::render::{render, DrawResult, Figure, PlotFiles, RecordsError};
use crate::style::{
    axis_font, fmt_tick, legend, legend_height, no_data, note_font, shorten, tick_font, title_font,
    KeyedAxis, LegendItem, Swatch, BLUE, GREEN, LIGHT_GREY, ORANGE, PURPLE, SKY, VERMILLION,
};

/// Size in pixels of the [`swimlane`] plot.
pub const SWIMLANE_SIZE: (u32, u32) = (1600, 900);

/// Draws one test's timeline as swimlanes under `title` and writes it to `STEM.png` and `STEM.svg`.
///
/// The x axis is the time in ms since the first entry. From the top:
///
/// - **test** (only when the test placed markers): the markers, labelled;
/// - **card**: in (with the card's name) or out, from the `card insert NAME` / `card remove`
///   actions;
/// - **power**: on or off, from `power on` / `power off`;
/// - **link**: up or down, from `link up` / `link down`, with impairments (`impair …` until
///   `impairment cleared`) as an orange band above and `connections reset` as a tick;
/// - **console**: canonical terminal events (approved, timeout, reversal_pending, …) as labelled
///   ticks, raw console lines as faint ticks;
/// - **host**: messages received (`in`) and sent (`out`), labelled with the MTI and the response
///   code, connection events as faint ticks.
///
/// Trigger firings are dashed vertical lines across every lane. Before its first action a state
/// lane shows the safe state (card out, power on, link up), which the rig establishes before a
/// test. An action that failed leaves the state as it was and is marked "failed". When labels
/// would overlap, they are staggered over three heights; past that a tick stays unlabelled. An
/// empty timeline gives the empty lanes with a "no data" message.
pub fn swimlane(entries: &[Entry], title: &str, stem: impl AsRef<Path>) -> Result<PlotFiles, RecordsError> {
    render(
        stem.as_ref(),
        &SwimlaneFigure {
            layout: Layout::from_entries(entries),
            empty: entries.is_empty(),
            title: title.to_string(),
        },
    )
}

/// A lane of the swimlane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lane {
    Test,
    Card,
    Power,
    Link,
    Console,
    Host,
}

impl Lane {
    /// Whether the lane shows a state as bars (card, power, link).
    fn is_state(self) -> bool {
        matches!(self, Lane::Card | Lane::Power | Lane::Link)
    }

    fn name(self) -> &'static str {
        match self {
            Lane::Test => "test",
            Lane::Card => "card",
            Lane::Power => "power",
            Lane::Link => "link",
            Lane::Console => "console",
            Lane::Host => "host",
        }
    }
}

/// Heights within a lane (0 = its bottom, 1 = its top).
const STATE_BAND: (f64, f64) = (0.1, 0.46);
const IMPAIR_BAND: (f64, f64) = (0.5, 0.68);
/// An action on a state lane (failed, connections reset): across the bars.
const ACTION_TICK: (f64, f64) = (0.04, 0.72);
const EVENT_TICK: (f64, f64) = (0.06, 0.5);
const FAINT_TICK: (f64, f64) = (0.06, 0.3);
/// The tops of the label rows, highest first: three on event lanes, two above a state lane's bars.
const LABEL_ROWS: [f64; 3] = [0.97, 0.8, 0.63];
const STATE_LABEL_ROWS: usize = 2;

/// A stretch of time a lane spends in one state.
#[derive(Debug, Clone, PartialEq)]
struct Bar {
    lane: Lane,
    from: f64,
    to: f64,
    label: String,
    colour: RGBAColor,
    band: (f64, f64),
}

/// One instant on a lane.
#[derive(Debug, Clone, PartialEq)]
struct Tick {
    lane: Lane,
    x: f64,
    colour: RGBAColor,
    band: (f64, f64),
    width: u32,
    label: Option<(String, RGBColor)>,
}

/// Everything the swimlane draws, in ms since the first entry.
#[derive(Debug, Clone, PartialEq)]
struct Layout {
    /// From the top.
    lanes: Vec<Lane>,
    bars: Vec<Bar>,
    ticks: Vec<Tick>,
    /// Trigger firings: time and label.
    triggers: Vec<(f64, String)>,
    x_end: f64,
}

/// A state lane followed through the actions.
struct StateTrack {
    lane: Lane,
    since: f64,
    label: String,
    colour: RGBAColor,
    bars: Vec<Bar>,
}

impl StateTrack {
    fn new(lane: Lane, label: &str, colour: RGBAColor) -> StateTrack {
        StateTrack {
            lane,
            since: 0.0,
            label: label.to_string(),
            colour,
            bars: vec![],
        }
    }

    fn set(&mut self, x: f64, label: &str, colour: RGBAColor) {
        if label == self.label {
            return;
        }
        self.close(x);
        self.since = x;
        self.label = label.to_string();
        self.colour = colour;
    }

    fn close(&mut self, x: f64) {
        if x > self.since {
            self.bars.push(Bar {
                lane: self.lane,
                from: self.since,
                to: x,
                label: self.label.clone(),
                colour: self.colour,
                band: STATE_BAND,
            });
        }
    }
}

fn on() -> RGBAColor {
    GREEN.mix(0.55)
}

fn off() -> RGBAColor {
    VERMILLION.mix(0.8)
}

fn card_in() -> RGBAColor {
    BLUE.mix(0.6)
}

fn card_out() -> RGBAColor {
    RGBColor(215, 215, 215).to_rgba()
}

impl Layout {
    fn from_entries(entries: &[Entry]) -> Layout {
        let mut entries: Vec<&Entry> = entries.iter().collect();
        entries.sort_by_key(|e| e.t_ns);
        let t0 = entries.first().map_or(0, |e| e.t_ns);
        let ms = |e: &Entry| (e.t_ns - t0) as f64 / 1e6;
        let span = entries.last().map_or(0.0, |e| ms(e));
        let x_end = if span > 0.0 { span * 1.03 } else { 10.0 };

        let mut lanes = vec![];
        if entries.iter().any(|e| e.source == Source::Marker) {
            lanes.push(Lane::Test);
        }
        lanes.extend([Lane::Card, Lane::Power, Lane::Link, Lane::Console, Lane::Host]);

        let mut card = StateTrack::new(Lane::Card, "out", card_out());
        let mut power = StateTrack::new(Lane::Power, "on", on());
        let mut link = StateTrack::new(Lane::Link, "up", on());
        let mut impaired: Option<(f64, String)> = None;
        let mut bars = vec![];
        let mut ticks = vec![];
        let mut triggers = vec![];
        let labelled = |lane: Lane, x, colour: RGBColor, label: String| Tick {
            lane,
            x,
            colour: colour.to_rgba(),
            band: if lane.is_state() { ACTION_TICK } else { EVENT_TICK },
            width: if lane.is_state() { 3 } else { 2 },
            label: Some((label, colour)),
        };
        let faint = |lane, x| Tick {
            lane,
            x,
            colour: LIGHT_GREY.mix(0.8),
            band: FAINT_TICK,
            width: 1,
            label: None,
        };

        for e in entries {
            let x = ms(e);
            match e.source {
                Source::Actuator => {
                    let name = e.name.as_str();
                    let lane = if name.starts_with("card") {
                        Lane::Card
                    } else if name.starts_with("power") {
                        Lane::Power
                    } else {
                        Lane::Link
                    };
                    if e.fields.contains_key("error") {
                        ticks.push(labelled(lane, x, VERMILLION, format!("{name} failed")));
                        continue;
                    }
                    match name {
                        "power on" => power.set(x, "on", on()),
                        "power off" => power.set(x, "off", off()),
                        "link up" => link.set(x, "up", on()),
                        "link down" => link.set(x, "down", off()),
                        "card remove" => card.set(x, "out", card_out()),
                        "impairment cleared" => {
                            if let Some((from, label)) = impaired.take() {
                                bars.push(impairment_bar(from, x, label));
                            }
                        }
                        "connections reset" => ticks.push(labelled(Lane::Link, x, BLACK, "reset".into())),
                        _ => {
                            if let Some(card_name) = name.strip_prefix("card insert") {
                                let label = match card_name.trim() {
                                    "" => "in".to_string(),
                                    card_name => format!("in: {card_name}"),
                                };
                                card.set(x, &label, card_in());
                            } else if let Some(what) = name.strip_prefix("impair") {
                                if let Some((from, label)) = impaired.take() {
                                    bars.push(impairment_bar(from, x, label));
                                }
                                impaired = Some((x, impairment_label(what)));
                            }
                        }
                    }
                }
                Source::Console => ticks.push(faint(Lane::Console, x)),
                Source::Terminal => ticks.push(labelled(Lane::Console, x, BLACK, e.name.clone())),
                Source::Host => {
                    let mut parts = e.name.split_whitespace();
                    match (parts.next(), parts.next()) {
                        (Some(mti), Some(direction @ ("in" | "out"))) => {
                            let mut label = format!("{mti} {direction}");
                            if let Some(rc) = e.fields.get("rc") {
                                label.push_str(&format!(" rc={rc}"));
                            }
                            let colour = if direction == "in" { BLUE } else { SKY };
                            ticks.push(labelled(Lane::Host, x, colour, label));
                        }
                        _ => ticks.push(faint(Lane::Host, x)),
                    }
                }
                Source::Trigger => {
                    if let Some(id) = e
                        .name
                        .strip_prefix("trigger ")
                        .and_then(|r| r.strip_suffix(" fired"))
                    {
                        triggers.push((x, format!("trigger {id}")));
                    }
                }
                Source::Marker => ticks.push(labelled(Lane::Test, x, RGBColor(60, 60, 60), e.name.clone())),
                Source::Input => ticks.push(labelled(
                    Lane::Test,
                    x,
                    RGBColor(120, 60, 160),
                    format!("{} {}", e.name, e.detail),
                )),
            }
        }
        if let Some((from, label)) = impaired {
            bars.push(impairment_bar(from, x_end, label));
        }
        for mut track in [card, power, link] {
            track.close(x_end);
            bars.append(&mut track.bars);
        }
        Layout {
            lanes,
            bars,
            ticks,
            triggers,
            x_end,
        }
    }

    /// The bottom of `lane` on the y axis.
    fn base(&self, lane: Lane) -> f64 {
        let k = self.lanes.iter().position(|l| *l == lane).unwrap_or(0);
        (self.lanes.len() - 1 - k) as f64
    }

    /// The y axis's top: the lanes plus a band above them for the trigger labels.
    fn y_top(&self) -> f64 {
        self.lanes.len() as f64 + 0.3
    }
}

fn impairment_bar(from: f64, to: f64, label: String) -> Bar {
    Bar {
        lane: Lane::Link,
        from,
        to,
        label,
        colour: ORANGE.mix(0.85),
        band: IMPAIR_BAND,
    }
}

/// `impaired (delay 200ms, drop 0.1)` from the action's name, e.g. `impair delay=Some(200ms)
/// drop=0.1 blackhole=false`.
fn impairment_label(what: &str) -> String {
    let mut parts = vec![];
    for token in what.split_whitespace() {
        match token.split_once('=') {
            Some(("delay", v)) if v != "None" => parts.push(format!(
                "delay {}",
                v.trim_start_matches("Some(").trim_end_matches(')')
            )),
            Some(("drop", v)) if v.parse::<f64>() != Ok(0.0) => parts.push(format!("drop {v}")),
            Some(("blackhole", "true")) => parts.push("blackhole".to_string()),
            _ => {}
        }
    }
    if parts.is_empty() {
        "impaired".to_string()
    } else {
        format!("impaired ({})", parts.join(", "))
    }
}

struct SwimlaneFigure {
    layout: Layout,
    empty: bool,
    title: String,
}

fn legend_items() -> Vec<LegendItem> {
    vec![
        LegendItem::new(Swatch::Bar(on()), "power on / link up"),
        LegendItem::new(Swatch::Bar(off()), "power off / link down"),
        LegendItem::new(Swatch::Bar(card_in()), "card in"),
        LegendItem::new(Swatch::Bar(card_out()), "card out"),
        LegendItem::new(Swatch::Bar(ORANGE.mix(0.85)), "impaired"),
        LegendItem::new(Swatch::Tick(BLACK.to_rgba()), "terminal event"),
        LegendItem::new(Swatch::Tick(LIGHT_GREY.to_rgba()), "console line"),
        LegendItem::new(Swatch::Tick(BLUE.to_rgba()), "host received (in)"),
        LegendItem::new(Swatch::Tick(SKY.to_rgba()), "host sent (out)"),
        LegendItem::new(Swatch::Dashed(PURPLE), "trigger fired"),
    ]
}

impl Figure for SwimlaneFigure {
    fn size(&self) -> (u32, u32) {
        SWIMLANE_SIZE
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        let layout = &self.layout;
        let items = legend_items();
        let (width, height) = self.size();
        let (top, bottom) = root.split_vertically(height - legend_height(&items, width));
        let n = layout.lanes.len();
        let centres: Vec<f64> = (0..n).map(|k| k as f64 + 0.5).collect();
        let lane_at = |y: f64| {
            let from_top = n.saturating_sub(1 + y.floor().max(0.0) as usize);
            layout.lanes.get(from_top).map_or("", |l| l.name()).to_string()
        };
        let mut chart = ChartBuilder::on(&top)
            .caption(&self.title, title_font())
            .margin(16)
            .x_label_area_size(58)
            .y_label_area_size(100)
            .build_cartesian_2d(
                -layout.x_end * 0.01..layout.x_end,
                KeyedAxis::new(0.0..layout.y_top(), centres),
            )?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .light_line_style(WHITE)
            .bold_line_style(RGBColor(232, 232, 232))
            .x_desc("time since the first entry (ms)")
            .y_desc("lane")
            .axis_desc_style(axis_font())
            .label_style(tick_font())
            .y_label_style((crate::style::FAMILY, 17).into_font())
            .x_label_formatter(&|v| fmt_tick(*v))
            .y_label_formatter(&|y| lane_at(*y))
            .draw()?;

        let (x_start, x_end) = (-layout.x_end * 0.01, layout.x_end);
        // Alternate lanes lightly shaded, a line between lanes.
        for k in 0..n {
            let y = k as f64;
            if k % 2 == 1 {
                chart.draw_series([Rectangle::new(
                    [(x_start, y), (x_end, y + 1.0)],
                    RGBColor(246, 246, 246).filled(),
                )])?;
            }
            chart.draw_series(LineSeries::new(
                [(x_start, y + 1.0), (x_end, y + 1.0)],
                LIGHT_GREY,
            ))?;
        }
        if self.empty {
            no_data(
                &chart.plotting_area().strip_coord_spec(),
                "no data: the timeline is empty",
            )?;
            return legend(&bottom, &items);
        }

        // State bars, labelled inside when the label fits.
        let font = note_font(14);
        for bar in &layout.bars {
            let base = layout.base(bar.lane);
            let corners = [(bar.from, base + bar.band.0), (bar.to, base + bar.band.1)];
            chart.draw_series([Rectangle::new(corners, bar.colour.filled())])?;
            let (left, y0) = chart.backend_coord(&corners[0]);
            let (right, y1) = chart.backend_coord(&corners[1]);
            let (w, _) = top.estimate_text_size(&bar.label, &font)?;
            if right - left > w as i32 + 10 {
                // State names in the middle of their bar; an impairment's at its start.
                let (x, h_pos) = if bar.band == STATE_BAND {
                    ((left + right) / 2, HPos::Center)
                } else {
                    (left + 5, HPos::Left)
                };
                top.draw(&Text::new(
                    bar.label.clone(),
                    (x, (y0 + y1) / 2),
                    font.pos(Pos::new(h_pos, VPos::Center)),
                ))?;
            }
        }

        // Ticks; their labels staggered over the label rows of their lane.
        let label_font = note_font(14);
        let plot_right = chart.backend_coord(&(x_end, 0.0)).0;
        let mut row_ends: Vec<(Lane, [i32; 3])> = vec![];
        for tick in &layout.ticks {
            let base = layout.base(tick.lane);
            if tick.lane.is_state() {
                // A white edge keeps the tick visible on a bar of its own colour.
                chart.draw_series([PathElement::new(
                    vec![(tick.x, base + tick.band.0), (tick.x, base + tick.band.1)],
                    WHITE.stroke_width(tick.width + 3),
                )])?;
            }
            chart.draw_series([PathElement::new(
                vec![(tick.x, base + tick.band.0), (tick.x, base + tick.band.1)],
                tick.colour.stroke_width(tick.width),
            )])?;
            let Some((text, colour)) = &tick.label else {
                continue;
            };
            let ends = match row_ends.iter_mut().find(|(l, _)| *l == tick.lane) {
                Some((_, ends)) => ends,
                None => {
                    row_ends.push((tick.lane, [i32::MIN; 3]));
                    &mut row_ends.last_mut().expect("just pushed").1
                }
            };
            let text = shorten(text, 32);
            let (w, text_height) = top.estimate_text_size(&text, &label_font)?;
            let px = chart.backend_coord(&(tick.x, 0.0)).0;
            let left = if px + 3 + w as i32 > plot_right {
                px - 3 - w as i32
            } else {
                px + 3
            };
            let rows = if tick.lane.is_state() {
                STATE_LABEL_ROWS
            } else {
                LABEL_ROWS.len()
            };
            let Some(row) = (0..rows).find(|r| ends[*r].saturating_add(8) < left) else {
                continue;
            };
            ends[row] = left + w as i32;
            let (_, py) = chart.backend_coord(&(tick.x, base + LABEL_ROWS[row]));
            let (_, tick_top) = chart.backend_coord(&(tick.x, base + tick.band.1));
            // A faint leader from the tick up to its label.
            top.draw(&PathElement::new(
                vec![(px, tick_top), (px, py + text_height as i32)],
                colour.mix(0.35).stroke_width(1),
            ))?;
            top.draw(&Text::new(text, (left, py), label_font.color(colour)))?;
        }

        // Trigger firings across every lane, labelled above the lanes.
        let trigger_font = note_font(14).color(&PURPLE);
        let mut label_end = i32::MIN;
        for (x, label) in &layout.triggers {
            chart.draw_series(DashedLineSeries::new(
                [(*x, 0.0), (*x, n as f64)],
                8,
                5,
                PURPLE.stroke_width(2),
            ))?;
            let (px, py) = chart.backend_coord(&(*x, n as f64 + 0.03));
            let (w, _) = top.estimate_text_size(label, &trigger_font)?;
            let left = (px - w as i32 / 2).min(plot_right - w as i32);
            if left > label_end + 6 {
                top.draw(&Text::new(
                    label.clone(),
                    (left, py),
                    trigger_font.pos(Pos::new(HPos::Left, VPos::Bottom)),
                ))?;
                label_end = left + w as i32;
            }
        }
        legend(&bottom, &items)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    fn bars_of(layout: &Layout, lane: Lane) -> Vec<(f64, f64, String)> {
        layout
            .bars
            .iter()
            .filter(|b| b.lane == lane && b.band == STATE_BAND)
            .map(|b| (b.from, b.to, b.label.clone()))
            .collect()
    }

    #[test]
    fn state_lanes_follow_the_actions() {
        let t0 = 5_000 * MS;
        let entries = vec![
            Entry::new(t0, Source::Marker, "sale", ""),
            Entry::new(t0 + 10 * MS, Source::Actuator, "card insert visa", "by test"),
            Entry::new(t0 + 40 * MS, Source::Actuator, "power off", "by trigger 1"),
            Entry::new(t0 + 90 * MS, Source::Actuator, "power on", "by trigger 1"),
            Entry::new(t0 + 95 * MS, Source::Actuator, "link down", "by test").with("error", "no link"),
            Entry::new(t0 + 100 * MS, Source::Actuator, "card remove", "by test"),
        ];
        let layout = Layout::from_entries(&entries);
        assert_eq!(
            bars_of(&layout, Lane::Power),
            vec![
                (0.0, 40.0, "on".into()),
                (40.0, 90.0, "off".into()),
                (90.0, 103.0, "on".into())
            ]
        );
        assert_eq!(
            bars_of(&layout, Lane::Card),
            vec![
                (0.0, 10.0, "out".into()),
                (10.0, 100.0, "in: visa".into()),
                (100.0, 103.0, "out".into())
            ]
        );
        // The failed link down leaves the link up and is marked.
        assert_eq!(bars_of(&layout, Lane::Link), vec![(0.0, 103.0, "up".into())]);
        assert!(layout
            .ticks
            .iter()
            .any(|t| t.label.as_ref().is_some_and(|(l, _)| l == "link down failed")));
        assert_eq!(layout.lanes[0], Lane::Test);
    }

    #[test]
    fn impairments_are_summarised() {
        assert_eq!(
            impairment_label(" delay=Some(200ms) drop=0 blackhole=false"),
            "impaired (delay 200ms)"
        );
        assert_eq!(
            impairment_label(" delay=None drop=0.25 blackhole=true"),
            "impaired (drop 0.25, blackhole)"
        );
        assert_eq!(impairment_label(" delay=None drop=0 blackhole=false"), "impaired");
    }
}
