//! A decoded ISO 8583 message: TPDU, header, MTI and the fields that are present.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The value of one field: text for n, z, an and ans fields, bytes for b fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Value {
    /// Digits or ASCII text.
    Text(String),
    /// Raw bytes.
    Bytes(Vec<u8>),
}

impl Value {
    /// The text, if this is a text value.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Value::Text(text) => Some(text),
            Value::Bytes(_) => None,
        }
    }

    /// The bytes, if this is a binary value.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Bytes(bytes) => Some(bytes),
            Value::Text(_) => None,
        }
    }
}

impl From<&str> for Value {
    fn from(text: &str) -> Self {
        Value::Text(text.to_string())
    }
}

impl From<String> for Value {
    fn from(text: String) -> Self {
        Value::Text(text)
    }
}

impl From<Vec<u8>> for Value {
    fn from(bytes: Vec<u8>) -> Self {
        Value::Bytes(bytes)
    }
}

/// One ISO 8583 message.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Message {
    /// Transport protocol data unit (5 bytes in CUP framing).
    pub tpdu: Vec<u8>,
    /// Opaque header echoed by the host.
    pub header: Vec<u8>,
    /// Message type indicator, four digits such as "0200".
    pub mti: String,
    /// Fields present, by number.
    pub fields: BTreeMap<u8, Value>,
}

impl Message {
    /// A message of type `mti` with the given TPDU and header and no fields.
    pub fn new(mti: &str, tpdu: &[u8], header: &[u8]) -> Message {
        Message {
            tpdu: tpdu.to_vec(),
            header: header.to_vec(),
            mti: mti.to_string(),
            fields: BTreeMap::new(),
        }
    }

    /// Sets field `number`, replacing any earlier value.
    pub fn set(&mut self, number: u8, value: impl Into<Value>) -> &mut Self {
        self.fields.insert(number, value.into());
        self
    }

    /// Removes field `number`.
    pub fn remove(&mut self, number: u8) -> Option<Value> {
        self.fields.remove(&number)
    }

    /// True when field `number` is present.
    pub fn has(&self, number: u8) -> bool {
        self.fields.contains_key(&number)
    }

    /// The text of field `number`, if present and textual.
    pub fn text(&self, number: u8) -> Option<&str> {
        self.fields.get(&number).and_then(Value::as_text)
    }

    /// The bytes of field `number`, if present and binary.
    pub fn bytes(&self, number: u8) -> Option<&[u8]> {
        self.fields.get(&number).and_then(Value::as_bytes)
    }

    /// The TPDU of a reply to this message: destination and source swapped.
    pub fn reply_tpdu(&self) -> Vec<u8> {
        let mut tpdu = self.tpdu.clone();
        if tpdu.len() == 5 {
            tpdu.swap(1, 3);
            tpdu.swap(2, 4);
        }
        tpdu
    }

    /// A reply skeleton: MTI with the response digit set, swapped TPDU, same header.
    pub fn reply(&self) -> Message {
        let mut mti = self.mti.clone();
        if let Some(third) = mti.get(2..3).and_then(|d| d.parse::<u8>().ok()) {
            mti.replace_range(2..3, &((third + 1) % 10).to_string());
        }
        Message::new(&mti, &self.reply_tpdu(), &self.header)
    }
}
