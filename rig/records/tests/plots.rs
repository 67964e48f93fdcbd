//! Every plot writes a PNG of its documented size and an SVG whose text carries the title, the axis
//! labels and the data's labels; empty and odd input gives a "no data" plot, never a panic.

use std::path::{Path, PathBuf};

use posrig_core::timeline::{Entry, Source};
use posrig_records::{
    histogram, run_summary, sweep_chart, swimlane, trend, GroupCount, HistoryRow, Outcome, PlotFiles,
    SweepPoint, HISTOGRAM_SIZE, RUN_SUMMARY_SIZE, SWEEP_SIZE, SWIMLANE_SIZE, TREND_SIZE,
};

const MS: u64 = 1_000_000;

/// Width and height from the PNG's IHDR chunk, after checking the signature.
fn png_size(path: &Path) -> (u32, u32) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    assert!(bytes.len() > 33, "{} is too short for a PNG", path.display());
    assert_eq!(
        &bytes[..8],
        b"\x89PNG\r\n\x1a\n",
        "{} is not a PNG",
        path.display()
    );
    assert_eq!(&bytes[12..16], b"IHDR", "{} has no IHDR first", path.display());
    let be = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap());
    (be(16), be(20))
}

/// The contents of every `<text>` element of an SVG, trimmed, entities for `<>&` decoded.
fn svg_texts(path: &Path) -> Vec<String> {
    let svg = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    assert!(svg.contains("<svg"), "{} is not an SVG", path.display());
    svg.split("<text")
        .skip(1)
        .filter_map(|chunk| {
            let body = &chunk[chunk.find('>')? + 1..];
            let text = &body[..body.find("</text>")?];
            Some(
                text.trim()
                    .replace("&lt;", "<")
                    .replace("&gt;", ">")
                    .replace("&amp;", "&"),
            )
        })
        .collect()
}

/// Checks both files and returns the SVG's texts.
fn check(files: &PlotFiles, size: (u32, u32)) -> Vec<String> {
    assert!(files.png.is_file(), "{} was not written", files.png.display());
    assert!(files.svg.is_file(), "{} was not written", files.svg.display());
    assert_eq!(png_size(&files.png), size, "size of {}", files.png.display());
    svg_texts(&files.svg)
}

fn assert_has(texts: &[String], wanted: &[&str]) {
    for w in wanted {
        assert!(
            texts.iter().any(|t| t == w),
            "no text {w:?} in the SVG; it has {texts:?}"
        );
    }
}

fn stem(dir: &tempfile::TempDir, name: &str) -> PathBuf {
    dir.path().join(name)
}

/// A W2 test as the rig records it: a sale, the power cut by a trigger 40 ms after the 0200 left,
/// the reboot, the reversal.
fn sale_with_power_cut() -> Vec<Entry> {
    let t0 = 3_600_000 * MS;
    let at = |ms: u64| t0 + ms * MS;
    let mut entries = vec![
        Entry::new(at(0), Source::Marker, "W2 start", ""),
        Entry::new(
            at(1),
            Source::Trigger,
            "trigger 1 armed",
            "request_sent after 40ms do power off",
        ),
        Entry::new(at(5), Source::Actuator, "card insert visa_cup", "by test").with("took_us", "900"),
        Entry::new(at(30), Source::Terminal, "card_read", "[EMV] card read"),
        Entry::new(at(140), Source::Host, "connection", "accepted"),
        Entry::new(
            at(150),
            Source::Terminal,
            "request_sent",
            "[NET] TX 0200 stan=000123",
        ),
        Entry::new(at(152), Source::Host, "0200 in", "").with("stan", "000123"),
        Entry::new(at(160), Source::Host, "0210 out", "")
            .with("stan", "000123")
            .with("rc", "00"),
        Entry::new(
            at(190),
            Source::Trigger,
            "trigger 1 fired",
            "request_sent → power off",
        ),
        Entry::new(at(190), Source::Actuator, "power off", "by trigger 1"),
        Entry::new(at(1190), Source::Actuator, "power on", "by trigger 1"),
        Entry::new(
            at(1400),
            Source::Terminal,
            "reversal_pending",
            "[REV] pending stan=000123",
        ),
        Entry::new(at(1450), Source::Host, "0400 in", "").with("stan", "000123"),
        Entry::new(at(1455), Source::Host, "0410 out", "")
            .with("stan", "000123")
            .with("rc", "00"),
        Entry::new(at(1460), Source::Terminal, "reversal_done", "[REV] done"),
        Entry::new(at(1500), Source::Actuator, "card remove", "by test"),
    ];
    for k in 0..40 {
        entries.push(Entry::new(at(10 + k * 37), Source::Console, "line", "[DBG] tick"));
    }
    // Unordered on purpose: the timeline may hand entries over in any order.
    entries.reverse();
    entries
}

#[test]
fn swimlane_of_a_sale_with_a_power_cut_shows_every_lane() {
    let dir = tempfile::tempdir().unwrap();
    let files = swimlane(
        &sale_with_power_cut(),
        "W2 power cut after the 0200",
        stem(&dir, "w2"),
    )
    .unwrap();
    assert_eq!(files.png, dir.path().join("w2.png"));
    assert_eq!(files.svg, dir.path().join("w2.svg"));
    let texts = check(&files, SWIMLANE_SIZE);
    assert_has(
        &texts,
        &[
            "W2 power cut after the 0200",
            "time since the first entry (ms)",
            "lane",
        ],
    );
    assert_has(&texts, &["test", "card", "power", "link", "console", "host"]);
    // States, events, host messages with their response code, the trigger.
    assert_has(&texts, &["off", "on", "up", "in: visa_cup", "out"]);
    assert_has(
        &texts,
        &["card_read", "request_sent", "reversal_pending", "reversal_done"],
    );
    assert_has(
        &texts,
        &[
            "0200 in",
            "0210 out rc=00",
            "0400 in",
            "0410 out rc=00",
            "trigger 1",
        ],
    );
    assert_has(&texts, &["W2 start", "trigger fired", "console line"]);
}

#[test]
fn swimlane_marks_failed_actions_impairments_and_resets() {
    let t0 = 10 * MS;
    let entries = vec![
        Entry::new(
            t0,
            Source::Actuator,
            "impair delay=Some(200ms) drop=0 blackhole=false",
            "by test",
        ),
        Entry::new(t0 + 100 * MS, Source::Actuator, "link down", "by trigger 2"),
        Entry::new(t0 + 500 * MS, Source::Actuator, "link up", "by trigger 2").with("error", "busy"),
        Entry::new(t0 + 520 * MS, Source::Actuator, "link up", "by test"),
        Entry::new(t0 + 900 * MS, Source::Actuator, "connections reset", "by test"),
        Entry::new(t0 + 1000 * MS, Source::Actuator, "impairment cleared", "by test"),
    ];
    let dir = tempfile::tempdir().unwrap();
    let texts = check(
        &swimlane(&entries, "P11 link flap", stem(&dir, "p11")).unwrap(),
        SWIMLANE_SIZE,
    );
    assert_has(
        &texts,
        &["down", "up", "link up failed", "reset", "impaired (delay 200ms)"],
    );
    // No marker, no test lane.
    assert!(!texts.iter().any(|t| t == "test"), "{texts:?}");
}

#[test]
fn sweep_chart_shows_each_outcome_with_its_count() {
    let points: Vec<SweepPoint> = (0..30)
        .map(|k| SweepPoint {
            offset_ms: k as f64 * 2.0,
            outcome: match k {
                10..=12 => Outcome::Violation,
                20 => Outcome::Unresolved,
                _ => Outcome::Pass,
            },
            detail: match k {
                10..=12 => "net(H) != 0".to_string(),
                20 => "reversal failed".to_string(),
                _ => String::new(),
            },
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let files = sweep_chart(
        &points,
        "Power-cut sweep",
        "power cut offset (ms)",
        stem(&dir, "sweep.power"),
    )
    .unwrap();
    assert_eq!(files.png, dir.path().join("sweep.power.png"));
    let texts = check(&files, SWEEP_SIZE);
    assert_has(&texts, &["Power-cut sweep", "power cut offset (ms)", "outcome"]);
    assert_has(&texts, &["pass", "violation", "unresolved"]);
    assert_has(&texts, &["pass (26)", "violation (3)", "unresolved (1)"]);
    assert_has(&texts, &["net(H) != 0", "reversal failed"]);
}

#[test]
fn histogram_marks_median_and_p99() {
    let values: Vec<f64> = (1..=100).map(|k| k as f64).collect();
    let dir = tempfile::tempdir().unwrap();
    let texts = check(
        &histogram(&values, "ms", "Reversal latency", stem(&dir, "latency")).unwrap(),
        HISTOGRAM_SIZE,
    );
    assert_has(&texts, &["Reversal latency", "value (ms)", "count"]);
    assert_has(&texts, &["values (n = 100)", "median 50.5 ms", "p99 99.0 ms"]);
}

#[test]
fn run_summary_titles_the_totals_and_names_the_groups() {
    let groups = vec![
        GroupCount {
            group: "purchase".into(),
            passed: 5,
            failed: 1,
            unresolved: 0,
            skipped: 0,
        },
        GroupCount {
            group: "power loss".into(),
            passed: 2,
            failed: 0,
            unresolved: 1,
            skipped: 1,
        },
    ];
    let dir = tempfile::tempdir().unwrap();
    let texts = check(
        &run_summary(&groups, stem(&dir, "summary")).unwrap(),
        RUN_SUMMARY_SIZE,
    );
    assert_has(
        &texts,
        &[
            "Run summary — 10 tests: 7 passed, 1 failed, 1 unresolved, 1 skipped",
            "scenario group",
            "tests",
        ],
    );
    assert_has(&texts, &["purchase", "power loss", "6", "4"]);
    assert_has(&texts, &["passed", "failed", "unresolved", "skipped"]);
}

#[test]
fn trend_shows_counts_and_duration_per_run() {
    let history: Vec<HistoryRow> = (0..3)
        .map(|k| HistoryRow {
            run_id: format!("run-{k}"),
            passed: 40 + k,
            failed: 2 - k,
            unresolved: k % 2,
            duration_s: 600.0 + 30.0 * k as f64,
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let texts = check(&trend(&history, stem(&dir, "trend")).unwrap(), TREND_SIZE);
    assert_has(
        &texts,
        &[
            "Run history — 3 runs",
            "run",
            "duration (s)",
            "passed (tests)",
            "not passed (tests)",
        ],
    );
    assert_has(&texts, &["run-0", "run-1", "run-2"]);
    assert_has(&texts, &["failed (tests)", "unresolved (tests)"]);
}

#[test]
fn empty_input_gives_no_data_plots() {
    let dir = tempfile::tempdir().unwrap();
    let no_data = |texts: Vec<String>| {
        assert!(
            texts.iter().any(|t| t.starts_with("no data")),
            "no \"no data\" in {texts:?}"
        );
        texts
    };
    let texts = no_data(check(
        &swimlane(&[], "Empty test", stem(&dir, "a")).unwrap(),
        SWIMLANE_SIZE,
    ));
    assert_has(&texts, &["Empty test", "card", "host"]);
    no_data(check(
        &sweep_chart(&[], "Empty sweep", "offset (ms)", stem(&dir, "b")).unwrap(),
        SWEEP_SIZE,
    ));
    no_data(check(
        &histogram(&[], "ms", "No latency", stem(&dir, "c")).unwrap(),
        HISTOGRAM_SIZE,
    ));
    no_data(check(
        &run_summary(&[], stem(&dir, "d")).unwrap(),
        RUN_SUMMARY_SIZE,
    ));
    no_data(check(&trend(&[], stem(&dir, "e")).unwrap(), TREND_SIZE));
}

#[test]
fn values_that_are_not_finite_are_left_out() {
    let dir = tempfile::tempdir().unwrap();
    let texts = check(
        &histogram(&[f64::NAN, f64::INFINITY], "µs", "Only junk", stem(&dir, "junk")).unwrap(),
        HISTOGRAM_SIZE,
    );
    assert!(texts.iter().any(|t| t.starts_with("no data")), "{texts:?}");
    assert_has(&texts, &["value (µs)", "values (n = 0, 2 not finite left out)"]);

    let point = |offset_ms| SweepPoint {
        offset_ms,
        outcome: Outcome::Pass,
        detail: String::new(),
    };
    let texts = check(
        &sweep_chart(
            &[point(f64::NAN), point(5.0)],
            "One good point",
            "offset (ms)",
            stem(&dir, "sweep"),
        )
        .unwrap(),
        SWEEP_SIZE,
    );
    assert_has(&texts, &["pass (1)"]);
}

#[test]
fn single_values_do_not_break_the_axes() {
    let dir = tempfile::tempdir().unwrap();
    let one_entry = [Entry::new(42, Source::Terminal, "approved", "[UI] APPROVED")];
    assert_has(
        &check(
            &swimlane(&one_entry, "One event", stem(&dir, "one")).unwrap(),
            SWIMLANE_SIZE,
        ),
        &["approved"],
    );
    check(
        &histogram(&[3.0, 3.0, 3.0], "ms", "Constant", stem(&dir, "constant")).unwrap(),
        HISTOGRAM_SIZE,
    );
    check(
        &histogram(&[0.0], "", "Zero", stem(&dir, "zero")).unwrap(),
        HISTOGRAM_SIZE,
    );
    let point = SweepPoint {
        offset_ms: 12.0,
        outcome: Outcome::Violation,
        detail: "rule 1".into(),
    };
    check(
        &sweep_chart(
            &[point.clone(), point],
            "Twice",
            "offset (ms)",
            stem(&dir, "twice"),
        )
        .unwrap(),
        SWEEP_SIZE,
    );
    let group = GroupCount {
        group: "void".into(),
        ..GroupCount::default()
    };
    assert_has(
        &check(
            &run_summary(&[group], stem(&dir, "zero-group")).unwrap(),
            RUN_SUMMARY_SIZE,
        ),
        &["void"],
    );
    let run = HistoryRow {
        run_id: "only".into(),
        duration_s: f64::NAN,
        ..HistoryRow::default()
    };
    assert_has(
        &check(&trend(&[run], stem(&dir, "only")).unwrap(), TREND_SIZE),
        &["only"],
    );
}

#[test]
fn missing_folders_are_created() {
    let dir = tempfile::tempdir().unwrap();
    let files = histogram(
        &[1.0, 2.0],
        "ms",
        "Nested",
        dir.path().join("run-7/plots/latency"),
    )
    .unwrap();
    check(&files, HISTOGRAM_SIZE);
}

#[test]
fn an_unwritable_place_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-folder");
    std::fs::write(&file, "x").unwrap();
    let err = histogram(&[1.0], "ms", "Nowhere", file.join("latency")).unwrap_err();
    assert_eq!(err.path, file);
    let message = err.to_string();
    assert!(message.contains(&file.display().to_string()), "{message}");
    assert!(message.starts_with("could not write the plot"), "{message}");

    // A folder where the PNG should go.
    std::fs::create_dir(dir.path().join("taken.png")).unwrap();
    let err = trend(&[], dir.path().join("taken")).unwrap_err();
    assert_eq!(err.path, dir.path().join("taken.png"));
}
