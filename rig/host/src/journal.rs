//! The wire journal: every message the host received or sent, time-stamped on the rig's clock,
//! with its raw bytes and decoded fields.

use std::collections::BTreeMap;

use posrig_iso8583::{Message, Value};
use serde::{Deserialize, Serialize};

/// Which way a journal entry went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Received from a terminal.
    In,
    /// Sent to a terminal.
    Out,
    /// A connection event (accepted, closed, reset), a frame that did not decode, or (in proxy
    /// mode) an upstream reply a rule kept from the terminal, with its decoded fields.
    Event,
}

/// One journal line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalEntry {
    /// Position in the journal, from 0.
    pub seq: u64,
    /// Rig clock (CLOCK_MONOTONIC) in nanoseconds.
    pub t_ns: u64,
    /// Which TCP connection, numbered from 1 in accept order.
    pub connection: u64,
    /// In, out or event.
    pub direction: Direction,
    /// The MTI, when a message decoded.
    pub mti: Option<String>,
    /// Field 11, when present.
    pub stan: Option<String>,
    /// Decoded fields: text as is, binary as upper-case hex.
    pub fields: BTreeMap<u8, String>,
    /// The raw frame body, upper-case hex.
    pub raw: String,
    /// What the host made of it: the rule applied, a decode error, a connection event.
    pub note: String,
}

impl JournalEntry {
    /// A journal line for a decoded message.
    pub fn message(
        direction: Direction,
        connection: u64,
        t_ns: u64,
        message: &Message,
        raw: &[u8],
        note: String,
    ) -> JournalEntry {
        JournalEntry {
            seq: 0,
            t_ns,
            connection,
            direction,
            mti: Some(message.mti.clone()),
            stan: message.text(11).map(str::to_string),
            fields: message
                .fields
                .iter()
                .map(|(&n, v)| {
                    let text = match v {
                        Value::Text(t) => t.clone(),
                        Value::Bytes(b) => hex::encode_upper(b),
                    };
                    (n, text)
                })
                .collect(),
            raw: hex::encode_upper(raw),
            note,
        }
    }

    /// A journal line for a connection event or an undecodable frame.
    pub fn event(connection: u64, t_ns: u64, raw: &[u8], note: String) -> JournalEntry {
        JournalEntry {
            seq: 0,
            t_ns,
            connection,
            direction: Direction::Event,
            mti: None,
            stan: None,
            fields: BTreeMap::new(),
            raw: hex::encode_upper(raw),
            note,
        }
    }
}

/// The journal's entries, numbered in the order they were recorded. Clearing it keeps the
/// numbering going, so positions are never reused.
#[derive(Debug, Default)]
pub struct Journal {
    entries: Vec<JournalEntry>,
    next_seq: u64,
}

impl Journal {
    /// Numbers `entry`, stores it, and returns the numbered entry.
    pub fn push(&mut self, mut entry: JournalEntry) -> JournalEntry {
        entry.seq = self.next_seq;
        self.next_seq += 1;
        self.entries.push(entry.clone());
        entry
    }

    /// Entries numbered `seq` and later.
    pub fn since(&self, seq: u64) -> Vec<JournalEntry> {
        let start = self.entries.partition_point(|e| e.seq < seq);
        self.entries[start..].to_vec()
    }

    /// The number the next entry will get.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Drops every entry; numbering continues.
    pub fn clear(&mut self) {
        self.entries.clear();
    }
}
