//! CUP-style binary ISO 8583: a spec-driven codec and the CUP ECB MAC.
//!
//! One spec file (`fixtures/iso8583/cup.toml`) describes the framing and every field; the acquirer
//! host simulator, the terminal stub and the rig all read it, so nothing is hard-coded twice.
//! Malformed input of any kind gives an error naming the field and byte offset; decoding never
//! panics.

mod bcd;
mod codec;
mod error;
mod mac;
mod message;
mod spec;

pub use codec::Codec;
pub use error::{DecodeError, EncodeError, KeyError, Place, SpecError};
pub use mac::MacKey;
pub use message::{Message, Value};
pub use spec::{FieldSpec, Format, FrameSpec, LengthRule, MacSpec, Part, Spec};

impl Codec {
    /// Encodes `message` with its MAC field computed under `key` (unless its MTI is exempt), and
    /// stores the MAC in `message` too.
    pub fn encode_signed(&self, message: &mut Message, key: &MacKey) -> Result<Vec<u8>, EncodeError> {
        let mac_field = self.spec().mac.field;
        if self.spec().is_mac_exempt(&message.mti) {
            message.remove(mac_field);
            return self.encode(message);
        }
        message.set(mac_field, vec![0u8; 8]);
        let mut bytes = self.encode(message)?;
        let end = bytes.len() - 8;
        let mac = key.mac(&bytes[self.mti_offset()..end]);
        bytes[end..].copy_from_slice(&mac);
        message.set(mac_field, mac.to_vec());
        Ok(bytes)
    }

    /// Checks the MAC of an encoded message: `None` when the message carries no MAC field,
    /// otherwise whether it matches.
    pub fn verify_mac(&self, bytes: &[u8], message: &Message, key: &MacKey) -> Option<bool> {
        let mac = message.bytes(self.spec().mac.field)?;
        let end = bytes.len().checked_sub(8)?;
        let region = bytes.get(self.mti_offset()..end)?;
        Some(key.mac(region).as_slice() == mac)
    }
}
