//! The figures: latency percentiles, the table, the targets.

use crate::ingest::Throughput;
use crate::latency::Sample;

/// Latency percentiles of one contender, in nanoseconds.
#[derive(Debug, Clone, Copy)]
pub struct Summary {
    /// Median.
    pub p50: u64,
    /// 99th percentile.
    pub p99: u64,
    /// Worst.
    pub max: u64,
}

impl Summary {
    /// Percentiles (nearest rank) of `latencies`; `None` when empty.
    pub fn of(latencies: &[u64]) -> Option<Summary> {
        let mut sorted = latencies.to_vec();
        sorted.sort_unstable();
        let rank = |p: f64| sorted[((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1];
        (!sorted.is_empty()).then(|| Summary {
            p50: rank(0.50),
            p99: rank(0.99),
            max: *sorted.last().expect("not empty"),
        })
    }
}

/// Trigger latency of one contender.
#[derive(Debug, Clone, Copy)]
pub struct Latency {
    /// Write → action completed.
    pub total: Summary,
    /// Its parts (write → read returned, read → action started, action), when known.
    pub parts: Option<[Summary; 3]>,
}

impl Latency {
    /// The latency of `samples`; `None` when empty.
    pub fn of(samples: &[Sample]) -> Option<Latency> {
        let total = Summary::of(&samples.iter().map(|s| s.latency).collect::<Vec<_>>())?;
        let parts: Option<Vec<[u64; 3]>> = samples.iter().map(|s| s.parts).collect();
        let part =
            |parts: &[[u64; 3]], i: usize| Summary::of(&parts.iter().map(|p| p[i]).collect::<Vec<_>>());
        let parts = parts.and_then(|parts| Some([part(&parts, 0)?, part(&parts, 1)?, part(&parts, 2)?]));
        Some(Latency { total, parts })
    }
}

/// One contender's figures; `None` where it was not measured.
pub struct Row {
    /// Its name.
    pub name: &'static str,
    /// Trigger latency.
    pub latency: Option<Latency>,
    /// Serial ingest.
    pub ingest: Option<Throughput>,
}

fn us(ns: u64) -> f64 {
    ns as f64 / 1000.0
}

/// Prints the table; ratios are to the first row, the floor.
pub fn print_table(rows: &[Row]) {
    let floor = rows.first().and_then(|r| r.latency).map(|l| l.total);
    let title = format!(
        "{:<10} {:^26} {:^19}    {:^35}",
        "", "trigger latency (µs)", "ratio to floor", "serial ingest"
    );
    println!("{}", title.trim_end());
    println!(
        "{:<10} {:>8} {:>8} {:>8} {:>9} {:>9}    {:>10} {:>7} {:>6} {:>9}",
        "contender", "p50", "p99", "max", "p50", "p99", "lines/s", "MB/s", "CPU%", "CPU ms/MB"
    );
    for row in rows {
        let latency = match (row.latency.map(|l| l.total), floor) {
            (Some(l), Some(f)) => format!(
                "{:>8.1} {:>8.1} {:>8.1} {:>8.2}× {:>8.2}×",
                us(l.p50),
                us(l.p99),
                us(l.max),
                l.p50 as f64 / f.p50 as f64,
                l.p99 as f64 / f.p99 as f64
            ),
            _ => format!("{:>8} {:>8} {:>8} {:>9} {:>9}", "-", "-", "-", "-", "-"),
        };
        let ingest = match row.ingest {
            Some(t) => format!(
                "{:>10.0} {:>7.1} {:>6.0} {:>9.1}",
                t.lines_per_s(),
                t.mb_per_s(),
                t.cpu_percent(),
                t.cpu_ms_per_mb()
            ),
            None => format!("{:>10} {:>7} {:>6} {:>9}", "-", "-", "-", "-"),
        };
        println!("{:<10} {latency}    {ingest}", row.name);
    }
}

/// Prints the parts of the latency, for the contenders whose parts are known.
pub fn print_parts(rows: &[Row]) {
    println!("where the time goes, p50 / p99 (µs):");
    println!(
        "{:<10} {:>22} {:>22} {:>22}",
        "contender", "write → read returned", "read → action started", "action (kill + reap)"
    );
    for row in rows {
        if let Some(parts) = row.latency.and_then(|l| l.parts) {
            let cell = |s: Summary| format!("{:.1} / {:.1}", us(s.p50), us(s.p99));
            println!(
                "{:<10} {:>22} {:>22} {:>22}",
                row.name,
                cell(parts[0]),
                cell(parts[1]),
                cell(parts[2])
            );
        }
    }
}

/// The targets for posrig.
pub const MAX_RATIO_TO_FLOOR: f64 = 1.3;
/// Ingest target, MB/s.
pub const MIN_INGEST_MB_PER_S: f64 = 50.0;

/// Prints whether posrig meets each target.
pub fn print_targets(floor: &Row, posrig: &Row) {
    println!("targets:");
    let verdict = |met: bool| if met { "met" } else { "MISSED" };
    match (floor.latency.map(|l| l.total), posrig.latency.map(|l| l.total)) {
        (Some(f), Some(p)) => {
            for (what, posrig_ns, floor_ns) in [("p50", p.p50, f.p50), ("p99", p.p99, f.p99)] {
                let ratio = posrig_ns as f64 / floor_ns as f64;
                println!(
                    "  posrig trigger latency {what} ≤ {MAX_RATIO_TO_FLOOR}× floor: {} ({ratio:.2}×: {:.1} µs vs {:.1} µs)",
                    verdict(ratio <= MAX_RATIO_TO_FLOOR),
                    us(posrig_ns),
                    us(floor_ns)
                );
            }
        }
        _ => println!("  posrig trigger latency ≤ {MAX_RATIO_TO_FLOOR}× floor: NOT MEASURED"),
    }
    match posrig.ingest {
        Some(t) => println!(
            "  posrig ingest ≥ {MIN_INGEST_MB_PER_S} MB/s: {} ({:.1} MB/s)",
            verdict(t.mb_per_s() >= MIN_INGEST_MB_PER_S),
            t.mb_per_s()
        ),
        None => println!("  posrig ingest ≥ {MIN_INGEST_MB_PER_S} MB/s: NOT MEASURED"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let latencies: Vec<u64> = (1..=1000).rev().collect();
        let summary = Summary::of(&latencies).unwrap();
        assert_eq!((summary.p50, summary.p99, summary.max), (500, 990, 1000));
        assert!(Summary::of(&[]).is_none());
        assert_eq!(Summary::of(&[7]).unwrap().p99, 7);
    }
}
