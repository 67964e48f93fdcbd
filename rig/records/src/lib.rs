//! The run records' plots: what a lab engineer opens after a run.
//!
//! Every function here draws one kind of plot and writes it twice, as `STEM.png` (for a quick look
//! and for reports) and `STEM.svg` (sharp at any zoom, text searchable), and returns both paths:
//!
//! | function | plot |
//! |---|---|
//! | [`swimlane`] | one test's timeline: card, power, link, console and host lanes, trigger firings |
//! | [`sweep_chart`] | a sweep's outcome (pass, violation, unresolved) against the fault's offset |
//! | [`histogram`] | a distribution (reversal latency, trigger offset) with the median and p99 marked |
//! | [`run_summary`] | passed / failed / unresolved / skipped tests per scenario group, stacked |
//! | [`trend`] | counts and duration over the past runs |
//!
//! The text is drawn with DejaVu Sans embedded in the library (`fixtures/fonts/DejaVuSans.ttf`, its
//! license beside it), so plots render the same on a rig with no fonts installed. Empty input never
//! fails: it gives the plot's frame with a "no data" message, so a run's records are complete
//! whatever happened.
//!
//! ```no_run
//! use posrig_records::{histogram, PlotFiles};
//!
//! let latencies_ms = [41.0, 43.5, 40.2, 55.1, 42.8];
//! let files: PlotFiles = histogram(&latencies_ms, "ms", "Reversal latency", "results/run-1/latency")?;
//! println!("wrote {} and {}", files.png.display(), files.svg.display());
//! # Ok::<(), posrig_records::RecordsError>(())
//! ```

#![warn(missing_docs)]

mod glyphs;
mod histogram;
mod render;
mod style;
mod summary;
mod sweep;
mod swimlane;
mod trend;

pub use histogram::{histogram, HISTOGRAM_SIZE};
pub use render::{PlotFiles, RecordsError};
pub use summary::{run_summary, GroupCount, RUN_SUMMARY_SIZE};
pub use sweep::{sweep_chart, Outcome, SweepPoint, SWEEP_SIZE};
pub use swimlane::{swimlane, SWIMLANE_SIZE};
pub use trend::{trend, HistoryRow, TREND_SIZE};
