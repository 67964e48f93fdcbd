//! Non-volatile memory modelled as flash: the firmware works on a RAM image, and only what it
//! flushes survives a power cut (SIGKILL). A flush takes the configured programming time and is
//! atomic: the whole image, or the previous one, never half.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A reversal waiting to be delivered: everything needed to rebuild the 0400 (rule 4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReversalRecord {
    /// Processing code of the original (000000 sale, 200000 void).
    pub processing_code: String,
    /// Card number, field 2.
    pub pan: String,
    /// Amount in fen, field 4 (12 digits).
    pub amount: String,
    /// STAN of the original, field 11.
    pub stan: String,
    /// Expiry, field 14.
    pub expiry: String,
    /// Entry mode, field 22.
    pub entry_mode: String,
    /// Condition code, field 25.
    pub condition: String,
    /// Authorization code, field 38, once one was received.
    pub auth_code: Option<String>,
    /// Terminal id, field 41.
    pub tid: String,
    /// Merchant id, field 42.
    pub mid: String,
    /// Currency, field 49.
    pub currency: String,
    /// ICC data for the reversal, field 55, hex.
    pub icc: Option<String>,
    /// Field 60 of the original.
    pub field60: String,
    /// Field 61 of the original (a void).
    pub field61: Option<String>,
    /// Reason, field 39 of the 0400: 98, 96, A0 or 06.
    pub reason: String,
    /// Attempts that reached the host and were not accepted.
    pub attempts: u32,
    /// True once N attempts failed and the exhaustion policy keeps it.
    pub exhausted: bool,
}

/// What a committed transaction was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecordKind {
    /// A purchase.
    Sale,
    /// A void of an earlier purchase.
    Void,
}

/// A committed (approved and completed) transaction of the current batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnRecord {
    /// Sale or void.
    pub kind: RecordKind,
    /// Its STAN.
    pub stan: String,
    /// Amount in fen.
    pub amount: u64,
    /// Card number.
    pub pan: String,
    /// Card expiry.
    pub expiry: String,
    /// Entry mode.
    pub entry_mode: String,
    /// Retrieval reference number from the host.
    pub rrn: String,
    /// Authorization code from the host.
    pub auth_code: String,
    /// Local date MMDD.
    pub date: String,
    /// For a sale: the STAN of the void that cancelled it.
    pub voided_by: Option<String>,
    /// For a void: the STAN of the sale it cancelled.
    pub original_stan: Option<String>,
}

/// The persistent state of the terminal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Image {
    /// The last STAN used.
    pub stan: u32,
    /// The current batch number.
    pub batch: u32,
    /// The pending reversal, if any.
    pub reversal: Option<ReversalRecord>,
    /// Committed transactions of the current batch.
    pub records: Vec<TxnRecord>,
}

impl Default for Image {
    fn default() -> Self {
        Image {
            stan: 0,
            batch: 1,
            reversal: None,
            records: Vec::new(),
        }
    }
}

/// The flash: a RAM image and the file that holds what was flushed.
pub struct Nvm {
    path: PathBuf,
    /// The working copy; changes are lost at power-off unless flushed.
    pub ram: Image,
    flash_write: Duration,
}

impl Nvm {
    /// Opens the NVM in `dir` (created if needed) and loads the last flushed image.
    pub fn open(dir: &Path, flash_write: Duration) -> Result<Nvm, String> {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create NVM folder {}: {e}", dir.display()))?;
        let path = dir.join("nvm.json");
        let ram = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| format!("NVM image {} is unreadable: {e}", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Image::default(),
            Err(e) => return Err(format!("cannot read NVM image {}: {e}", path.display())),
        };
        Ok(Nvm {
            path,
            ram,
            flash_write,
        })
    }

    /// Programs the RAM image into flash. Takes the flash write time; a power cut before it ends
    /// leaves the previous image.
    pub fn flush(&self) -> Result<(), String> {
        let bytes = serde_json::to_vec_pretty(&self.ram).map_err(|e| format!("cannot serialise NVM: {e}"))?;
        std::thread::sleep(self.flash_write);
        let staging = self.path.with_extension("json.new");
        let mut file = std::fs::File::create(&staging)
            .map_err(|e| format!("cannot write NVM {}: {e}", staging.display()))?;
        file.write_all(&bytes)
            .map_err(|e| format!("cannot write NVM {}: {e}", staging.display()))?;
        std::fs::rename(&staging, &self.path)
            .map_err(|e| format!("cannot commit NVM {}: {e}", self.path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_flushed_state_survives_a_reopen() {
        let dir = std::env::temp_dir().join(format!("posterm-nvm-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut nvm = Nvm::open(&dir, Duration::ZERO).unwrap();
        nvm.ram.stan = 5;
        nvm.flush().unwrap();
        nvm.ram.stan = 6;
        let reopened = Nvm::open(&dir, Duration::ZERO).unwrap();
        assert_eq!(reopened.ram.stan, 5);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
