//! The native half of the `posrig` Python package: a thin binding to the rig controller. Data
//! crosses as JSON text, which the Python half (`python/posrig/`) turns into objects; every call
//! that waits releases the GIL, and every Rust error arrives as `posrig.RigError` with the same
//! message.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use posrig_core::actuators::Action;
use posrig_core::config::{LinkBackend, RigConfig};
use posrig_core::rig::{Rig, RigOptions};
use posrig_core::trigger::TriggerSpec;
use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use serde_json::{json, Value};

create_exception!(
    _native,
    RigError,
    PyException,
    "An error from the rig, with a message that says what to do."
);

fn fail(message: impl std::fmt::Display) -> PyErr {
    RigError::new_err(message.to_string())
}

fn to_json(value: impl serde::Serialize) -> PyResult<String> {
    serde_json::to_string(&value).map_err(fail)
}

fn from_json<T: serde::de::DeserializeOwned>(text: &str, what: &str) -> PyResult<T> {
    serde_json::from_str(text).map_err(|e| fail(format!("{what}: {e}")))
}

/// A running rig, as the Python `Rig` object drives it.
#[pyclass(name = "NativeRig", module = "posrig._native")]
struct NativeRig {
    rig: Mutex<Option<Arc<Rig>>>,
}

impl NativeRig {
    fn rig(&self) -> PyResult<Arc<Rig>> {
        self.rig
            .lock()
            .map_err(|_| fail("the rig's lock was poisoned"))?
            .clone()
            .ok_or_else(|| fail("this rig is closed"))
    }
}

#[pymethods]
impl NativeRig {
    /// Starts the rig of configuration `config`; brings it to the safe state.
    #[new]
    #[pyo3(signature = (config, terminal_args = Vec::new(), link = None))]
    fn new(
        py: Python<'_>,
        config: PathBuf,
        terminal_args: Vec<String>,
        link: Option<String>,
    ) -> PyResult<Self> {
        let link = match link.as_deref() {
            None => None,
            Some("auto") => Some(LinkBackend::Auto),
            Some("netns") => Some(LinkBackend::Netns),
            Some("proxy") => Some(LinkBackend::Proxy),
            Some(other) => {
                return Err(fail(format!(
                    "link {other:?}: use \"auto\", \"netns\" or \"proxy\""
                )))
            }
        };
        let rig = py
            .detach(|| {
                let config = RigConfig::load(&config)?;
                Rig::start(
                    &config,
                    RigOptions {
                        terminal_args,
                        link,
                        ..RigOptions::default()
                    },
                )
            })
            .map_err(fail)?;
        Ok(NativeRig {
            rig: Mutex::new(Some(Arc::new(rig))),
        })
    }

    /// Restores the safe state and stops everything the rig started.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let rig = self
            .rig
            .lock()
            .map_err(|_| fail("the rig's lock was poisoned"))?
            .take();
        py.detach(move || drop(rig));
        Ok(())
    }

    /// The console mark: the number of lines read so far.
    fn mark(&self) -> PyResult<usize> {
        Ok(self.rig()?.console_log().mark())
    }

    /// Canonical events from console line `since` on, as JSON: `[{"t_ns", "name", "fields", "line"}]`.
    fn events(&self, since: usize) -> PyResult<String> {
        let lines = self.rig()?.console_log().lines();
        let events: Vec<Value> = lines
            .iter()
            .skip(since)
            .filter_map(|l| {
                let e = l.event.as_ref()?;
                Some(json!({"t_ns": l.t_ns, "name": e.name, "fields": e.fields, "line": l.text}))
            })
            .collect();
        to_json(events)
    }

    /// Console lines from `since` on, as JSON: `[{"t_ns", "text"}]`.
    fn console_lines(&self, since: usize) -> PyResult<String> {
        let lines = self.rig()?.console_log().lines();
        let lines: Vec<Value> = lines
            .iter()
            .skip(since)
            .map(|l| json!({"t_ns": l.t_ns, "text": l.text}))
            .collect();
        to_json(lines)
    }

    /// Waits from console line `since` for an event named in `names`; returns it as JSON.
    fn wait_event(&self, py: Python<'_>, since: usize, names: Vec<String>, timeout: f64) -> PyResult<String> {
        let rig = self.rig()?;
        let wanted = |e: &posrig_core::profile::Event| names.iter().any(|n| n == &e.name);
        let (_, line) = py
            .detach(|| {
                rig.console_log()
                    .wait_for(since, Duration::from_secs_f64(timeout), wanted)
            })
            .map_err(|e| fail(format!("waiting for {names:?}: {e}")))?;
        let event = line
            .event
            .ok_or_else(|| fail("the matched console line has no event"))?;
        to_json(json!({"t_ns": line.t_ns, "name": event.name, "fields": event.fields, "line": line.text}))
    }

    /// Types a command of the terminal profile; returns the console mark before it.
    fn type_command(&self, name: &str, values: HashMap<String, String>) -> PyResult<usize> {
        let values: Vec<(&str, String)> = values.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
        self.rig()?.type_command(name, &values).map_err(fail)
    }

    /// Types a raw line on the console.
    fn type_line(&self, text: &str) -> PyResult<()> {
        self.rig()?.console_write_line(text).map_err(fail)
    }

    /// Performs an action given as JSON (`{"action": "power_off"}`), holding it `hold_ms` then
    /// undoing it when given; returns `{"started_ns", "done_ns"}`.
    #[pyo3(signature = (action, hold_ms = None))]
    fn perform(&self, py: Python<'_>, action: &str, hold_ms: Option<f64>) -> PyResult<String> {
        let action: Action = from_json(action, "action")?;
        let rig = self.rig()?;
        let done = py
            .detach(|| match hold_ms {
                Some(ms) => rig.perform_for(&action, Duration::from_secs_f64(ms.max(0.0) / 1000.0)),
                None => rig.perform(&action),
            })
            .map_err(fail)?;
        to_json(json!({"started_ns": done.started_ns, "done_ns": done.done_ns}))
    }

    /// Which capabilities the rig has: names among power, card, link, impairment.
    fn capabilities(&self) -> PyResult<Vec<String>> {
        let rig = self.rig()?;
        let c = rig.actuators().capabilities();
        let present = [
            ("power", c.power.is_some()),
            ("card", c.card.is_some()),
            ("link", c.link.is_some()),
            ("impairment", c.impairment.is_some()),
        ];
        Ok(present
            .iter()
            .filter(|(_, has)| *has)
            .map(|(name, _)| name.to_string())
            .collect())
    }

    /// Arms a trigger given as JSON (see `TriggerSpec`); returns its id.
    fn arm(&self, trigger: &str) -> PyResult<u64> {
        let spec: TriggerSpec = from_json(trigger, "trigger")?;
        let trigger = spec.build().map_err(fail)?;
        Ok(self.rig()?.triggers().arm(trigger))
    }

    /// Disarms a trigger.
    fn disarm(&self, id: u64) -> PyResult<()> {
        self.rig()?.triggers().disarm(id);
        Ok(())
    }

    /// Waits until `count` firings completed (undos included) or `timeout` seconds passed;
    /// returns every firing as JSON.
    fn wait_firings(&self, py: Python<'_>, count: usize, timeout: f64) -> PyResult<String> {
        let rig = self.rig()?;
        let firings = py.detach(|| {
            rig.triggers()
                .wait_firings(count, Duration::from_secs_f64(timeout))
        });
        to_json(firings)
    }

    /// A request to the acquirer host, as its control port takes them (JSON), answered as JSON.
    fn host(&self, request: &str) -> PyResult<String> {
        let request: posrig_host::control::Request = from_json(request, "host request")?;
        let answer = posrig_host::control::answer(self.rig()?.host(), request).map_err(fail)?;
        to_json(answer)
    }

    /// The oracle's verdict on the run so far, as JSON.
    fn verdict(&self, py: Python<'_>) -> PyResult<String> {
        let rig = self.rig()?;
        let verdict = py.detach(|| rig.verdict()).map_err(fail)?;
        to_json(verdict)
    }

    /// Timeline entries from position `since` on, as JSON.
    fn timeline(&self, since: usize) -> PyResult<String> {
        to_json(self.rig()?.timeline().since(since))
    }

    /// The number of timeline entries so far.
    fn timeline_mark(&self) -> PyResult<usize> {
        Ok(self.rig()?.timeline().len())
    }

    /// Places a marker on the timeline now; returns its time.
    fn marker(&self, name: &str, detail: &str) -> PyResult<u64> {
        Ok(self.rig()?.timeline().mark(name, detail))
    }

    /// The link backend in use: "netns" or "proxy".
    fn link_kind(&self) -> PyResult<String> {
        Ok(format!("{:?}", self.rig()?.link_kind()).to_lowercase())
    }

    /// The folder with the terminal's NVM, card slot and stderr.
    fn workdir(&self) -> PyResult<PathBuf> {
        Ok(self.rig()?.workdir().to_path_buf())
    }
}

fn plotted(
    files: Result<posrig_records::PlotFiles, posrig_records::RecordsError>,
) -> PyResult<(PathBuf, PathBuf)> {
    files.map(|f| (f.png, f.svg)).map_err(fail)
}

/// Draws the timeline swimlane of one test (timeline entries as JSON) to STEM.png and STEM.svg.
#[pyfunction]
fn plot_swimlane(py: Python<'_>, timeline: &str, title: &str, stem: PathBuf) -> PyResult<(PathBuf, PathBuf)> {
    let entries: Vec<posrig_core::timeline::Entry> = from_json(timeline, "timeline")?;
    plotted(py.detach(|| posrig_records::swimlane(&entries, title, &stem)))
}

/// Draws outcome against offset for a sweep: points are (offset ms, "pass" | "violation" |
/// "unresolved", detail).
#[pyfunction]
fn plot_sweep(
    py: Python<'_>,
    points: Vec<(f64, String, String)>,
    title: &str,
    x_label: &str,
    stem: PathBuf,
) -> PyResult<(PathBuf, PathBuf)> {
    let points = points
        .into_iter()
        .map(|(offset_ms, outcome, detail)| {
            let outcome = match outcome.as_str() {
                "pass" => posrig_records::Outcome::Pass,
                "violation" => posrig_records::Outcome::Violation,
                "unresolved" => posrig_records::Outcome::Unresolved,
                other => {
                    return Err(fail(format!(
                        "sweep outcome {other:?}: use pass, violation or unresolved"
                    )))
                }
            };
            Ok(posrig_records::SweepPoint {
                offset_ms,
                outcome,
                detail,
            })
        })
        .collect::<PyResult<Vec<_>>>()?;
    plotted(py.detach(|| posrig_records::sweep_chart(&points, title, x_label, &stem)))
}

/// Draws a histogram of values in `unit`, median and p99 marked.
#[pyfunction]
fn plot_histogram(
    py: Python<'_>,
    values: Vec<f64>,
    unit: &str,
    title: &str,
    stem: PathBuf,
) -> PyResult<(PathBuf, PathBuf)> {
    plotted(py.detach(|| posrig_records::histogram(&values, unit, title, &stem)))
}

/// Draws the run summary: (group, passed, failed, unresolved, skipped) per scenario group.
#[pyfunction]
fn plot_summary(
    py: Python<'_>,
    groups: Vec<(String, usize, usize, usize, usize)>,
    stem: PathBuf,
) -> PyResult<(PathBuf, PathBuf)> {
    let groups: Vec<posrig_records::GroupCount> = groups
        .into_iter()
        .map(
            |(group, passed, failed, unresolved, skipped)| posrig_records::GroupCount {
                group,
                passed,
                failed,
                unresolved,
                skipped,
            },
        )
        .collect();
    plotted(py.detach(|| posrig_records::run_summary(&groups, &stem)))
}

/// True when the rig `config` describes is the simulated one (its terminal a program the rig
/// starts), false for real hardware.
#[pyfunction]
fn rig_is_simulated(config: PathBuf) -> PyResult<bool> {
    Ok(RigConfig::load(&config).map_err(fail)?.simulated())
}

/// Draws the nightly trend: (run id, passed, failed, unresolved, duration s) per run.
#[pyfunction]
fn plot_trend(
    py: Python<'_>,
    runs: Vec<(String, usize, usize, usize, f64)>,
    stem: PathBuf,
) -> PyResult<(PathBuf, PathBuf)> {
    let rows: Vec<posrig_records::HistoryRow> = runs
        .into_iter()
        .map(
            |(run_id, passed, failed, unresolved, duration_s)| posrig_records::HistoryRow {
                run_id,
                passed,
                failed,
                unresolved,
                duration_s,
            },
        )
        .collect();
    plotted(py.detach(|| posrig_records::trend(&rows, &stem)))
}

/// The native module.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<NativeRig>()?;
    m.add_function(wrap_pyfunction!(plot_swimlane, m)?)?;
    m.add_function(wrap_pyfunction!(plot_sweep, m)?)?;
    m.add_function(wrap_pyfunction!(plot_histogram, m)?)?;
    m.add_function(wrap_pyfunction!(plot_summary, m)?)?;
    m.add_function(wrap_pyfunction!(plot_trend, m)?)?;
    m.add_function(wrap_pyfunction!(rig_is_simulated, m)?)?;
    m.add("RigError", m.py().get_type::<RigError>())?;
    Ok(())
}
