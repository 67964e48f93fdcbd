//! The simulated terminal's card slot: a file naming the inserted card's profile (the contract
//! is in firmware-stubs/posterm/README.md). Writing it is pushing the card in; removing it is
//! pulling the card out.

use std::path::{Path, PathBuf};

use crate::capability::CardFeeder;
use crate::error::{Result, RigError};

/// The card feeder of the simulated terminal.
pub struct SimCardFeeder {
    slot: PathBuf,
    cards: PathBuf,
}

impl SimCardFeeder {
    /// A feeder writing `slot`, with card profiles `<cards>/<name>.toml`.
    pub fn new(slot: &Path, cards: &Path) -> SimCardFeeder {
        SimCardFeeder {
            slot: slot.to_path_buf(),
            cards: cards.to_path_buf(),
        }
    }

    fn fail(action: &str, reason: impl std::fmt::Display) -> RigError {
        RigError::actuator("card feeder (sim)", action, reason)
    }
}

impl CardFeeder for SimCardFeeder {
    fn insert(&self, card: &str) -> Result<()> {
        let profile = self.cards.join(format!("{card}.toml"));
        if !profile.is_file() {
            let known = known_cards(&self.cards).join(", ");
            return Err(SimCardFeeder::fail(
                "insert",
                format!("no card {card:?} in {} (known: {known})", self.cards.display()),
            ));
        }
        let staging = self.slot.with_extension("new");
        std::fs::write(&staging, profile.display().to_string())
            .and_then(|()| std::fs::rename(&staging, &self.slot))
            .map_err(|e| SimCardFeeder::fail("insert", e))?;
        match self.present()? {
            Some(inside) if inside == card => Ok(()),
            other => Err(SimCardFeeder::fail(
                "insert",
                format!("the slot reads {other:?} afterwards"),
            )),
        }
    }

    fn remove(&self) -> Result<()> {
        match std::fs::remove_file(&self.slot) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(SimCardFeeder::fail("remove", e)),
            _ => Ok(()),
        }
    }

    fn present(&self) -> Result<Option<String>> {
        let text = match std::fs::read_to_string(&self.slot) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(SimCardFeeder::fail("read the slot", e)),
        };
        let path = PathBuf::from(text.trim());
        Ok(path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .filter(|s| !s.is_empty()))
    }
}

fn known_cards(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let path = e.path();
            if path.extension()? != "toml" {
                return None;
            }
            Some(path.file_stem()?.to_string_lossy().into_owned())
        })
        .collect();
    names.sort();
    names
}
