//! Errors of the codec: each names the file, field or byte offset a person has to look at.

use std::fmt;
use std::path::PathBuf;

/// A spec file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// The file could not be read.
    #[error("cannot read the message spec {path}: {reason}")]
    Read {
        /// The spec file.
        path: PathBuf,
        /// Why reading failed.
        reason: String,
    },
    /// The file is not valid TOML or has unknown or missing keys.
    #[error("{path}:{line}: {reason}")]
    Syntax {
        /// The spec file.
        path: PathBuf,
        /// 1-based line of the problem (0 when unknown).
        line: usize,
        /// What the parser said.
        reason: String,
    },
    /// The file parses but describes something the codec cannot do.
    #[error("{path}: {place}: {reason}")]
    Invalid {
        /// The spec file.
        path: PathBuf,
        /// The table at fault, e.g. `[fields.60]`.
        place: String,
        /// What is wrong.
        reason: String,
    },
}

/// Where in a frame a decoding problem was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    /// The big-endian length prefix of the TCP frame.
    LengthPrefix,
    /// The 5-byte TPDU.
    Tpdu,
    /// The opaque header.
    Header,
    /// The BCD message type indicator.
    Mti,
    /// The primary bitmap.
    Bitmap,
    /// A data field.
    Field {
        /// Field number.
        number: u8,
        /// Field name from the spec.
        name: String,
    },
    /// Bytes after the last field.
    Trailing,
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Place::LengthPrefix => write!(f, "length prefix"),
            Place::Tpdu => write!(f, "TPDU"),
            Place::Header => write!(f, "header"),
            Place::Mti => write!(f, "MTI"),
            Place::Bitmap => write!(f, "bitmap"),
            Place::Field { number, name } => write!(f, "field {number} ({name})"),
            Place::Trailing => write!(f, "end of message"),
        }
    }
}

/// A frame that does not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{place} at byte {offset}: {problem}")]
pub struct DecodeError {
    /// The part of the message at fault.
    pub place: Place,
    /// Byte offset from the start of the decoded buffer.
    pub offset: usize,
    /// What is wrong, in words.
    pub problem: String,
}

/// A message that cannot be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{place}: {problem}")]
pub struct EncodeError {
    /// The part of the message at fault.
    pub place: Place,
    /// What is wrong, in words.
    pub problem: String,
}

/// A MAC key that is not 16 hexadecimal characters.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a MAC key must be 16 hexadecimal characters (8 bytes), got {0:?}")]
pub struct KeyError(pub String);
