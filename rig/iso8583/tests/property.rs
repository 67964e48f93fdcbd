//! Property tests of the spec-driven ISO 8583 codec, run against the real spec file
//! (`fixtures/iso8583/cup.toml`); the field table is read from the loaded `Spec`, never written here.
//!
//! What they show:
//! 1. `Codec::decode` never panics on any byte string (completely random, or a plausible TPDU,
//!    header, MTI and bitmap followed by random bytes). Every error's Display starts with the place at
//!    fault ("TPDU", "header", "MTI", "bitmap", "field N (name)" with the spec's name of field N, or
//!    "end of message"), followed by "at byte K" with K equal to the error's offset and at most the
//!    input length. Whatever does decode re-encodes to exactly the same bytes (the wire form is
//!    canonical).
//! 2. Round trip: any valid message (a random subset of the spec's fields holding random values that
//!    respect each field's format and length rule) encodes and decodes back to the same `Message`.
//!    `encode_signed` under a random `MacKey` gives bytes that `verify_mac` accepts (`Some(true)`),
//!    or, for MAC-exempt MTIs, carry no MAC (`None`). Changing any single byte of the MACed region
//!    (`Codec::mti_offset()` to the MAC) makes the message fail to decode or `verify_mac` give
//!    `Some(false)`; so does changing any byte of the MAC itself.
//! 3. Every strict prefix of a valid encoded message fails to decode, with an error whose offset is
//!    at most the prefix length.
//! 4. Changing random bytes of a valid encoded message (several at once, or each single byte in turn)
//!    never panics: it either fails to decode with a well-formed error, or decodes to a message that
//!    re-encodes to the changed bytes.
//! 5. `Codec::split_frame`, fed a length-prefixed message one more byte at a time, returns `None`
//!    until the frame is complete, then exactly the body and the frame length, also when the next
//!    frame's bytes follow.

use std::sync::LazyLock;

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::{select, Index};
use proptest::test_runner::TestCaseError;

use posrig_iso8583::{Codec, DecodeError, FieldSpec, Format, LengthRule, MacKey, Message, Spec, Value};

/// The codec for the real spec, loaded once.
static CODEC: LazyLock<Codec> = LazyLock::new(|| {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures/iso8583/cup.toml");
    Codec::new(Spec::load(path).unwrap_or_else(|e| panic!("{e}")))
});

fn spec() -> &'static Spec {
    CODEC.spec()
}

/// A proptest configuration with `cases` cases that writes no regression files.
fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Characters allowed in an `an` field.
const AN_CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789 ";

fn bytes_to_text(bytes: Vec<u8>) -> String {
    bytes.into_iter().map(char::from).collect()
}

/// Random valid values of one field: its format's alphabet, exactly `max` units when fixed,
/// 0 to `max` units when variable.
fn value_strategy(field: &FieldSpec) -> BoxedStrategy<Value> {
    let lengths = match field.length {
        LengthRule::Fixed => field.max..=field.max,
        LengthRule::Llvar | LengthRule::Lllvar => 0..=field.max,
    };
    match field.format {
        Format::N => vec(b'0'..=b'9', lengths)
            .prop_map(bytes_to_text)
            .prop_map(Value::Text)
            .boxed(),
        Format::Z => (vec(b'0'..=b'9', lengths), any::<Index>())
            .prop_map(|(mut digits, separator)| {
                if !digits.is_empty() {
                    let at = separator.index(digits.len());
                    digits[at] = b'D';
                }
                Value::Text(bytes_to_text(digits))
            })
            .boxed(),
        Format::An => vec(select(AN_CHARS), lengths)
            .prop_map(bytes_to_text)
            .prop_map(Value::Text)
            .boxed(),
        Format::Ans => vec(b' '..=b'~', lengths)
            .prop_map(bytes_to_text)
            .prop_map(Value::Text)
            .boxed(),
        Format::B => vec(any::<u8>(), lengths).prop_map(Value::Bytes).boxed(),
    }
}

/// A random four-digit MTI, sometimes one of the spec's MAC-exempt MTIs.
fn mti_strategy() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => vec(b'0'..=b'9', 4).prop_map(bytes_to_text),
        1 => select(spec().mac.exempt_mtis.clone()),
    ]
}

/// Random valid messages: random TPDU and header of the spec's sizes, a random MTI and a random
/// subset of the spec's fields with valid values.
fn message_strategy() -> impl Strategy<Value = Message> {
    let frame = &spec().frame;
    let fields: Vec<_> = spec()
        .fields
        .iter()
        .map(|(&number, field)| proptest::option::of(value_strategy(field).prop_map(move |v| (number, v))))
        .collect();
    (
        vec(any::<u8>(), frame.tpdu_bytes),
        vec(any::<u8>(), frame.header_bytes),
        mti_strategy(),
        fields,
    )
        .prop_map(|(tpdu, header, mti, fields)| {
            let mut message = Message::new(&mti, &tpdu, &header);
            for (number, value) in fields.into_iter().flatten() {
                message.set(number, value);
            }
            message
        })
}

/// A valid message together with its encoding.
fn encoded_strategy() -> impl Strategy<Value = (Message, Vec<u8>)> {
    message_strategy().prop_map(|message| {
        let bytes = CODEC
            .encode(&message)
            .unwrap_or_else(|e| panic!("a valid message must encode: {e}\n{message:?}"));
        (message, bytes)
    })
}

/// A plausible start of a message (random TPDU and header, BCD MTI, a bitmap setting only fields the
/// spec defines) followed by random bytes, so that decoding gets into the fields.
fn plausible_bytes_strategy() -> impl Strategy<Value = Vec<u8>> {
    let frame = &spec().frame;
    let numbers: Vec<u8> = spec().fields.keys().copied().collect();
    (
        vec(any::<u8>(), frame.tpdu_bytes + frame.header_bytes),
        vec(b'0'..=b'9', 4),
        proptest::sample::subsequence(numbers.clone(), 0..=numbers.len()),
        vec(any::<u8>(), 0..300),
    )
        .prop_map(|(start, mti, present, tail)| {
            let mut bytes = start;
            bytes.extend(mti.chunks(2).map(|p| ((p[0] - b'0') << 4) | (p[1] - b'0')));
            let mut bitmap = [0u8; 8];
            for number in present {
                let bit = usize::from(number - 1);
                bitmap[bit / 8] |= 0x80 >> (bit % 8);
            }
            bytes.extend(bitmap);
            bytes.extend(tail);
            bytes
        })
}

/// Checks that a decoding error of an `input_len`-byte input reads "<place> at byte K: ...", names a
/// known place (a field by its number and its name in the spec) and has K == offset <= input_len.
fn check_error(error: &DecodeError, input_len: usize) -> Result<(), TestCaseError> {
    let text = error.to_string();
    let (place, rest) = text
        .split_once(" at byte ")
        .ok_or_else(|| TestCaseError::fail(format!("no \"at byte\" in {text:?}")))?;
    let offset: usize = rest
        .split_once(':')
        .and_then(|(k, _)| k.parse().ok())
        .ok_or_else(|| TestCaseError::fail(format!("no byte offset in {text:?}")))?;
    prop_assert_eq!(offset, error.offset, "{}", text);
    prop_assert!(
        offset <= input_len,
        "offset {} beyond the {}-byte input: {}",
        offset,
        input_len,
        text
    );
    let known = match place {
        "TPDU" | "header" | "MTI" | "bitmap" | "end of message" => true,
        _ => place
            .strip_prefix("field ")
            .and_then(|p| p.split_once(" ("))
            .and_then(|(number, name)| Some((number.parse::<u8>().ok()?, name.strip_suffix(')')?)))
            .and_then(|(number, name)| Some(spec().field(number)?.name == name))
            .unwrap_or(false),
    };
    prop_assert!(known, "the error does not name a known place: {}", text);
    Ok(())
}

/// Decodes `bytes`, which must not panic; checks the error, or that a decoded message re-encodes to
/// the same bytes.
fn decode_checked(bytes: &[u8]) -> Result<Option<Message>, TestCaseError> {
    match CODEC.decode(bytes) {
        Ok(message) => {
            let again = CODEC
                .encode(&message)
                .map_err(|e| TestCaseError::fail(format!("a decoded message does not encode: {e}")))?;
            prop_assert_eq!(
                hex::encode_upper(&again),
                hex::encode_upper(bytes),
                "decoded to {:?}",
                message
            );
            Ok(Some(message))
        }
        Err(error) => {
            check_error(&error, bytes.len())?;
            Ok(None)
        }
    }
}

proptest! {
    #![proptest_config(config(512))]

    /// Property 1: random byte strings.
    #[test]
    fn random_bytes_never_panic_and_errors_name_place_and_offset(bytes in vec(any::<u8>(), 0..300)) {
        decode_checked(&bytes)?;
    }

    /// Property 1, with a plausible start so that the fields get decoded.
    #[test]
    fn plausible_start_then_random_bytes_never_panic(bytes in plausible_bytes_strategy()) {
        decode_checked(&bytes)?;
    }
}

proptest! {
    #![proptest_config(config(128))]

    /// Property 2: encode/decode round trip, MAC sign and verify, tampering detected.
    #[test]
    fn valid_messages_round_trip_and_mac_detects_tampering(
        message in message_strategy(),
        key in any::<[u8; 8]>(),
        masks in vec(1u8..=255, 64),
    ) {
        let bytes = CODEC.encode(&message).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(CODEC.decode(&bytes), Ok(message.clone()));

        let key = MacKey::new(key);
        let mut signed = message.clone();
        let bytes = CODEC.encode_signed(&mut signed, &key).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let decoded = CODEC.decode(&bytes);
        prop_assert_eq!(decoded.as_ref(), Ok(&signed));
        let decoded = decoded.unwrap();
        let mac_field = spec().mac.field;
        if spec().is_mac_exempt(&message.mti) {
            prop_assert!(!decoded.has(mac_field));
            prop_assert_eq!(CODEC.verify_mac(&bytes, &decoded, &key), None);
            return Ok(());
        }
        prop_assert_eq!(CODEC.verify_mac(&bytes, &decoded, &key), Some(true));

        let mac_at = bytes.len() - 8;
        for at in CODEC.mti_offset()..bytes.len() {
            let mut tampered = bytes.clone();
            tampered[at] ^= masks[at % masks.len()];
            match decode_checked(&tampered)? {
                None => prop_assert!(at < mac_at, "changing MAC byte {} broke decoding", at),
                Some(decoded) => prop_assert_eq!(
                    CODEC.verify_mac(&tampered, &decoded, &key),
                    Some(false),
                    "byte {} changed from {:02X} to {:02X} in {}, decoded to {:?}",
                    at,
                    bytes[at],
                    tampered[at],
                    hex::encode_upper(&bytes),
                    decoded
                ),
            }
        }
    }

    /// Property 3: every truncation fails, at an offset inside the truncated input.
    #[test]
    fn every_strict_prefix_fails_within_the_prefix((_message, bytes) in encoded_strategy()) {
        for len in 0..bytes.len() {
            let prefix = &bytes[..len];
            match CODEC.decode(prefix) {
                Ok(decoded) => prop_assert!(
                    false,
                    "the {}-byte prefix of {} decoded to {:?}",
                    len,
                    hex::encode_upper(&bytes),
                    decoded
                ),
                Err(error) => check_error(&error, len)?,
            }
        }
    }

    /// Property 4: random byte changes never panic.
    #[test]
    fn changing_random_bytes_never_panics(
        (_message, bytes) in encoded_strategy(),
        changes in vec((any::<Index>(), 1u8..=255), 1..8),
    ) {
        let mut changed = bytes;
        for (at, mask) in changes {
            let at = at.index(changed.len());
            changed[at] ^= mask;
        }
        decode_checked(&changed)?;
    }

    /// Property 4, byte by byte: each single-byte change of a valid message, at every position.
    #[test]
    fn changing_any_single_byte_never_panics(
        (_message, bytes) in encoded_strategy(),
        masks in vec(1u8..=255, 64),
    ) {
        for at in 0..bytes.len() {
            let mut changed = bytes.clone();
            changed[at] ^= masks[at % masks.len()];
            decode_checked(&changed)?;
        }
    }

    /// Property 5: split_frame waits for the whole frame, then returns exactly the body.
    #[test]
    fn split_frame_waits_for_the_whole_frame(
        (_first, body) in encoded_strategy(),
        (_second, next) in encoded_strategy(),
    ) {
        let framed = CODEC.frame(body.clone()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let next = CODEC.frame(next).map_err(|e| TestCaseError::fail(e.to_string()))?;
        for cut in 0..framed.len() {
            prop_assert_eq!(CODEC.split_frame(&framed[..cut]), None, "cut at {}", cut);
        }
        prop_assert_eq!(CODEC.split_frame(&framed), Some((body.as_slice(), framed.len())));

        let mut stream = framed.clone();
        stream.extend_from_slice(&next);
        for cut in framed.len()..=stream.len() {
            prop_assert_eq!(
                CODEC.split_frame(&stream[..cut]),
                Some((body.as_slice(), framed.len())),
                "cut at {}",
                cut
            );
        }
        let rest = &stream[framed.len()..];
        prop_assert_eq!(CODEC.split_frame(rest), Some((&next[spec().frame.length_prefix_bytes..], next.len())));
    }
}
