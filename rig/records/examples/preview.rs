//! Renders each of the five plots from realistic synthetic data, to look at them:
//!
//! ```text
//! cargo run -p posrig-records --example preview -- /tmp/records-preview
//! ```

use posrig_core::timeline::{Entry, Source};
use posrig_records::{
    histogram, run_summary, sweep_chart, swimlane, trend, GroupCount, HistoryRow, Outcome, PlotFiles,
    RecordsError, SweepPoint,
};

const MS: u64 = 1_000_000;

/// A W2 test: a sale, the power cut 40 ms after the 0200 left, the reversal after the reboot.
fn power_cut_timeline() -> Vec<Entry> {
    let t0 = 7_200_000 * MS;
    let at = |ms: f64| t0 + (ms * 1e6) as u64;
    let mut e = vec![
        Entry::new(at(0.0), Source::Marker, "W2 start", ""),
        Entry::new(
            at(2.0),
            Source::Trigger,
            "trigger 1 armed",
            "request_sent after 40ms do power off",
        ),
        Entry::new(at(6.0), Source::Actuator, "card insert visa_cup", "by test"),
        Entry::new(at(31.0), Source::Terminal, "card_read", "[EMV] card read ok"),
        Entry::new(at(58.0), Source::Terminal, "pin_ok", "[PIN] offline pin verified"),
        Entry::new(at(150.0), Source::Host, "connection", "accepted"),
        Entry::new(
            at(152.0),
            Source::Terminal,
            "request_sent",
            "[NET] TX 0200 stan=000123",
        ),
        Entry::new(at(153.5), Source::Host, "0200 in", "").with("stan", "000123"),
        Entry::new(at(158.0), Source::Host, "0210 out", "")
            .with("stan", "000123")
            .with("rc", "00"),
        Entry::new(
            at(192.0),
            Source::Trigger,
            "trigger 1 fired",
            "request_sent → power off",
        ),
        Entry::new(at(192.3), Source::Actuator, "power off", "by trigger 1"),
        Entry::new(at(195.0), Source::Host, "connection", "closed by peer"),
        Entry::new(at(1192.5), Source::Actuator, "power on", "by trigger 1"),
        Entry::new(at(1410.0), Source::Terminal, "boot", "posterm 1.4 boot"),
        Entry::new(
            at(1480.0),
            Source::Terminal,
            "reversal_pending",
            "[REV] pending stan=000123 rc=98",
        ),
        Entry::new(at(1530.0), Source::Host, "connection", "accepted"),
        Entry::new(at(1533.0), Source::Host, "0400 in", "").with("stan", "000123"),
        Entry::new(at(1537.0), Source::Host, "0410 out", "")
            .with("stan", "000123")
            .with("rc", "00"),
        Entry::new(
            at(1541.0),
            Source::Terminal,
            "reversal_done",
            "[REV] done stan=000123",
        ),
        Entry::new(at(1600.0), Source::Actuator, "card remove", "by test"),
        Entry::new(at(1640.0), Source::Marker, "W2 end", ""),
    ];
    // The raw console lines: every event's own line, and chatter between.
    let events: Vec<f64> = e
        .iter()
        .filter(|x| x.source == Source::Terminal)
        .map(|x| (x.t_ns - t0) as f64 / 1e6)
        .collect();
    for ms in events {
        e.push(Entry::new(at(ms), Source::Console, "line", "event line"));
    }
    for k in 0..24 {
        let ms = 10.0 + k as f64 * 7.5;
        e.push(Entry::new(at(ms), Source::Console, "line", "[DBG] tick"));
    }
    for k in 0..16 {
        let ms = 1400.0 + k as f64 * 12.0;
        e.push(Entry::new(at(ms), Source::Console, "line", "[BOOT] init"));
    }
    e
}

/// A P11 test: the link flaps while the 0400 is in flight, under a delay impairment; the terminal
/// retries and the host applies the reversal once. One link-up fails and is retried.
fn link_flap_timeline() -> Vec<Entry> {
    let t0 = 9_000_000 * MS;
    let at = |ms: f64| t0 + (ms * 1e6) as u64;
    let mut e = vec![
        Entry::new(at(0.0), Source::Marker, "P11 start", ""),
        Entry::new(
            at(1.0),
            Source::Actuator,
            "impair delay=Some(150ms) drop=0 blackhole=false",
            "by test",
        ),
        Entry::new(
            at(3.0),
            Source::Trigger,
            "trigger 2 armed",
            "host 0400 in do link down for 400ms",
        ),
        Entry::new(
            at(20.0),
            Source::Terminal,
            "reversal_pending",
            "[REV] pending stan=000077",
        ),
        Entry::new(at(180.0), Source::Host, "connection", "accepted"),
        Entry::new(at(183.0), Source::Host, "0400 in", "").with("stan", "000077"),
        Entry::new(
            at(183.4),
            Source::Trigger,
            "trigger 2 fired",
            "0400 in → link down",
        ),
        Entry::new(at(183.6), Source::Actuator, "link down", "by trigger 2"),
        Entry::new(at(185.0), Source::Host, "0410 out", "")
            .with("stan", "000077")
            .with("rc", "00"),
        Entry::new(at(584.0), Source::Actuator, "link up", "by trigger 2").with("error", "netlink busy"),
        Entry::new(at(600.0), Source::Actuator, "link up", "by test"),
        Entry::new(at(640.0), Source::Actuator, "connections reset", "by test"),
        Entry::new(at(900.0), Source::Terminal, "timeout", "[NET] no reply"),
        Entry::new(at(905.0), Source::Terminal, "reversal_retry", "[REV] retry 2"),
        Entry::new(at(1060.0), Source::Host, "connection", "accepted"),
        Entry::new(at(1062.0), Source::Host, "0400 in", "").with("stan", "000077"),
        Entry::new(at(1063.0), Source::Host, "0410 out", "")
            .with("stan", "000077")
            .with("rc", "00"),
        Entry::new(at(1215.0), Source::Terminal, "reversal_done", "[REV] done"),
        Entry::new(at(1220.0), Source::Terminal, "idle", "[UI] idle"),
        Entry::new(at(1230.0), Source::Actuator, "impairment cleared", "by test"),
        Entry::new(at(1260.0), Source::Marker, "P11 end", ""),
    ];
    for k in 0..60 {
        e.push(Entry::new(
            at(5.0 + k as f64 * 20.0),
            Source::Console,
            "line",
            "[DBG]",
        ));
    }
    e
}

/// A power-cut sweep from 0 to 120 ms in 2 ms steps with a storage-ordering defect in a window.
fn sweep_points() -> Vec<SweepPoint> {
    (0..=60)
        .map(|k| {
            let offset_ms = k as f64 * 2.0;
            let (outcome, detail) = if (44.0..52.0).contains(&offset_ms) {
                (
                    Outcome::Violation,
                    "rule 2: approved, no log, no reversal".to_string(),
                )
            } else if offset_ms == 86.0 {
                (
                    Outcome::Unresolved,
                    "reversal failed after 3 attempts".to_string(),
                )
            } else {
                (Outcome::Pass, String::new())
            };
            SweepPoint {
                offset_ms,
                outcome,
                detail,
            }
        })
        .collect()
}

/// Reversal latencies in ms: a body around 45 ms and a tail.
fn latencies() -> Vec<f64> {
    (0..400)
        .map(|k| {
            let u = ((k * 7919) % 1000) as f64 / 1000.0;
            let v = ((k * 104_729) % 997) as f64 / 997.0;
            let body = 45.0 + (u - 0.5) * 12.0 + (v - 0.5) * 8.0;
            if k % 37 == 0 {
                body + 60.0 * v + 20.0
            } else {
                body
            }
        })
        .collect()
}

fn groups() -> Vec<GroupCount> {
    let g = |group: &str, passed, failed, unresolved, skipped| GroupCount {
        group: group.to_string(),
        passed,
        failed,
        unresolved,
        skipped,
    };
    vec![
        g("purchase", 12, 0, 0, 0),
        g("reversal", 9, 1, 2, 0),
        g("void", 7, 0, 0, 1),
        g("power loss", 8, 2, 0, 0),
        g("network", 10, 0, 1, 2),
        g("card handling", 4, 0, 0, 0),
        g("sweeps", 3, 1, 0, 0),
    ]
}

fn history() -> Vec<HistoryRow> {
    (0..14)
        .map(|k| HistoryRow {
            run_id: format!("2026-11-{:02}", k + 8),
            passed: 50 + k % 4 + if k > 9 { 3 } else { 0 },
            failed: [3, 2, 2, 4, 1, 0, 0, 2, 1, 1, 0, 0, 1, 0][k],
            unresolved: [1, 1, 0, 2, 1, 1, 0, 0, 0, 1, 0, 0, 0, 0][k],
            duration_s: 1500.0 + (k as f64 * 1.7).sin() * 120.0 + k as f64 * 10.0,
        })
        .collect()
}

fn main() -> Result<(), RecordsError> {
    let folder = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "/tmp/records-preview".to_string());
    let folder = std::path::Path::new(&folder);
    let written: Vec<PlotFiles> = vec![
        swimlane(
            &power_cut_timeline(),
            "W2 — power cut 40 ms after the 0200 left",
            folder.join("swimlane"),
        )?,
        swimlane(
            &link_flap_timeline(),
            "P11 — link flap while the 0400 is in flight",
            folder.join("swimlane-link"),
        )?,
        sweep_chart(
            &sweep_points(),
            "Power-cut sweep over a purchase (61 cycles)",
            "power cut offset after the card was read (ms)",
            folder.join("sweep"),
        )?,
        histogram(
            &latencies(),
            "ms",
            "Reversal latency after reboot",
            folder.join("latency"),
        )?,
        run_summary(&groups(), folder.join("summary"))?,
        trend(&history(), folder.join("trend"))?,
    ];
    for files in written {
        println!("{}\n{}", files.png.display(), files.svg.display());
    }
    Ok(())
}
