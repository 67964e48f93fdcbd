//! `iso8583`: encode and decode messages from the command line, as JSON, with the spec file.
//!
//! Used by hand to look at a captured frame, and by the pytest that cross-checks this codec against
//! pyiso8583. Binary fields, the TPDU and the header are upper-case hex in the JSON.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use posrig_iso8583::{Codec, MacKey, Message, Spec, Value};
use serde::{Deserialize, Serialize};

/// Encode and decode CUP-style ISO 8583 messages.
#[derive(Parser)]
#[command(version)]
struct Cli {
    /// The message spec (e.g. fixtures/iso8583/cup.toml).
    #[arg(long)]
    spec: PathBuf,
    /// MAC key as 16 hex characters: encode fills the MAC field, decode checks it.
    #[arg(long)]
    mac_key: Option<String>,
    /// The hex carries (decode) or should carry (encode) the TCP length prefix.
    #[arg(long)]
    framed: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Read hex on standard input, print the message as JSON.
    Decode,
    /// Read a JSON message on standard input, print its hex.
    Encode,
}

/// The JSON shape of a message.
#[derive(Serialize, Deserialize)]
struct JsonMessage {
    tpdu: String,
    header: String,
    mti: String,
    fields: BTreeMap<u8, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    mac_ok: Option<bool>,
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(output) => {
            println!("{output}");
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<String, String> {
    let codec = Codec::new(Spec::load(&cli.spec).map_err(|e| e.to_string())?);
    let key = cli
        .mac_key
        .as_deref()
        .map(MacKey::from_hex)
        .transpose()
        .map_err(|e| e.to_string())?;
    let mut input = String::new();
    std::io::stdin()
        .read_to_string(&mut input)
        .map_err(|e| format!("cannot read standard input: {e}"))?;
    match cli.command {
        Command::Decode => decode(&codec, key.as_ref(), cli.framed, &input),
        Command::Encode => encode(&codec, key.as_ref(), cli.framed, &input),
    }
}

fn decode(codec: &Codec, key: Option<&MacKey>, framed: bool, input: &str) -> Result<String, String> {
    let compact: String = input.split_whitespace().collect();
    let raw = hex::decode(&compact).map_err(|e| format!("standard input is not hex: {e}"))?;
    let body = if framed {
        match codec.split_frame(&raw) {
            Some((body, used)) if used == raw.len() => body,
            _ => return Err("the length prefix does not match the number of bytes given".into()),
        }
    } else {
        &raw
    };
    let message = codec.decode(body).map_err(|e| e.to_string())?;
    let mac_ok = key.and_then(|key| codec.verify_mac(body, &message, key));
    let json = JsonMessage {
        tpdu: hex::encode_upper(&message.tpdu),
        header: hex::encode_upper(&message.header),
        mti: message.mti.clone(),
        fields: message
            .fields
            .iter()
            .map(|(&n, value)| {
                let text = match value {
                    Value::Text(text) => text.clone(),
                    Value::Bytes(bytes) => hex::encode_upper(bytes),
                };
                (n, text)
            })
            .collect(),
        mac_ok,
    };
    serde_json::to_string_pretty(&json).map_err(|e| e.to_string())
}

fn encode(codec: &Codec, key: Option<&MacKey>, framed: bool, input: &str) -> Result<String, String> {
    let json: JsonMessage =
        serde_json::from_str(input).map_err(|e| format!("standard input is not a JSON message: {e}"))?;
    let unhex = |what: &str, text: &str| hex::decode(text).map_err(|e| format!("{what} is not hex: {e}"));
    let mut message = Message::new(
        &json.mti,
        &unhex("tpdu", &json.tpdu)?,
        &unhex("header", &json.header)?,
    );
    for (number, text) in json.fields {
        let spec = codec
            .spec()
            .field(number)
            .ok_or_else(|| format!("field {number} is not defined in the spec"))?;
        let value = match spec.format {
            posrig_iso8583::Format::B => Value::Bytes(unhex(&format!("field {number}"), &text)?),
            _ => Value::Text(text),
        };
        message.set(number, value);
    }
    let bytes = match key {
        Some(key) => codec.encode_signed(&mut message, key),
        None => codec.encode(&message),
    }
    .map_err(|e| e.to_string())?;
    let bytes = if framed {
        codec.frame(bytes).map_err(|e| e.to_string())?
    } else {
        bytes
    };
    Ok(hex::encode_upper(bytes))
}
