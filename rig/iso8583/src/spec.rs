//! The message spec: which fields exist, their format and length rules, read from a TOML file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::SpecError;

/// How a field's value is written on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Decimal digits, packed BCD.
    N,
    /// Track data: digits and the separator 'D', packed BCD with 'D' as nibble 0xD.
    Z,
    /// ASCII letters, digits and spaces.
    An,
    /// Printable ASCII.
    Ans,
    /// Raw bytes.
    B,
}

/// How a field's length is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LengthRule {
    /// Exactly `max` units.
    Fixed,
    /// A 1-byte BCD length prefix.
    Llvar,
    /// A 2-byte BCD length prefix.
    Lllvar,
}

impl LengthRule {
    /// Bytes taken by the length prefix.
    pub fn prefix_bytes(self) -> usize {
        match self {
            LengthRule::Fixed => 0,
            LengthRule::Llvar => 1,
            LengthRule::Lllvar => 2,
        }
    }
}

/// A named slice of a numeric field (60.1, 61.2, ...), counted in digits.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Part {
    /// What the part holds, e.g. "batch".
    pub name: String,
    /// How many digits it takes.
    pub digits: usize,
}

/// One field of the spec.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldSpec {
    /// Human name used in error messages.
    pub name: String,
    /// Wire format.
    pub format: Format,
    /// Length rule.
    pub length: LengthRule,
    /// Maximum (or, for fixed fields, exact) length in units: digits for n/z, characters for an/ans,
    /// bytes for b.
    pub max: usize,
    /// Named sub-fields of a numeric field, in order.
    #[serde(default)]
    pub parts: Vec<Part>,
}

impl FieldSpec {
    /// Bytes the value of `units` units takes on the wire, prefix excluded.
    pub fn value_bytes(&self, units: usize) -> usize {
        match self.format {
            Format::N | Format::Z => units.div_ceil(2),
            Format::An | Format::Ans | Format::B => units,
        }
    }
}

/// Framing of a message on TCP.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FrameSpec {
    /// Bytes of the big-endian length prefix.
    pub length_prefix_bytes: usize,
    /// Bytes of the TPDU.
    pub tpdu_bytes: usize,
    /// Bytes of the opaque header after the TPDU.
    pub header_bytes: usize,
}

/// Which field carries the MAC and which messages carry none.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MacSpec {
    /// The MAC field number (64).
    pub field: u8,
    /// MTIs sent without a MAC.
    pub exempt_mtis: Vec<String>,
}

/// The whole message spec.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    /// TCP framing.
    pub frame: FrameSpec,
    /// MAC placement.
    pub mac: MacSpec,
    /// Fields by number.
    #[serde(deserialize_with = "numbered_fields")]
    pub fields: BTreeMap<u8, FieldSpec>,
    /// Where the spec was read from, for error messages.
    #[serde(skip)]
    pub source: PathBuf,
}

/// Reads the `[fields.N]` tables, whose keys TOML gives as strings, into a map keyed by number.
fn numbered_fields<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<BTreeMap<u8, FieldSpec>, D::Error> {
    let by_name = BTreeMap::<String, FieldSpec>::deserialize(deserializer)?;
    by_name
        .into_iter()
        .map(|(key, field)| match key.parse::<u8>() {
            Ok(number) => Ok((number, field)),
            Err(_) => Err(serde::de::Error::custom(format!(
                "[fields.{key}]: a field is named by its number, 2 to 64"
            ))),
        })
        .collect()
}

impl Spec {
    /// Reads and validates a spec file.
    pub fn load(path: impl AsRef<Path>) -> Result<Spec, SpecError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| SpecError::Read {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        Spec::parse(&text, path)
    }

    /// Parses and validates spec text; `path` is only used to name the file in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Spec, SpecError> {
        let mut spec: Spec = toml::from_str(text).map_err(|e| SpecError::Syntax {
            path: path.to_path_buf(),
            line: e
                .span()
                .map(|span| text[..span.start].matches('\n').count() + 1)
                .unwrap_or(0),
            reason: e.message().to_string(),
        })?;
        spec.source = path.to_path_buf();
        spec.validate()?;
        Ok(spec)
    }

    /// The spec of field `number`, if defined.
    pub fn field(&self, number: u8) -> Option<&FieldSpec> {
        self.fields.get(&number)
    }

    /// True when messages of this MTI carry no MAC.
    pub fn is_mac_exempt(&self, mti: &str) -> bool {
        self.mac.exempt_mtis.iter().any(|m| m == mti)
    }

    fn validate(&self) -> Result<(), SpecError> {
        let invalid = |field: u8, reason: String| SpecError::Invalid {
            path: self.source.clone(),
            place: format!("[fields.{field}]"),
            reason,
        };
        for (&number, field) in &self.fields {
            if !(2..=64).contains(&number) {
                return Err(invalid(
                    number,
                    "only fields 2 to 64 of the primary bitmap are supported".into(),
                ));
            }
            let limit = match field.length {
                LengthRule::Fixed => 999,
                LengthRule::Llvar => 99,
                LengthRule::Lllvar => 9999,
            };
            if field.max == 0 || field.max > limit {
                return Err(invalid(
                    number,
                    format!(
                        "max = {} is out of range for a {:?} field (1 to {limit})",
                        field.max, field.length
                    ),
                ));
            }
            let part_digits: usize = field.parts.iter().map(|p| p.digits).sum();
            if !field.parts.is_empty() && field.format != Format::N {
                return Err(invalid(number, "only numeric fields can have parts".into()));
            }
            if part_digits > field.max {
                return Err(invalid(
                    number,
                    format!(
                        "its parts add up to {part_digits} digits, more than max = {}",
                        field.max
                    ),
                ));
            }
        }
        match self.fields.get(&self.mac.field) {
            Some(f) if f.format == Format::B && f.length == LengthRule::Fixed && f.max == 8 => {}
            _ => {
                return Err(invalid(
                    self.mac.field,
                    "the MAC field must be defined as fixed binary of 8 bytes".into(),
                ))
            }
        }
        if self.frame.length_prefix_bytes == 0 || self.frame.length_prefix_bytes > 4 {
            return Err(SpecError::Invalid {
                path: self.source.clone(),
                place: "[frame]".into(),
                reason: "length_prefix_bytes must be 1 to 4".into(),
            });
        }
        Ok(())
    }
}
