//! The card in the terminal's reader.

use crate::error::Result;

/// Pushes a test card into the reader and pulls it out (a solenoid or servo with a card-present
/// sensor on hardware, the card slot file on the simulator).
pub trait CardFeeder: Send + Sync {
    /// Inserts the card named `card` (a profile in the rig's card folder); returns once the card
    /// is confirmed in.
    fn insert(&self, card: &str) -> Result<()>;
    /// Pulls the card out; returns once the slot is confirmed empty.
    fn remove(&self) -> Result<()>;
    /// The card in the reader, if any.
    fn present(&self) -> Result<Option<String>>;
}
