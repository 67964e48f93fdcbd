//! The card slot and the cards that go in it.
//!
//! The slot is a file (`--card-slot`). It holds the path of the inserted card's profile
//! (`fixtures/cards/*.toml`); when it is missing or empty the slot is empty. Whoever plays the card
//! feeder — the rig's simulated feeder, a test, a person — writes it (atomically, by rename). The
//! slot lives outside the terminal, so a card stays inserted across a power cycle.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// What the card answers to the 2nd GENERATE AC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SecondGenerateAc {
    /// Transaction certificate: the card accepts the approval.
    Tc,
    /// Application authentication cryptogram: the card declines after the host approved.
    Aac,
}

/// A test card profile.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Card {
    /// What the card is for, in words.
    pub name: String,
    /// Card number.
    pub pan: String,
    /// Expiry YYMM.
    pub expiry: String,
    /// Track 2 equivalent data, 'D' as separator.
    pub track2: String,
    /// Card sequence number (3 digits).
    #[serde(default = "default_sequence")]
    pub sequence: String,
    /// Entry mode, field 22 (051 = chip).
    #[serde(default = "default_entry_mode")]
    pub entry_mode: String,
    /// ICC data sent in field 55, hex TLV.
    #[serde(default)]
    pub icc: String,
    /// The card's answer to the 2nd GENERATE AC.
    #[serde(default = "default_second_ac")]
    pub second_generate_ac: SecondGenerateAc,
}

impl Card {
    /// Checks every field against what the wire can carry; the error names the field.
    fn validate(&self) -> Result<(), String> {
        let digits = |text: &str| text.chars().all(|c| c.is_ascii_digit());
        let check = |ok: bool, problem: &str| if ok { Ok(()) } else { Err(problem.to_string()) };
        check(
            (12..=19).contains(&self.pan.len()) && digits(&self.pan),
            "pan must be 12 to 19 digits",
        )?;
        check(
            self.expiry.len() == 4 && digits(&self.expiry),
            "expiry must be 4 digits, YYMM",
        )?;
        check(
            self.track2.len() <= 37 && self.track2.chars().all(|c| c.is_ascii_digit() || c == 'D'),
            "track2 must be at most 37 digits with 'D' as the separator",
        )?;
        check(
            self.sequence.len() == 3 && digits(&self.sequence),
            "sequence must be 3 digits",
        )?;
        check(
            self.entry_mode.len() == 3 && digits(&self.entry_mode),
            "entry_mode must be 3 digits",
        )?;
        check(
            hex::decode(&self.icc).is_ok_and(|icc| icc.len() <= 255),
            "icc must be hexadecimal TLV of at most 255 bytes",
        )
    }
}

fn default_sequence() -> String {
    "001".into()
}

fn default_entry_mode() -> String {
    "051".into()
}

fn default_second_ac() -> SecondGenerateAc {
    SecondGenerateAc::Tc
}

/// The slot file.
pub struct CardSlot {
    path: PathBuf,
}

impl CardSlot {
    /// The slot at `path`.
    pub fn new(path: &Path) -> CardSlot {
        CardSlot {
            path: path.to_path_buf(),
        }
    }

    /// The path of the inserted card's profile, if a card is in.
    pub fn inserted(&self) -> Option<PathBuf> {
        let text = std::fs::read_to_string(&self.path).ok()?;
        let line = text.trim();
        (!line.is_empty()).then(|| PathBuf::from(line))
    }

    /// Reads the inserted card; an error says why (no card, unreadable profile).
    pub fn read(&self) -> Result<(PathBuf, Card), String> {
        let path = self.inserted().ok_or("no card in the slot")?;
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("card profile {}: {e}", path.display()))?;
        let card: Card =
            toml::from_str(&text).map_err(|e| format!("card profile {}: {}", path.display(), e.message()))?;
        card.validate()
            .map_err(|problem| format!("card profile {}: {problem}", path.display()))?;
        Ok((path, card))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn card(pan: &str, icc: &str) -> Card {
        Card {
            name: "test".into(),
            pan: pan.into(),
            expiry: "2912".into(),
            track2: format!("{pan}D2912"),
            sequence: "001".into(),
            entry_mode: "051".into(),
            icc: icc.into(),
            second_generate_ac: SecondGenerateAc::Tc,
        }
    }

    #[test]
    fn bad_card_profiles_are_refused_with_the_field_named() {
        assert!(card("6222021234567890123", "9F360200").validate().is_ok());
        assert!(card("aaaaaéééé", "").validate().unwrap_err().contains("pan"));
        assert!(card("6222021234567890123", "9F3")
            .validate()
            .unwrap_err()
            .contains("icc"));
    }
}
