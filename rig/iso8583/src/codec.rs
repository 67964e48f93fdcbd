//! Encoding and decoding of messages by the spec.

use std::sync::Arc;

use crate::bcd;
use crate::error::{DecodeError, EncodeError, Place};
use crate::message::{Message, Value};
use crate::spec::{FieldSpec, Format, LengthRule, Spec};

/// Bytes of the primary bitmap.
const BITMAP_BYTES: usize = 8;
/// Bytes of the BCD MTI.
const MTI_BYTES: usize = 2;

/// Encodes and decodes messages by one spec. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Codec {
    spec: Arc<Spec>,
}

impl Codec {
    /// A codec for `spec`.
    pub fn new(spec: Spec) -> Codec {
        Codec { spec: Arc::new(spec) }
    }

    /// The spec this codec follows.
    pub fn spec(&self) -> &Spec {
        &self.spec
    }

    /// Offset of the MTI in an encoded message (after TPDU and header).
    pub fn mti_offset(&self) -> usize {
        self.spec.frame.tpdu_bytes + self.spec.frame.header_bytes
    }

    /// Encodes `message` (without the TCP length prefix).
    pub fn encode(&self, message: &Message) -> Result<Vec<u8>, EncodeError> {
        let frame = &self.spec.frame;
        check_exact(&message.tpdu, frame.tpdu_bytes, Place::Tpdu)?;
        check_exact(&message.header, frame.header_bytes, Place::Header)?;
        let mut out = Vec::with_capacity(128);
        out.extend_from_slice(&message.tpdu);
        out.extend_from_slice(&message.header);
        if message.mti.len() != 4 {
            return Err(EncodeError {
                place: Place::Mti,
                problem: format!("an MTI has 4 digits, got {:?}", message.mti),
            });
        }
        out.extend(bcd::pack(&message.mti, false, false).map_err(|c| EncodeError {
            place: Place::Mti,
            problem: format!("{c:?} is not a digit"),
        })?);
        let mut bitmap = [0u8; BITMAP_BYTES];
        for &number in message.fields.keys() {
            if !(2..=64).contains(&number) {
                return Err(EncodeError {
                    place: Place::Bitmap,
                    problem: format!("field {number} is outside the primary bitmap (2 to 64)"),
                });
            }
            let bit = usize::from(number - 1);
            bitmap[bit / 8] |= 0x80 >> (bit % 8);
        }
        out.extend_from_slice(&bitmap);
        for (&number, value) in &message.fields {
            let spec = self.spec.field(number).ok_or_else(|| EncodeError {
                place: Place::Bitmap,
                problem: format!(
                    "field {number} is not defined in the spec {}",
                    self.spec.source.display()
                ),
            })?;
            encode_field(number, spec, value, &mut out)?;
        }
        Ok(out)
    }

    /// Encodes `message` with the TCP length prefix in front.
    pub fn encode_frame(&self, message: &Message) -> Result<Vec<u8>, EncodeError> {
        self.frame(self.encode(message)?)
    }

    /// Puts the TCP length prefix in front of an encoded message.
    pub fn frame(&self, body: Vec<u8>) -> Result<Vec<u8>, EncodeError> {
        let prefix_bytes = self.spec.frame.length_prefix_bytes;
        if body.len() >> (8 * prefix_bytes) != 0 {
            return Err(EncodeError {
                place: Place::LengthPrefix,
                problem: format!("{} bytes do not fit a {prefix_bytes}-byte length", body.len()),
            });
        }
        let mut out = body.len().to_be_bytes()[8 - prefix_bytes..].to_vec();
        out.extend(body);
        Ok(out)
    }

    /// Decodes a message (without the TCP length prefix). Never panics on any input.
    pub fn decode(&self, bytes: &[u8]) -> Result<Message, DecodeError> {
        let frame = &self.spec.frame;
        let mut reader = Reader { bytes, at: 0 };
        let tpdu = reader.take(frame.tpdu_bytes, &Place::Tpdu)?.to_vec();
        let header = reader.take(frame.header_bytes, &Place::Header)?.to_vec();
        let mti_at = reader.at;
        let mti_raw = reader.take(MTI_BYTES, &Place::Mti)?;
        let mti = bcd::unpack(mti_raw, 4, false, false).map_err(|nibble| DecodeError {
            place: Place::Mti,
            offset: mti_at + nibble / 2,
            problem: "the MTI is not BCD digits".into(),
        })?;
        let bitmap_at = reader.at;
        let bitmap = reader.take(BITMAP_BYTES, &Place::Bitmap)?;
        if bitmap[0] & 0x80 != 0 {
            return Err(DecodeError {
                place: Place::Bitmap,
                offset: bitmap_at,
                problem: "bit 1 announces a secondary bitmap, which this spec does not use".into(),
            });
        }
        let present: Vec<u8> = (2..=64u8)
            .filter(|n| {
                let bit = usize::from(n - 1);
                bitmap[bit / 8] & (0x80 >> (bit % 8)) != 0
            })
            .collect();
        let mut message = Message {
            tpdu,
            header,
            mti,
            ..Message::default()
        };
        for number in present {
            let spec = self.spec.field(number).ok_or_else(|| DecodeError {
                place: Place::Bitmap,
                offset: bitmap_at + usize::from(number - 1) / 8,
                problem: format!(
                    "the bitmap sets field {number}, which the spec {} does not define",
                    self.spec.source.display()
                ),
            })?;
            let place = Place::Field {
                number,
                name: spec.name.clone(),
            };
            let value = decode_field(spec, &mut reader, &place)?;
            message.fields.insert(number, value);
        }
        if reader.at != bytes.len() {
            return Err(DecodeError {
                place: Place::Trailing,
                offset: reader.at,
                problem: format!(
                    "{} bytes are left over after the last field",
                    bytes.len() - reader.at
                ),
            });
        }
        Ok(message)
    }

    /// Splits one length-prefixed frame off the front of `buffer`: `None` when more bytes are
    /// needed, otherwise the message body and the number of bytes consumed.
    pub fn split_frame<'a>(&self, buffer: &'a [u8]) -> Option<(&'a [u8], usize)> {
        let prefix = self.spec.frame.length_prefix_bytes;
        if buffer.len() < prefix {
            return None;
        }
        let length = buffer[..prefix]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        let end = prefix + length;
        (buffer.len() >= end).then(|| (&buffer[prefix..end], end))
    }

    /// The value of part `part` (1-based, as in "60.2") of numeric field `number`, if the field is
    /// present and long enough.
    pub fn part<'m>(&self, message: &'m Message, number: u8, part: usize) -> Option<&'m str> {
        let parts = &self.spec.field(number)?.parts;
        let start: usize = parts.get(..part.checked_sub(1)?)?.iter().map(|p| p.digits).sum();
        let len = parts.get(part - 1)?.digits;
        message.text(number)?.get(start..start + len)
    }
}

fn check_exact(bytes: &[u8], expected: usize, place: Place) -> Result<(), EncodeError> {
    if bytes.len() == expected {
        Ok(())
    } else {
        Err(EncodeError {
            place,
            problem: format!("must be {expected} bytes, got {}", bytes.len()),
        })
    }
}

fn encode_field(number: u8, spec: &FieldSpec, value: &Value, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    let fail = |problem: String| EncodeError {
        place: Place::Field {
            number,
            name: spec.name.clone(),
        },
        problem,
    };
    let (units, payload) = match (spec.format, value) {
        (Format::N | Format::Z, Value::Text(text)) => {
            let left_pad = spec.length == LengthRule::Fixed;
            let packed = bcd::pack(text, left_pad, spec.format == Format::Z)
                .map_err(|c| fail(format!("{c:?} is not allowed in a {:?} field", spec.format)))?;
            (text.len(), packed)
        }
        (Format::An | Format::Ans, Value::Text(text)) => {
            if let Some(c) = text.chars().find(|&c| !allowed_char(spec.format, c)) {
                return Err(fail(format!("{c:?} is not allowed in a {:?} field", spec.format)));
            }
            (text.len(), text.as_bytes().to_vec())
        }
        (Format::B, Value::Bytes(bytes)) => (bytes.len(), bytes.clone()),
        (Format::B, Value::Text(_)) => return Err(fail("a binary field needs bytes, got text".into())),
        (_, Value::Bytes(_)) => return Err(fail("a text field needs text, got bytes".into())),
    };
    match spec.length {
        LengthRule::Fixed if units != spec.max => {
            return Err(fail(format!("must be exactly {} long, got {units}", spec.max)))
        }
        _ if units > spec.max => return Err(fail(format!("at most {} long, got {units}", spec.max))),
        LengthRule::Fixed => {}
        rule => out.extend(bcd::write_length(units, rule.prefix_bytes())),
    }
    out.extend(payload);
    Ok(())
}

fn allowed_char(format: Format, c: char) -> bool {
    match format {
        Format::An => c.is_ascii_alphanumeric() || c == ' ',
        _ => (' '..='~').contains(&c),
    }
}

fn decode_field(spec: &FieldSpec, reader: &mut Reader<'_>, place: &Place) -> Result<Value, DecodeError> {
    let length_at = reader.at;
    let units = match spec.length {
        LengthRule::Fixed => spec.max,
        rule => {
            let raw = reader.take(rule.prefix_bytes(), place)?;
            let units = bcd::read_length(raw).map_err(|()| DecodeError {
                place: place.clone(),
                offset: length_at,
                problem: format!("the length prefix {} is not BCD", hex::encode_upper(raw)),
            })?;
            if units > spec.max {
                return Err(DecodeError {
                    place: place.clone(),
                    offset: length_at,
                    problem: format!("length {units} exceeds the maximum {}", spec.max),
                });
            }
            units
        }
    };
    let value_at = reader.at;
    let raw = reader.take(spec.value_bytes(units), place)?;
    match spec.format {
        Format::N | Format::Z => {
            let left_pad = spec.length == LengthRule::Fixed;
            bcd::unpack(raw, units, left_pad, spec.format == Format::Z)
                .map(Value::Text)
                .map_err(|nibble| DecodeError {
                    place: place.clone(),
                    offset: value_at + nibble / 2,
                    problem: format!(
                        "byte {:02X} is not valid packed BCD for a {:?} field",
                        raw[nibble / 2],
                        spec.format
                    ),
                })
        }
        Format::An | Format::Ans => match raw
            .iter()
            .position(|&b| !allowed_char(spec.format, char::from(b)))
        {
            Some(i) => Err(DecodeError {
                place: place.clone(),
                offset: value_at + i,
                problem: format!("byte {:02X} is not allowed in a {:?} field", raw[i], spec.format),
            }),
            None => Ok(Value::Text(raw.iter().map(|&b| char::from(b)).collect())),
        },
        Format::B => Ok(Value::Bytes(raw.to_vec())),
    }
}

/// A cursor over the bytes being decoded.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, count: usize, place: &Place) -> Result<&'a [u8], DecodeError> {
        let end = self.at.checked_add(count).filter(|&end| end <= self.bytes.len());
        match end {
            Some(end) => {
                let slice = &self.bytes[self.at..end];
                self.at = end;
                Ok(slice)
            }
            None => Err(DecodeError {
                place: place.clone(),
                offset: self.at,
                problem: format!(
                    "needs {count} bytes but the message ends after {}",
                    self.bytes.len() - self.at
                ),
            }),
        }
    }
}
