//! The terminal's side of the line: posterm-like log lines (`[SSSSS.mmm] TAG text`), the trigger
//! line, the end-of-stream line, and a seeded generator so every contender gets the same stream.

/// The console line a trigger waits for, as a regex: the 0200 (a sale) left the terminal.
pub const TRIGGER_PATTERN: &str = r"\] TXN sent mti=0200 stan=\d{6}";

/// The same line as a plain substring, for the floor.
pub const TRIGGER_NEEDLE: &[u8] = b"] TXN sent mti=0200 stan=";

/// What the last line of a stream ends with.
pub const END_TAG: &str = "BENCH end of stream";

/// The last line of a stream, as a regex (for the Python peers).
pub const END_PATTERN: &str = r"\] BENCH end of stream";

/// A small seeded generator (SplitMix64): the same seed gives the same stream.
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `low..high`.
    pub fn between(&mut self, low: u64, high: u64) -> u64 {
        low + self.next() % (high - low)
    }
}

/// One log line as posterm writes it.
fn line(uptime_ms: u64, tag: &str, text: &str) -> String {
    format!("[{:5}.{:03}] {tag} {text}\n", uptime_ms / 1000, uptime_ms % 1000)
}

/// The trigger line, with this STAN.
pub fn trigger_line(uptime_ms: u64, stan: u64) -> String {
    line(
        uptime_ms,
        "TXN",
        &format!("sent mti=0200 stan={:06}", stan % 1_000_000),
    )
}

/// The last line of a stream.
pub fn end_line(uptime_ms: u64) -> String {
    line(uptime_ms, "BENCH", "end of stream")
}

/// A random posterm log line: every event of the posterm profile, and lines no pattern matches,
/// but never the trigger line.
pub fn log_line(rng: &mut Rng, uptime_ms: u64) -> String {
    let stan = format!("{:06}", rng.between(1, 1_000_000));
    let other = format!("{:06}", rng.between(1, 1_000_000));
    let amount = rng.between(100, 500_000);
    let auth = format!("{:06}", rng.between(0, 1_000_000));
    let rrn = format!("{:012}", rng.between(0, 1_000_000_000_000));
    let (tag, text) = match rng.between(0, 36) {
        0 => (
            "BOOT",
            format!("posterm/0.1.0 tid=POS{:05}", rng.between(0, 100_000)),
        ),
        1 => ("READY", String::new()),
        2 => ("SIGNON", format!("ok stan={stan}")),
        3 => ("SIGNON", format!("failed stan={stan} rc=91")),
        4 => (
            "CARD",
            format!(
                "read name=\"CUP debit {}\" pan=622202******{:04}",
                rng.between(1, 9),
                rng.between(0, 10_000)
            ),
        ),
        5 => ("CARD", format!("removed stan={stan}")),
        6 => ("TXN", format!("prepared stan={stan} type=sale amount={amount}")),
        // A reversal leaving: the trigger waits for a 0200, not this.
        7 => ("TXN", format!("sent mti=0400 stan={stan}")),
        8 => ("TXN", format!("reply mti=0210 stan={stan} rc=00")),
        9 => ("TXN", format!("timeout stan={stan} why=\"no reply within 30 s\"")),
        10 => ("TXN", format!("mac_error stan={stan}")),
        11 => ("TXN", format!("mismatch stan={stan} field=4")),
        12 => ("TXN", format!("approval_pending stan={stan} auth={auth}")),
        13 => ("EMV", format!("second_generate_ac=TC stan={stan}")),
        14 => (
            "APPROVED",
            format!("stan={stan} amount={amount} auth={auth} rrn={rrn}"),
        ),
        15 => ("DECLINED", format!("stan={stan} rc=51")),
        16 => (
            "TERMINATED",
            format!("stan={stan} why=\"card removed before completion\""),
        ),
        17 => (
            "REFUSED",
            format!("stan=- original={other} why=\"already voided\""),
        ),
        18 => ("REVERSAL", format!("pending stan={stan} reason=timeout")),
        19 => ("REVERSAL", format!("done stan={stan} rc=00")),
        20 => ("REVERSAL", format!("rejected stan={stan} rc=96 attempt=2/3")),
        21 => (
            "REVERSAL",
            format!("unreachable stan={stan} why=\"connection refused\""),
        ),
        22 => ("REVERSAL", format!("failed stan={stan} policy=keep")),
        23 => ("VOIDED", format!("stan={stan} original={other} amount={amount}")),
        24 => (
            "RECEIPT",
            format!(
                "type=sale stan={stan} amount={}.{:02}",
                amount / 100,
                amount % 100
            ),
        ),
        25 => (
            "SETTLED",
            format!(
                "batch=000012 count={} amount={amount} balanced=yes",
                rng.between(1, 99)
            ),
        ),
        26 => ("SETTLE", "failed batch=000012 rc=95".to_string()),
        27 => (
            "STATUS",
            format!("stan={stan} batch=000012 signed_on=true records=7 reversal=none"),
        ),
        28 => ("ERROR", "sale needs an amount in fen, got \"12x\"".to_string()),
        29 => ("NVM", format!("stan={stan} batch=000012 records=3 reversal=none")),
        30 => ("CMD", format!("sale amount={amount}")),
        31 => (
            "TXN",
            "garbled reply ignored: field 39 is not numeric".to_string(),
        ),
        32 => ("TXN", "unexpected mti=0810 ignored".to_string()),
        33 => ("TXN", format!("resend stan={stan} (defect resend_on_timeout)")),
        34 => ("EMV", format!("second_generate_ac=AAC stan={stan}")),
        _ => ("CMD", "status".to_string()),
    };
    line(uptime_ms, tag, &text)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::path::Path;

    use posrig_core::profile::Profile;

    use super::*;

    #[test]
    fn the_stream_covers_every_profile_event_and_never_fires_the_trigger() {
        let profile_path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/terminals/posterm.toml");
        let profile = Profile::load(&profile_path).unwrap();
        let trigger = regex::Regex::new(TRIGGER_PATTERN).unwrap();
        let mut rng = Rng::new(7);
        let mut events = BTreeSet::new();
        for i in 0..20_000 {
            let text = log_line(&mut rng, i);
            assert!(!trigger.is_match(&text), "{text}");
            assert!(
                memchr::memmem::find(text.as_bytes(), TRIGGER_NEEDLE).is_none(),
                "{text}"
            );
            if let Some(event) = profile.parse(text.trim_end()) {
                events.insert(event.name);
            }
        }
        let text = std::fs::read_to_string(&profile_path).unwrap();
        let declared = text.matches("\nevent = ").count();
        assert_eq!(events.len(), declared, "events seen: {events:?}");
        assert!(trigger.is_match(&trigger_line(1234, 42)));
        assert_eq!(
            profile.parse(trigger_line(1234, 42).trim_end()).unwrap().name,
            "request_sent"
        );
    }
}
