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
        let card =
            toml::from_str(&text).map_err(|e| format!("card profile {}: {}", path.display(), e.message()))?;
        Ok((path, card))
    }
}
