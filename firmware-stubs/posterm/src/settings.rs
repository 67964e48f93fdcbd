//! The firmware's settings: identity, declared policies (domain.md §6), timings, and seedable
//! defects. Read from an optional TOML file, then `--set section.key=value` and `--defect NAME`.

use std::path::Path;

use serde::{Deserialize, Serialize};

/// Everything the firmware is configured with.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Who the terminal is on the wire.
    pub identity: Identity,
    /// Declared policies.
    pub policy: Policy,
    /// How long the simulated hardware takes.
    pub timing: Timing,
    /// Real-world bugs to seed, all off by default.
    pub defects: Defects,
}

/// Who the terminal is on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Identity {
    /// Terminal id, field 41 (8 characters).
    pub tid: String,
    /// Merchant id, field 42 (15 characters).
    pub mid: String,
    /// TPDU of requests, 10 hex digits.
    pub tpdu: String,
    /// Message header, 12 hex digits.
    pub header: String,
    /// MAC working key, 16 hex digits.
    pub mac_key: String,
    /// Currency, field 49.
    pub currency: String,
}

impl Default for Identity {
    fn default() -> Self {
        Identity {
            tid: "TERM0001".into(),
            mid: "MERCHANT0000001".into(),
            tpdu: "6000030000".into(),
            header: "603100000000".into(),
            mac_key: "0123456789ABCDEF".into(),
            currency: "156".into(),
        }
    }
}

/// When a pending reversal is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReversalTrigger {
    /// As soon as the failure is known, and again before the next online message if still pending.
    Immediate,
    /// Lazily: only before the next online message (sale, void, settlement).
    Lazy,
}

/// What happens after N failed reversal attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Exhaustion {
    /// Drop the reversal and print a notice for the operator.
    DropAndNotify,
    /// Keep the reversal and refuse financial transactions until it is delivered.
    KeepAndBlock,
}

/// Declared policies (domain.md §6).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Policy {
    /// T_resp: how long to wait for a reply, in milliseconds.
    pub response_timeout_ms: u64,
    /// N: reversal attempts before giving up (1 to 3).
    pub reversal_attempts: u32,
    /// Response codes of a 0410 that count as delivered.
    pub reversal_success_codes: Vec<String>,
    /// What happens after N failed attempts.
    pub exhaustion: Exhaustion,
    /// When a pending reversal is sent.
    pub reversal_trigger: ReversalTrigger,
    /// Also send a pending reversal right after boot.
    pub reversal_at_boot: bool,
    /// Reason code (field 39 of the 0400) for an approval that could not be completed: "96" or "06".
    pub completion_failure_code: String,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            response_timeout_ms: 2000,
            reversal_attempts: 3,
            reversal_success_codes: vec!["00".into()],
            exhaustion: Exhaustion::DropAndNotify,
            reversal_trigger: ReversalTrigger::Immediate,
            reversal_at_boot: true,
            completion_failure_code: "96".into(),
        }
    }
}

/// How long the simulated hardware takes, in milliseconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Timing {
    /// Programming time of one NVM flush: data is durable only when it ends.
    pub flash_write_ms: u64,
    /// Reading the card before the request (select, read records, 1st GENERATE AC).
    pub card_read_ms: u64,
    /// The 2nd GENERATE AC after the reply.
    pub second_generate_ac_ms: u64,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            flash_write_ms: 15,
            card_read_ms: 30,
            second_generate_ac_ms: 40,
        }
    }
}

/// Seedable defects: each is a bug real terminals have shipped with, and breaks a rule of
/// domain.md §3. All off by default.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Defects {
    /// Writes the reversal record after the request is on the socket, not before.
    /// Breaks rule 1 (write-ahead): a power cut right after the send loses it — a double charge.
    pub reversal_after_send: bool,
    /// Clears the reversal when the 0210 00 arrives and writes the approved record later, in a
    /// second step. Breaks rule 2 (atomic completion): a cut between the two leaves "approved at
    /// host, no log, no reversal".
    pub clear_reversal_before_log: bool,
    /// Keeps the reversal record in RAM only. Breaks rules 1 and 4: any power cut loses it.
    pub no_reversal_persist: bool,
    /// Re-sends the same 0200 (same STAN) once when the reply times out. Breaks rule 5.
    pub resend_on_timeout: bool,
    /// Starts the STAN from 1 at every boot instead of from the persisted value. Breaks rule 3.
    pub stan_reset_on_boot: bool,
    /// Abandons an approved sale without a reversal when the card is pulled before completion.
    /// Breaks the state machine (card removed → TO_REVERSE(96)) and invariant 6.
    pub no_reversal_on_card_removal: bool,
    /// Sends a void for an original it does not know instead of refusing it locally.
    /// Breaks the void rules ("unknown originals are refused locally with nothing sent").
    pub void_unknown_sent: bool,
}

impl Defects {
    /// The names of the defects, as `--defect` takes them.
    pub const NAMES: [&'static str; 7] = [
        "reversal_after_send",
        "clear_reversal_before_log",
        "no_reversal_persist",
        "resend_on_timeout",
        "stan_reset_on_boot",
        "no_reversal_on_card_removal",
        "void_unknown_sent",
    ];
}

impl Settings {
    /// Reads the settings file (if any), applies `key=value` overrides and turns on the named
    /// defects. Every error names the file or the override at fault.
    pub fn load(file: Option<&Path>, overrides: &[String], defects: &[String]) -> Result<Settings, String> {
        let mut table = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("cannot read settings {}: {e}", path.display()))?;
                text.parse::<toml::Table>()
                    .map_err(|e| format!("{}: {}", path.display(), e.message()))?
            }
            None => toml::Table::new(),
        };
        let defaults = toml::Table::try_from(Settings::default()).map_err(|e| e.to_string())?;
        for item in overrides {
            apply_override(&mut table, &defaults, item)?;
        }
        for name in defects {
            if !Defects::NAMES.contains(&name.as_str()) {
                return Err(format!(
                    "--defect {name}: unknown defect; known ones are {}",
                    Defects::NAMES.join(", ")
                ));
            }
            apply_override(&mut table, &defaults, &format!("defects.{name}=true"))?;
        }
        let settings: Settings = table.try_into().map_err(|e: toml::de::Error| {
            let origin = file.map_or("settings".to_string(), |p| p.display().to_string());
            format!("{origin}: {}", e.message())
        })?;
        settings.validate()?;
        Ok(settings)
    }

    fn validate(&self) -> Result<(), String> {
        let id = &self.identity;
        let check = |ok: bool, what: &str| if ok { Ok(()) } else { Err(what.to_string()) };
        let printable = |text: &str| text.chars().all(|c| (' '..='~').contains(&c));
        check(
            id.tid.len() == 8 && printable(&id.tid),
            "identity.tid must be 8 printable ASCII characters",
        )?;
        check(
            id.mid.len() == 15 && printable(&id.mid),
            "identity.mid must be 15 printable ASCII characters",
        )?;
        check(
            id.currency.len() == 3 && id.currency.chars().all(|c| c.is_ascii_digit()),
            "identity.currency must be 3 digits (156 for CNY)",
        )?;
        check(
            self.policy
                .reversal_success_codes
                .iter()
                .all(|c| c.len() == 2 && c.chars().all(|c| c.is_ascii_alphanumeric())),
            "policy.reversal_success_codes must be two-character response codes",
        )?;
        check(hex_of(&id.tpdu, 5), "identity.tpdu must be 10 hex digits")?;
        check(hex_of(&id.header, 6), "identity.header must be 12 hex digits")?;
        check(hex_of(&id.mac_key, 8), "identity.mac_key must be 16 hex digits")?;
        check(
            (1..=3).contains(&self.policy.reversal_attempts),
            "policy.reversal_attempts must be 1 to 3",
        )?;
        check(
            ["96", "06"].contains(&self.policy.completion_failure_code.as_str()),
            "policy.completion_failure_code must be \"96\" or \"06\"",
        )?;
        check(
            self.policy.response_timeout_ms > 0,
            "policy.response_timeout_ms must be positive",
        )
    }
}

fn hex_of(text: &str, bytes: usize) -> bool {
    text.len() == bytes * 2 && text.chars().all(|c| c.is_ascii_hexdigit())
}

/// Applies one `section.key=value` override. The value is taken as text where the setting is
/// text (so `identity.currency=156` stays "156"), and read as TOML otherwise (numbers, booleans,
/// lists); unknown keys are reported when the settings are read.
fn apply_override(table: &mut toml::Table, defaults: &toml::Table, item: &str) -> Result<(), String> {
    let (path, raw) = item
        .split_once('=')
        .ok_or_else(|| format!("--set {item}: expected section.key=value"))?;
    let (section, key) = path
        .trim()
        .split_once('.')
        .ok_or_else(|| format!("--set {item}: expected section.key=value"))?;
    let is_text = matches!(
        defaults.get(section).and_then(|s| s.get(key)),
        Some(toml::Value::String(_))
    );
    let unquoted = raw.trim().trim_matches('"').to_string();
    let value = if is_text {
        toml::Value::String(unquoted)
    } else {
        format!("v = {raw}")
            .parse::<toml::Table>()
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or(toml::Value::String(unquoted))
    };
    let section_table = table
        .entry(section.to_string())
        .or_insert_with(|| toml::Value::Table(toml::Table::new()))
        .as_table_mut()
        .ok_or_else(|| format!("--set {item}: {section} is not a section"))?;
    section_table.insert(key.to_string(), value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_and_defects_apply_on_top_of_the_defaults() {
        let settings = Settings::load(
            None,
            &[
                "policy.response_timeout_ms=500".into(),
                "policy.exhaustion=\"keep_and_block\"".into(),
            ],
            &["reversal_after_send".into()],
        )
        .unwrap();
        assert_eq!(settings.policy.response_timeout_ms, 500);
        assert_eq!(settings.policy.exhaustion, Exhaustion::KeepAndBlock);
        assert!(settings.defects.reversal_after_send);
        assert!(!settings.defects.clear_reversal_before_log);
    }

    #[test]
    fn bad_settings_are_named() {
        let unknown = Settings::load(None, &[], &["explode".into()]).unwrap_err();
        assert!(unknown.contains("unknown defect"), "{unknown}");
        let attempts = Settings::load(None, &["policy.reversal_attempts=7".into()], &[]).unwrap_err();
        assert!(attempts.contains("reversal_attempts"), "{attempts}");
        let currency = Settings::load(
            None,
            &["identity.currency=156".into(), "identity.tid=12345678".into()],
            &[],
        );
        assert_eq!(
            currency.unwrap().identity.currency,
            "156",
            "text settings stay text"
        );
        let typo = Settings::load(None, &["policy.reversal_atempts=2".into()], &[]).unwrap_err();
        assert!(typo.contains("reversal_atempts"), "{typo}");
    }
}
