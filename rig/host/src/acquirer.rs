//! What the acquirer decides for each request: approve, decline, reverse, void, settle — and the
//! ledger postings that follow. Pure logic: the server does the I/O.

use posrig_iso8583::{Codec, Message};
use serde::{Deserialize, Serialize};

use crate::knobs::{Action, Kind, Rulebook};
use crate::ledger::{Entry, EntryKind, Key, Ledger, Settlement};

/// Host behaviour settings that are not per-message rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// A reversal repeated for an already reversed request has no further effect (on by default).
    pub idempotent_reversals: bool,
    /// A void repeated, or a void of an already voided sale, has no further effect (on by default).
    pub idempotent_voids: bool,
    /// Refuse every connection (the host is in maintenance).
    pub maintenance: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            idempotent_reversals: true,
            idempotent_voids: true,
            maintenance: false,
        }
    }
}

/// The outcome of one request.
#[derive(Debug)]
pub struct Decision {
    /// The reply to send, if any.
    pub reply: Option<Message>,
    /// The rule action still to be applied when delivering the reply.
    pub delivery: Option<Action>,
    /// What happened, for the journal.
    pub note: String,
}

/// The host's books and knobs.
#[derive(Debug, Default)]
pub struct Acquirer {
    /// The ledger.
    pub ledger: Ledger,
    /// The rules in force.
    pub rules: Rulebook,
    /// The settings in force.
    pub settings: Settings,
    issued: u64,
}

/// Response codes the host uses on its own account.
mod code {
    pub const APPROVED: &str = "00";
    pub const INVALID: &str = "12";
    pub const NO_ORIGINAL: &str = "25";
    pub const FORMAT_ERROR: &str = "30";
    pub const WRONG_AMOUNT: &str = "64";
    pub const DUPLICATE: &str = "94";
    pub const MAC_ERROR: &str = "A0";
}

impl Acquirer {
    /// An acquirer with empty books, no rules and these settings.
    pub fn with_settings(settings: Settings) -> Acquirer {
        Acquirer {
            settings,
            ..Acquirer::default()
        }
    }

    /// Empties the books and the rules and puts `settings` in force; reference numbers keep
    /// counting so none repeats.
    pub fn reset(&mut self, settings: Settings) {
        *self = Acquirer {
            issued: self.issued,
            ..Acquirer::with_settings(settings)
        };
    }

    /// Decides what to do with `request`; `mac_ok` is the MAC check (None when it carries no MAC).
    pub fn decide(&mut self, codec: &Codec, request: &Message, mac_ok: Option<bool>, t_ns: u64) -> Decision {
        let Some(kind) = Kind::of(&request.mti, request.text(3)) else {
            return Decision {
                reply: None,
                delivery: None,
                note: format!("MTI {} is not served; no reply", request.mti),
            };
        };
        let action = self.rules.take(kind, request.text(11));
        let forced = match &action {
            Some(Action::DropRequest) => {
                return Decision {
                    reply: None,
                    delivery: None,
                    note: "dropped before processing (rule drop_request)".into(),
                }
            }
            Some(Action::Respond { code }) => Some(code.clone()),
            _ => None,
        };
        let needs_mac = !codec.spec().is_mac_exempt(&request.mti);
        let (reply, note) = if needs_mac && mac_ok != Some(true) {
            let mut reply = reply_to(request);
            reply.set(39, code::MAC_ERROR);
            (
                reply,
                "MAC missing or wrong: answered A0, nothing booked".to_string(),
            )
        } else {
            let ctx = Request {
                codec,
                message: request,
                forced,
                t_ns,
            };
            match kind {
                Kind::Signon => self.signon(&ctx),
                Kind::Sale => self.sale(&ctx),
                Kind::Void => self.void(&ctx),
                Kind::Reversal => self.reversal(&ctx),
                Kind::Settlement => self.settle(&ctx),
            }
        };
        let delivery = action.filter(|a| !matches!(a, Action::Respond { .. }));
        let note = match &delivery {
            Some(action) => format!("{note}; rule {action:?}"),
            None => note,
        };
        Decision {
            reply: Some(reply),
            delivery,
            note,
        }
    }

    /// Books what a real acquirer's `reply` to `request` shows on the wire (proxy mode): its
    /// response code (39) stands for the host's decision and is booked by the same rules as the
    /// simulator's own decisions, with the reply's RRN (37) and auth code (38) on approvals;
    /// an A0 (MAC error) books nothing, as in the simulator. Rules are not consulted (the proxy applied them on the way). Returns what was booked.
    pub fn book_observed(&mut self, codec: &Codec, request: &Message, reply: &Message, t_ns: u64) -> String {
        let Some(kind) = Kind::of(&request.mti, request.text(3)) else {
            return format!("MTI {} is not booked", request.mti);
        };
        let Some(code) = reply.text(39) else {
            return format!("{} without a response code (39): nothing booked", reply.mti);
        };
        if code == code::MAC_ERROR {
            return format!(
                "{} {code}: the host found the MAC wrong, nothing booked",
                reply.mti
            );
        }
        let ctx = Request {
            codec,
            message: request,
            forced: Some(code.to_string()),
            t_ns,
        };
        let (_, note) = match kind {
            Kind::Signon => self.signon(&ctx),
            Kind::Sale => self.sale(&ctx),
            Kind::Void => self.void(&ctx),
            Kind::Reversal => self.reversal(&ctx),
            Kind::Settlement => self.settle(&ctx),
        };
        if let Some(entry) = ctx
            .financial_key()
            .filter(|_| matches!(kind, Kind::Sale | Kind::Void))
            .and_then(|(key, _)| self.ledger.entry_mut(&key))
            .filter(|entry| entry.approved())
        {
            entry.rrn = reply.text(37).unwrap_or_default().to_string();
            entry.auth_code = reply.text(38).unwrap_or_default().to_string();
        }
        note
    }

    fn next_reference(&mut self) -> (String, String) {
        self.issued += 1;
        let rrn = format!("{:012}", self.issued);
        let auth = format!("{:06}", (self.issued * 7919) % 1_000_000);
        (rrn, auth)
    }

    fn signon(&mut self, ctx: &Request<'_>) -> (Message, String) {
        let tid = ctx.message.text(41).unwrap_or_default().to_string();
        let code = ctx.forced.clone().unwrap_or_else(|| code::APPROVED.into());
        if code == code::APPROVED {
            *self.ledger.signons.entry(tid.clone()).or_default() += 1;
        }
        let mut reply = reply_to(ctx.message);
        reply.set(39, code.as_str());
        (reply, format!("sign-on of {tid}: {code}"))
    }

    fn sale(&mut self, ctx: &Request<'_>) -> (Message, String) {
        let mut reply = reply_to(ctx.message);
        let Some((key, amount)) = ctx.financial_key() else {
            reply.set(39, code::FORMAT_ERROR);
            return (reply, "sale lacks 4, 11, 41 or 60.2: answered 30".into());
        };
        if self.ledger.entry(&key).is_some() {
            self.ledger.duplicate_stans.push(key.clone());
            reply.set(39, code::DUPLICATE);
            return (
                reply,
                format!(
                    "STAN {} already used in batch {}: answered 94",
                    key.stan, key.batch
                ),
            );
        }
        let code = ctx.forced.clone().unwrap_or_else(|| code::APPROVED.into());
        let (rrn, auth) = self.next_reference();
        let approved = code == code::APPROVED;
        if approved {
            self.ledger.post(
                &key,
                amount as i64,
                format!("sale {} approved", key.stan),
                ctx.t_ns,
            );
            reply.set(37, rrn.as_str()).set(38, auth.as_str());
        }
        reply.set(39, code.as_str());
        self.ledger.insert(Entry {
            key: key.clone(),
            kind: EntryKind::Sale,
            amount,
            response_code: code.clone(),
            rrn: if approved { rrn } else { String::new() },
            auth_code: if approved { auth } else { String::new() },
            original: None,
            reversal_requests: 0,
            reversals_applied: 0,
            voided_by: Vec::new(),
            t_ns: ctx.t_ns,
        });
        (reply, format!("sale {} of {amount}: {code}", key.stan))
    }

    fn void(&mut self, ctx: &Request<'_>) -> (Message, String) {
        let mut reply = reply_to(ctx.message);
        let original = ctx.codec.part(ctx.message, 61, 2).map(str::to_string);
        let (Some((key, amount)), Some(original_stan)) = (ctx.financial_key(), original) else {
            reply.set(39, code::FORMAT_ERROR);
            return (reply, "void lacks 4, 11, 41, 60.2 or 61.2: answered 30".into());
        };
        let original_batch = ctx
            .codec
            .part(ctx.message, 61, 1)
            .unwrap_or(&key.batch)
            .to_string();
        let sale_key = Key {
            tid: key.tid.clone(),
            batch: original_batch,
            stan: original_stan.clone(),
        };
        let idempotent = self.settings.idempotent_voids;
        if let Some(previous) = self.ledger.entry(&key) {
            let same_void = previous.kind == EntryKind::Void && previous.original.as_ref() == Some(&sale_key);
            if !same_void {
                self.ledger.duplicate_stans.push(key.clone());
                reply.set(39, code::DUPLICATE);
                return (
                    reply,
                    format!(
                        "STAN {} already used in batch {}: answered 94",
                        key.stan, key.batch
                    ),
                );
            }
            if idempotent {
                let code = previous.response_code.clone();
                reply.set(39, code.as_str());
                return (
                    reply,
                    format!(
                        "void {} repeated: answered {code} again, nothing booked",
                        key.stan
                    ),
                );
            }
        }
        let code = match (ctx.forced.clone(), self.ledger.entry(&sale_key)) {
            (Some(code), _) => code,
            (None, None) => code::NO_ORIGINAL.into(),
            (None, Some(sale)) if sale.kind != EntryKind::Sale || !sale.approved() => {
                code::NO_ORIGINAL.into()
            }
            (None, Some(sale))
                if idempotent && (!sale.voided_by.is_empty() || sale.reversals_applied > 0) =>
            {
                code::INVALID.into()
            }
            (None, Some(sale)) if sale.amount != amount => code::WRONG_AMOUNT.into(),
            (None, Some(_)) => code::APPROVED.into(),
        };
        let (rrn, auth) = self.next_reference();
        let approved = code == code::APPROVED;
        if approved {
            self.ledger.post(
                &sale_key,
                -(amount as i64),
                format!("void {} of sale {}", key.stan, original_stan),
                ctx.t_ns,
            );
            if let Some(sale) = self.ledger.entry_mut(&sale_key) {
                sale.voided_by.push(key.stan.clone());
            }
            reply.set(37, rrn.as_str()).set(38, auth.as_str());
        }
        reply.set(39, code.as_str());
        self.ledger.insert(Entry {
            key: key.clone(),
            kind: EntryKind::Void,
            amount,
            response_code: code.clone(),
            rrn: if approved { rrn } else { String::new() },
            auth_code: if approved { auth } else { String::new() },
            original: Some(sale_key.clone()),
            reversal_requests: 0,
            reversals_applied: 0,
            voided_by: Vec::new(),
            t_ns: ctx.t_ns,
        });
        (
            reply,
            format!("void {} of sale {original_stan}: {code}", key.stan),
        )
    }

    fn reversal(&mut self, ctx: &Request<'_>) -> (Message, String) {
        let mut reply = reply_to(ctx.message);
        let Some((key, _)) = ctx.financial_key() else {
            reply.set(39, code::FORMAT_ERROR);
            return (reply, "reversal lacks 4, 11, 41 or 60.2: answered 30".into());
        };
        let reason = ctx.message.text(39).unwrap_or("??").to_string();
        let Some(entry) = self.ledger.entry_mut(&key) else {
            self.ledger.orphan_reversals.push(key.clone());
            let code = ctx.forced.clone().unwrap_or_else(|| code::NO_ORIGINAL.into());
            reply.set(39, code.as_str());
            return (
                reply,
                format!("reversal {} ({reason}) of an unknown original: {code}", key.stan),
            );
        };
        entry.reversal_requests += 1;
        if let Some(code) = ctx.forced.clone().filter(|c| c != code::APPROVED) {
            reply.set(39, code.as_str());
            let note = format!("reversal {} ({reason}) answered {code}, nothing booked", key.stan);
            return (reply, note);
        }
        let idempotent = self.settings.idempotent_reversals;
        let note = if !entry.approved() {
            format!(
                "reversal {} ({reason}) of a declined request: nothing to undo",
                key.stan
            )
        } else if idempotent && entry.reversals_applied > 0 {
            format!("reversal {} ({reason}) already applied: nothing booked", key.stan)
        } else if idempotent && !entry.voided_by.is_empty() {
            format!(
                "reversal {} ({reason}) of a voided sale: nothing left to undo",
                key.stan
            )
        } else {
            entry.reversals_applied += 1;
            let entry = entry.clone();
            self.undo(&entry, &reason, ctx.t_ns);
            format!("reversal {} ({reason}) applied", key.stan)
        };
        reply.set(39, code::APPROVED);
        (reply, note)
    }

    /// Books the reversal of an approved sale or void.
    fn undo(&mut self, entry: &Entry, reason: &str, t_ns: u64) {
        let cause = format!("reversal {} ({reason})", entry.key.stan);
        match &entry.original {
            Some(sale_key) => {
                self.ledger.post(sale_key, entry.amount as i64, cause, t_ns);
                if let Some(sale) = self.ledger.entry_mut(sale_key) {
                    sale.voided_by.retain(|s| s != &entry.key.stan);
                }
            }
            _ => self.ledger.post(&entry.key, -(entry.amount as i64), cause, t_ns),
        }
    }

    fn settle(&mut self, ctx: &Request<'_>) -> (Message, String) {
        let mut reply = reply_to(ctx.message);
        let tid = ctx.message.text(41).unwrap_or_default().to_string();
        let batch = ctx.codec.part(ctx.message, 60, 2).unwrap_or_default().to_string();
        let Some(terminal_totals) = ctx.message.text(63).and_then(parse_totals) else {
            reply.set(39, code::FORMAT_ERROR);
            return (reply, "settlement without totals in 63: answered 30".into());
        };
        let host_totals = self.ledger.batch_totals(&tid, &batch);
        let settlement = Settlement {
            tid,
            batch: batch.clone(),
            terminal_totals,
            host_totals,
            t_ns: ctx.t_ns,
        };
        let flag = if settlement.balanced() { '1' } else { '2' };
        let code = ctx.forced.clone().unwrap_or_else(|| code::APPROVED.into());
        reply
            .set(39, code.as_str())
            .set(63, format_totals(flag, host_totals));
        let note = format!(
            "settlement of batch {batch}: terminal {:?}, host {:?}, {}",
            terminal_totals,
            host_totals,
            if settlement.balanced() {
                "balanced"
            } else {
                "NOT balanced"
            }
        );
        self.ledger.settlements.push(settlement);
        (reply, note)
    }
}

/// A reply skeleton for `request`: reply MTI, swapped TPDU, and the fields a host echoes.
pub(crate) fn reply_to(request: &Message) -> Message {
    let mut reply = request.reply();
    for n in [2, 3, 4, 11, 25, 41, 42, 49, 60, 61] {
        if let Some(value) = request.fields.get(&n) {
            reply.set(n, value.clone());
        }
    }
    reply
}

/// A request being decided, with what every decision needs.
struct Request<'a> {
    codec: &'a Codec,
    message: &'a Message,
    forced: Option<String>,
    t_ns: u64,
}

impl Request<'_> {
    /// Terminal, batch and STAN of a financial request, and its amount.
    fn financial_key(&self) -> Option<(Key, u64)> {
        let amount = self.message.text(4)?.parse().ok()?;
        let key = Key {
            tid: self.message.text(41)?.to_string(),
            batch: self.codec.part(self.message, 60, 2)?.to_string(),
            stan: self.message.text(11)?.to_string(),
        };
        Some((key, amount))
    }
}

/// Parses settlement totals "CCCAAAAAAAAAAAA" (count, 3 digits; amount in fen, 12 digits).
pub fn parse_totals(text: &str) -> Option<(u32, u64)> {
    let digits = text.get(text.len().checked_sub(15)?..)?;
    Some((digits[..3].parse().ok()?, digits[3..].parse().ok()?))
}

/// Writes settlement totals, preceded by the host's balance flag (1 balanced, 2 not) in replies.
pub fn format_totals(flag: char, (count, amount): (u32, u64)) -> String {
    format!("{flag}{count:03}{amount:012}")
}
