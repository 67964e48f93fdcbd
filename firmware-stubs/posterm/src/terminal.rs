//! The terminal's state machine (domain.md §3): sign-on, sale, void, reversal, settlement, with
//! write-ahead reversals, atomic completion, a persisted STAN — and the seeded defects that break
//! each of those rules on purpose.

use std::time::{Duration, Instant};

use posrig_iso8583::{Codec, MacKey, Message};

use crate::card::{Card, CardSlot, SecondGenerateAc};
use crate::clock;
use crate::console::Console;
use crate::emv;
use crate::link::{Failure, HostLink, Received};
use crate::nvm::{Nvm, RecordKind, ReversalRecord, TxnRecord};
use crate::settings::{Exhaustion, ReversalTrigger, Settings};

/// Processing code of a sale.
const SALE: &str = "000000";
/// Processing code of a void.
const VOID: &str = "200000";
/// 60.3 of financial messages.
const NET_FINANCIAL: &str = "000";
/// 60.3 of a sign-on with a single-DES key.
const NET_SIGNON: &str = "003";
/// Cryptogram information data of an application authentication cryptogram (a card decline).
const AAC: u8 = 0x00;
/// 60.3 of a settlement.
const NET_SETTLEMENT: &str = "201";

/// How a reply to a financial request was judged.
enum Verdict {
    /// 00 with a good MAC and matching fields.
    Approved { auth: String, rrn: String },
    /// A valid decline.
    Declined(String),
    /// 00 with a bad MAC.
    BadMac { auth: Option<String> },
    /// 11, 41, 42 or 4 differ from the request.
    Mismatch(u8),
}

/// The simulated terminal.
pub struct Terminal {
    settings: Settings,
    codec: Codec,
    key: MacKey,
    tpdu: Vec<u8>,
    header: Vec<u8>,
    console: Console,
    nvm: Nvm,
    slot: CardSlot,
    link: HostLink,
    signed_on: bool,
    /// Where the reversal lives when the `no_reversal_persist` defect keeps it out of the NVM.
    ram_reversal: Option<ReversalRecord>,
}

/// What the terminal needs to start.
pub struct Wiring {
    /// Settings, policies, defects.
    pub settings: Settings,
    /// The message codec.
    pub codec: Codec,
    /// The console.
    pub console: Console,
    /// The flash.
    pub nvm: Nvm,
    /// The card slot.
    pub slot: CardSlot,
    /// The host address.
    pub host: String,
}

impl Terminal {
    /// Assembles a terminal; nothing happens until [`Terminal::boot`].
    pub fn new(wiring: Wiring) -> Terminal {
        let id = &wiring.settings.identity;
        let key = MacKey::from_hex(&id.mac_key).expect("validated with the settings");
        let tpdu = hex::decode(&id.tpdu).expect("validated with the settings");
        let header = hex::decode(&id.header).expect("validated with the settings");
        let link = HostLink::new(
            &wiring.host,
            Duration::from_millis(wiring.settings.policy.response_timeout_ms),
        );
        Terminal {
            settings: wiring.settings,
            codec: wiring.codec,
            key,
            tpdu,
            header,
            console: wiring.console,
            nvm: wiring.nvm,
            slot: wiring.slot,
            link,
            signed_on: false,
            ram_reversal: None,
        }
    }

    /// Boots: reads the NVM, signs on, optionally sends a pending reversal, then serves commands
    /// from the console forever.
    pub fn run(mut self) -> ! {
        self.boot();
        loop {
            if let Some(command) = self.console.next_command() {
                self.execute(&command);
            }
        }
    }

    fn boot(&mut self) {
        let id = format!(
            "posterm/{} tid={}",
            env!("CARGO_PKG_VERSION"),
            self.settings.identity.tid
        );
        self.log("BOOT", &id);
        if self.settings.defects.stan_reset_on_boot {
            self.nvm.ram.stan = 0;
        }
        let reversal = match self.reversal() {
            Some(r) => format!("{}/{}/{}", r.stan, r.reason, r.attempts),
            None => "none".into(),
        };
        let state = format!(
            "stan={:06} batch={:06} records={} reversal={reversal}",
            self.nvm.ram.stan,
            self.nvm.ram.batch,
            self.nvm.ram.records.len()
        );
        self.log("NVM", &state);
        if let Some(r) = self.reversal().cloned() {
            self.log(
                "REVERSAL",
                &format!("pending stan={} reason={}", r.stan, r.reason),
            );
        }
        self.signon();
        if self.settings.policy.reversal_at_boot && self.signed_on {
            self.deliver_reversal();
        }
        self.log("READY", "");
    }

    fn execute(&mut self, command: &str) {
        let words: Vec<&str> = command.split_whitespace().collect();
        match words.as_slice() {
            ["sale", amount] => match amount.parse::<u64>() {
                Ok(amount) if amount > 0 && amount < 1_000_000_000_000 => {
                    self.log("CMD", &format!("sale amount={amount}"));
                    self.sale(amount);
                }
                _ => self.log("ERROR", &format!("sale needs an amount in fen, got {amount:?}")),
            },
            ["void", stan] if stan.len() <= 6 && stan.chars().all(|c| c.is_ascii_digit()) => {
                let stan = format!("{:0>6}", stan);
                self.log("CMD", &format!("void stan={stan}"));
                self.void(&stan);
            }
            ["settle"] => {
                self.log("CMD", "settle");
                self.settle();
            }
            ["status"] => self.status(),
            ["reprint"] => self.reprint(),
            _ => self.log(
                "ERROR",
                &format!(
                    "unknown command {command:?}; commands: sale AMOUNT, void STAN, settle, status, reprint"
                ),
            ),
        }
    }

    // ---- persistence -------------------------------------------------------------------------

    fn reversal(&self) -> Option<&ReversalRecord> {
        if self.settings.defects.no_reversal_persist {
            self.ram_reversal.as_ref()
        } else {
            self.nvm.ram.reversal.as_ref()
        }
    }

    fn set_reversal(&mut self, record: Option<ReversalRecord>) {
        if self.settings.defects.no_reversal_persist {
            self.ram_reversal = record;
        } else {
            self.nvm.ram.reversal = record;
        }
    }

    fn update_reversal(&mut self, change: impl FnOnce(&mut ReversalRecord)) {
        let slot = if self.settings.defects.no_reversal_persist {
            &mut self.ram_reversal
        } else {
            &mut self.nvm.ram.reversal
        };
        if let Some(record) = slot.as_mut() {
            change(record);
        }
    }

    /// Flushes the NVM; a failure is logged and returned as `false`, and whatever depended on
    /// the write must not go ahead.
    fn persist(&mut self) -> bool {
        match self.nvm.flush() {
            Ok(()) => true,
            Err(e) => {
                self.log("ERROR", &format!("NVM write failed: {e}"));
                false
            }
        }
    }

    /// Takes the next STAN and persists it before it can be sent (rule 3); `None` when the flash
    /// would not take it.
    fn next_stan(&mut self) -> Option<String> {
        self.nvm.ram.stan = self.nvm.ram.stan % 999_999 + 1;
        self.persist().then(|| format!("{:06}", self.nvm.ram.stan))
    }

    /// Stores the write-ahead reversal record of a request about to be sent (rule 1); `false`
    /// (nothing stored, nothing to send) when the flash would not take it.
    fn arm_reversal(&mut self, record: ReversalRecord) -> bool {
        self.set_reversal(Some(record));
        if self.persist() {
            return true;
        }
        self.set_reversal(None);
        false
    }

    fn batch(&self) -> String {
        format!("{:06}", self.nvm.ram.batch)
    }

    // ---- wire --------------------------------------------------------------------------------

    fn message(&self, mti: &str) -> Message {
        let mut message = Message::new(mti, &self.tpdu, &self.header);
        message
            .set(41, self.settings.identity.tid.as_str())
            .set(42, self.settings.identity.mid.as_str());
        message
    }

    /// Sends `request` on a new connection and waits T_resp for the reply of the matching MTI;
    /// `after_send` runs once the bytes are on the socket.
    fn exchange(
        &mut self,
        request: &mut Message,
        after_send: impl FnOnce(&mut Self),
    ) -> Result<Received, Failure> {
        let framed = self
            .codec
            .encode_signed(request, &self.key)
            .and_then(|body| self.codec.frame(body))
            .map_err(|e| Failure::Unencodable(e.to_string()))?;
        let mut session = self.link.connect()?;
        session.send(&framed)?;
        let stan = request.text(11).unwrap_or("-").to_string();
        self.log("TXN", &format!("sent mti={} stan={stan}", request.mti));
        after_send(self);
        let expected = request.reply().mti;
        let deadline = Instant::now() + self.link.timeout();
        loop {
            let mut garbled = Vec::new();
            let received = session.receive(&self.codec, deadline, |e| garbled.push(e));
            for problem in garbled {
                self.log("TXN", &format!("garbled reply ignored: {problem}"));
            }
            let received = received?;
            let reply = &received.message;
            if reply.mti != expected {
                self.log("TXN", &format!("unexpected mti={} ignored", reply.mti));
                continue;
            }
            let rc = reply.text(39).unwrap_or("--");
            let reply_stan = reply.text(11).unwrap_or("-");
            self.log(
                "TXN",
                &format!("reply mti={} stan={reply_stan} rc={rc}", reply.mti),
            );
            return Ok(received);
        }
    }

    /// Judges the reply to a financial request. A reply whose MAC does not verify is not trusted,
    /// whatever its response code.
    fn judge(&self, request: &Message, received: &Received) -> Verdict {
        let reply = &received.message;
        let rc = reply.text(39).unwrap_or("--").to_string();
        let mac_ok = self.codec.verify_mac(&received.raw, reply, &self.key) == Some(true);
        if !mac_ok {
            return Verdict::BadMac {
                auth: reply.text(38).map(str::to_string),
            };
        }
        if let Some(&field) = [11u8, 41, 42, 4]
            .iter()
            .find(|&&n| reply.text(n) != request.text(n))
        {
            return Verdict::Mismatch(field);
        }
        if rc != "00" {
            return Verdict::Declined(rc);
        }
        Verdict::Approved {
            auth: reply.text(38).unwrap_or_default().to_string(),
            rrn: reply.text(37).unwrap_or_default().to_string(),
        }
    }

    // ---- sign-on and reversals ---------------------------------------------------------------

    fn signon(&mut self) {
        let Some(stan) = self.next_stan() else {
            return self.log("SIGNON", "failed stan=- why=\"NVM write failed\"");
        };
        let mut request = self.message("0800");
        request
            .set(11, stan.as_str())
            .set(60, format!("00{}{NET_SIGNON}", self.batch()));
        match self.exchange(&mut request, |_| {}) {
            Ok(reply) if reply.message.text(39) == Some("00") => {
                self.signed_on = true;
                self.log("SIGNON", &format!("ok stan={stan}"));
            }
            Ok(reply) => {
                let rc = reply.message.text(39).unwrap_or("--").to_string();
                self.log("SIGNON", &format!("failed stan={stan} rc={rc}"));
            }
            Err(failure) => self.log(
                "SIGNON",
                &format!("failed stan={stan} why={}", describe(&failure)),
            ),
        }
    }

    /// Makes the terminal ready for a financial request: signed on and no reversal pending.
    fn ready_for_online(&mut self) -> Result<(), String> {
        if !self.signed_on {
            self.signon();
            if !self.signed_on {
                return Err("not signed on, host unreachable".into());
            }
        }
        if self.reversal().is_some_and(|r| r.exhausted) {
            return Err("reversal failed earlier and is kept: terminal blocked".into());
        }
        if self.reversal().is_some() {
            self.deliver_reversal();
        }
        match self.reversal() {
            Some(r) => Err(format!("reversal of stan={} still pending", r.stan)),
            None => Ok(()),
        }
    }

    /// Records why the current request must be reversed, then sends it if the policy says now.
    fn begin_reversal(&mut self, reason: &str, auth: Option<String>, icc: Option<String>) {
        self.update_reversal(|r| {
            r.reason = reason.to_string();
            if auth.is_some() {
                r.auth_code = auth;
            }
            if icc.is_some() {
                r.icc = icc;
            }
        });
        self.persist();
        if let Some(r) = self.reversal().cloned() {
            self.log(
                "REVERSAL",
                &format!("pending stan={} reason={}", r.stan, r.reason),
            );
        }
        if self.settings.policy.reversal_trigger == ReversalTrigger::Immediate {
            if !self.signed_on {
                self.signon();
            }
            self.deliver_reversal();
        }
    }

    /// Sends the pending reversal until it is accepted, the host is unreachable, or N attempts
    /// failed (then the exhaustion policy applies).
    fn deliver_reversal(&mut self) {
        let limit = self.settings.policy.reversal_attempts;
        while let Some(record) = self.reversal().cloned().filter(|r| !r.exhausted) {
            if record.attempts >= limit {
                // A power cut between the last attempt and its policy: apply it, send nothing more.
                self.exhaust(|_| {});
                return self.log_exhausted(&record);
            }
            let mut request = self.reversal_request(&record);
            let attempt = format!("{}/{limit}", record.attempts + 1);
            let outcome = self.exchange(&mut request, |_| {});
            let rejected = match outcome {
                Err(Failure::Unreachable(why)) => {
                    self.log("REVERSAL", &format!("unreachable stan={} why={why}", record.stan));
                    return;
                }
                Ok(reply) if self.reversal_accepted(&request, &reply) => {
                    self.set_reversal(None);
                    self.persist();
                    let rc = reply.message.text(39).unwrap_or("--").to_string();
                    self.log("REVERSAL", &format!("done stan={} rc={rc}", record.stan));
                    return;
                }
                Ok(reply) => format!("rc={}", reply.message.text(39).unwrap_or("--")),
                Err(failure) => describe(&failure),
            };
            let line = format!("rejected stan={} {rejected} attempt={attempt}", record.stan);
            if record.attempts + 1 >= limit {
                // The attempt and the policy that follows it are one write.
                self.exhaust(|r| r.attempts += 1);
                self.log("REVERSAL", &line);
                return self.log_exhausted(&record);
            }
            self.update_reversal(|r| r.attempts += 1);
            self.persist();
            self.log("REVERSAL", &line);
        }
    }

    /// Applies the exhaustion policy (after `last_change` to the record) in one flush.
    fn exhaust(&mut self, last_change: impl FnOnce(&mut ReversalRecord)) {
        self.update_reversal(last_change);
        match self.settings.policy.exhaustion {
            Exhaustion::DropAndNotify => self.set_reversal(None),
            Exhaustion::KeepAndBlock => self.update_reversal(|r| r.exhausted = true),
        }
        self.persist();
    }

    fn log_exhausted(&mut self, record: &ReversalRecord) {
        let policy = match self.settings.policy.exhaustion {
            Exhaustion::DropAndNotify => "drop_and_notify",
            Exhaustion::KeepAndBlock => "keep_and_block",
        };
        self.log(
            "REVERSAL",
            &format!("failed stan={} policy={policy}", record.stan),
        );
    }

    fn reversal_accepted(&self, request: &Message, reply: &Received) -> bool {
        let message = &reply.message;
        let rc = message.text(39).unwrap_or("--");
        self.codec.verify_mac(&reply.raw, message, &self.key) == Some(true)
            && message.text(11) == request.text(11)
            && self
                .settings
                .policy
                .reversal_success_codes
                .iter()
                .any(|c| c == rc)
    }

    /// Rebuilds the 0400 from the stored record alone (rule 4): no PIN block, no track data.
    fn reversal_request(&self, r: &ReversalRecord) -> Message {
        let mut request = self.message("0400");
        request
            .set(2, r.pan.as_str())
            .set(3, r.processing_code.as_str())
            .set(4, r.amount.as_str())
            .set(11, r.stan.as_str())
            .set(14, r.expiry.as_str())
            .set(22, r.entry_mode.as_str())
            .set(25, r.condition.as_str())
            .set(39, r.reason.as_str())
            .set(41, r.tid.as_str())
            .set(42, r.mid.as_str())
            .set(49, r.currency.as_str())
            .set(60, r.field60.as_str());
        if let Some(auth) = &r.auth_code {
            request.set(38, auth.as_str());
        }
        if let Some(icc) = r.icc.as_ref().and_then(|h| hex::decode(h).ok()) {
            request.set(55, icc);
        }
        if let Some(field61) = &r.field61 {
            request.set(61, field61.as_str());
        }
        request
    }

    // ---- sale ----------------------------------------------------------------------------------

    fn card_present(&self, inserted: &std::path::Path) -> bool {
        self.slot.inserted().as_deref() == Some(inserted)
    }

    fn sale(&mut self, amount: u64) {
        let (card_path, card) = match self.slot.read() {
            Ok(card) => card,
            Err(why) => return self.log("TERMINATED", &format!("stan=- why=\"{why}\"")),
        };
        self.log(
            "CARD",
            &format!("read name=\"{}\" pan={}", card.name, mask(&card.pan)),
        );
        std::thread::sleep(Duration::from_millis(self.settings.timing.card_read_ms));
        if let Err(why) = self.ready_for_online() {
            return self.log("REFUSED", &format!("stan=- why=\"{why}\""));
        }
        let Some(stan) = self.next_stan() else {
            return self.log("TERMINATED", "stan=- why=\"NVM write failed, nothing sent\"");
        };
        self.log("TXN", &format!("prepared stan={stan} type=sale amount={amount}"));
        if !self.card_present(&card_path) {
            return self.log(
                "TERMINATED",
                &format!("stan={stan} why=\"card removed before the request\""),
            );
        }
        let mut request = self.sale_request(&card, &stan, amount);
        let record = self.reversal_record(&request, SALE);
        let defects = self.settings.defects.clone();
        if !defects.reversal_after_send && !self.arm_reversal(record.clone()) {
            return self.log(
                "TERMINATED",
                &format!("stan={stan} why=\"NVM write failed, nothing sent\""),
            );
        }
        let authorized = self.authorize(&mut request, |t| {
            if defects.reversal_after_send {
                t.set_reversal(Some(record.clone()));
                t.persist();
            }
        });
        let Some((auth, rrn)) = authorized else {
            return;
        };
        self.complete_sale(&card_path, &card, &request, auth, rrn);
    }

    /// After the host approved: the 2nd GENERATE AC, then one atomic commit (rule 2).
    fn complete_sale(
        &mut self,
        card_path: &std::path::Path,
        card: &Card,
        request: &Message,
        auth: String,
        rrn: String,
    ) {
        let stan = request.text(11).unwrap_or_default().to_string();
        let completion_code = self.settings.policy.completion_failure_code.clone();
        if self.settings.defects.clear_reversal_before_log {
            self.set_reversal(None);
            self.persist();
        } else {
            let (stored_auth, code) = (auth.clone(), completion_code.clone());
            self.update_reversal(|r| {
                r.reason = code;
                r.auth_code = Some(stored_auth);
            });
            if self.persist() {
                self.log("TXN", &format!("approval_pending stan={stan} auth={auth}"));
            }
        }
        std::thread::sleep(Duration::from_millis(self.settings.timing.second_generate_ac_ms));
        if !self.card_present(card_path) {
            self.log("CARD", &format!("removed stan={stan}"));
            self.log(
                "TERMINATED",
                &format!("stan={stan} why=\"card removed before completion\""),
            );
            if self.settings.defects.no_reversal_on_card_removal {
                self.set_reversal(None);
                self.persist();
                return;
            }
            return self.begin_reversal(&completion_code, Some(auth), None);
        }
        if card.second_generate_ac == SecondGenerateAc::Aac {
            self.log("EMV", &format!("second_generate_ac=AAC stan={stan}"));
            self.log(
                "TERMINATED",
                &format!("stan={stan} why=\"the card declined the approval (AAC)\""),
            );
            let icc = hex::decode(&card.icc).unwrap_or_default();
            let tags = hex::encode_upper(emv::reversal_tags(&icc, Some(AAC)));
            return self.begin_reversal(&completion_code, Some(auth), Some(tags));
        }
        self.log("EMV", &format!("second_generate_ac=TC stan={stan}"));
        let record = committed_record(RecordKind::Sale, request, auth, rrn);
        let pending = self.reversal().cloned();
        self.nvm.ram.records.push(record.clone());
        self.set_reversal(None);
        if !self.persist() {
            // The commit did not reach the flash: the approval cannot stand, the reversal must.
            self.nvm.ram.records.pop();
            self.set_reversal(pending);
            self.log(
                "TERMINATED",
                &format!("stan={stan} why=\"NVM write failed at completion\""),
            );
            return self.begin_reversal(&completion_code, Some(record.auth_code), None);
        }
        self.log(
            "APPROVED",
            &format!(
                "stan={stan} amount={} auth={} rrn={}",
                record.amount, record.auth_code, record.rrn
            ),
        );
        self.receipt(&record);
    }

    /// Sends a financial request whose reversal record is already stored, and settles every
    /// outcome but an approval (reversal, decline, abort); returns the auth code and RRN only when
    /// the host approved.
    fn authorize(
        &mut self,
        request: &mut Message,
        after_send: impl FnOnce(&mut Self),
    ) -> Option<(String, String)> {
        let stan = request.text(11).unwrap_or_default().to_string();
        let mut outcome = self.exchange(request, after_send);
        if self.settings.defects.resend_on_timeout && outcome.as_ref().is_err_and(|f| *f == Failure::Timeout)
        {
            self.log("TXN", &format!("resend stan={stan} (defect resend_on_timeout)"));
            outcome = self.exchange(request, |_| {});
        }
        let received = match outcome {
            Ok(received) => received,
            Err(Failure::Unreachable(why)) => {
                self.set_reversal(None);
                self.persist();
                let line = format!("stan={stan} why=\"host unreachable: {why}\"");
                self.log("TERMINATED", &line);
                return None;
            }
            Err(Failure::Unencodable(why)) => {
                self.set_reversal(None);
                self.persist();
                let line = format!("stan={stan} why=\"the request cannot be encoded: {why}\"");
                self.log("TERMINATED", &line);
                return None;
            }
            Err(failure) => {
                self.log("TXN", &format!("timeout stan={stan} why={}", describe(&failure)));
                self.begin_reversal("98", None, None);
                return None;
            }
        };
        match self.judge(request, &received) {
            Verdict::Approved { auth, rrn } => return Some((auth, rrn)),
            Verdict::Declined(rc) => {
                self.set_reversal(None);
                self.persist();
                if rc == "A0" {
                    // The host could not verify our MAC: sign on again for fresh keys.
                    self.signed_on = false;
                }
                let line = format!("stan={stan} rc={rc} reason=\"{}\"", decline_reason(&rc));
                self.log("DECLINED", &line);
            }
            Verdict::BadMac { auth } => {
                self.log("TXN", &format!("mac_error stan={stan}"));
                self.signed_on = false;
                self.begin_reversal("A0", auth, None);
            }
            Verdict::Mismatch(field) => {
                self.log("TXN", &format!("mismatch stan={stan} field={field}"));
                self.begin_reversal("06", None, None);
            }
        }
        None
    }

    fn sale_request(&self, card: &Card, stan: &str, amount: u64) -> Message {
        let (local_time, local_date) = clock::time_and_date();
        let mut request = self.message("0200");
        request
            .set(2, card.pan.as_str())
            .set(3, SALE)
            .set(4, format!("{amount:012}"))
            .set(11, stan)
            .set(12, local_time.as_str())
            .set(13, local_date.as_str())
            .set(14, card.expiry.as_str())
            .set(22, card.entry_mode.as_str())
            .set(23, card.sequence.as_str())
            .set(25, "00")
            .set(35, card.track2.as_str())
            .set(49, self.settings.identity.currency.as_str())
            .set(60, format!("22{}{NET_FINANCIAL}", self.batch()));
        if let Ok(icc) = hex::decode(&card.icc) {
            if !icc.is_empty() {
                request.set(55, icc);
            }
        }
        request
    }

    /// The reversal record of a financial request, with reason 98 until something else is known.
    fn reversal_record(&self, request: &Message, processing_code: &str) -> ReversalRecord {
        let text = |n: u8| request.text(n).unwrap_or_default().to_string();
        ReversalRecord {
            processing_code: processing_code.to_string(),
            pan: text(2),
            amount: text(4),
            stan: text(11),
            expiry: text(14),
            entry_mode: text(22),
            condition: text(25),
            auth_code: None,
            tid: text(41),
            mid: text(42),
            currency: text(49),
            icc: request
                .bytes(55)
                .map(|icc| hex::encode_upper(emv::reversal_tags(icc, None))),
            field60: text(60),
            field61: request.text(61).map(str::to_string),
            reason: "98".into(),
            attempts: 0,
            exhausted: false,
        }
    }

    // ---- void ----------------------------------------------------------------------------------

    fn void(&mut self, original_stan: &str) {
        let original = self
            .nvm
            .ram
            .records
            .iter()
            .find(|r| r.kind == RecordKind::Sale && r.stan == original_stan)
            .cloned();
        let original = match original {
            Some(o) if o.voided_by.is_some() => {
                return self.log(
                    "REFUSED",
                    &format!("stan=- original={original_stan} why=\"already voided\""),
                );
            }
            Some(o) => o,
            None if self.settings.defects.void_unknown_sent => TxnRecord {
                kind: RecordKind::Sale,
                stan: original_stan.to_string(),
                amount: 1,
                pan: "6200000000000000".into(),
                expiry: "0000".into(),
                entry_mode: "051".into(),
                rrn: "000000000000".into(),
                auth_code: "000000".into(),
                date: "0101".into(),
                voided_by: None,
                original_stan: None,
            },
            None => {
                return self.log(
                    "REFUSED",
                    &format!("stan=- original={original_stan} why=\"unknown trace\""),
                );
            }
        };
        if let Err(why) = self.ready_for_online() {
            return self.log("REFUSED", &format!("stan=- why=\"{why}\""));
        }
        let Some(stan) = self.next_stan() else {
            return self.log("TERMINATED", "stan=- why=\"NVM write failed, nothing sent\"");
        };
        let line = format!("prepared stan={stan} type=void original={original_stan}");
        self.log("TXN", &line);
        let mut request = self.void_request(&original, &stan);
        if !self.arm_reversal(self.reversal_record(&request, VOID)) {
            return self.log(
                "TERMINATED",
                &format!("stan={stan} why=\"NVM write failed, nothing sent\""),
            );
        }
        let Some((auth, rrn)) = self.authorize(&mut request, |_| {}) else {
            return;
        };
        let mut record = committed_record(RecordKind::Void, &request, auth, rrn);
        record.original_stan = Some(original_stan.to_string());
        if let Some(sale) = self.nvm.ram.records.iter_mut().find(|r| r.stan == original_stan) {
            sale.voided_by = Some(stan.clone());
        }
        self.nvm.ram.records.push(record.clone());
        self.set_reversal(None);
        self.persist();
        let line = format!("stan={stan} original={original_stan} amount={}", original.amount);
        self.log("VOIDED", &line);
        self.receipt(&record);
    }

    fn void_request(&self, original: &TxnRecord, stan: &str) -> Message {
        let (local_time, local_date) = clock::time_and_date();
        let mut request = self.message("0200");
        request
            .set(2, original.pan.as_str())
            .set(3, VOID)
            .set(4, format!("{:012}", original.amount))
            .set(11, stan)
            .set(12, local_time.as_str())
            .set(13, local_date.as_str())
            .set(14, original.expiry.as_str())
            .set(22, original.entry_mode.as_str())
            .set(25, "00")
            .set(37, original.rrn.as_str())
            .set(38, original.auth_code.as_str())
            .set(49, self.settings.identity.currency.as_str())
            .set(60, format!("23{}{NET_FINANCIAL}", self.batch()))
            .set(61, format!("{}{}{}", self.batch(), original.stan, original.date));
        request
    }

    // ---- settlement, status, receipts ------------------------------------------------------------

    fn settle(&mut self) {
        if let Err(why) = self.ready_for_online() {
            return self.log("REFUSED", &format!("stan=- why=\"{why}\""));
        }
        let (count, amount) = self
            .nvm
            .ram
            .records
            .iter()
            .filter(|r| r.kind == RecordKind::Sale && r.voided_by.is_none())
            .fold((0u32, 0u64), |(c, a), r| (c + 1, a + r.amount));
        let batch = self.batch();
        let Some(stan) = self.next_stan() else {
            return self.log(
                "SETTLE",
                &format!("failed batch={batch} why=\"NVM write failed\""),
            );
        };
        let mut request = self.message("0500");
        request
            .set(11, stan.as_str())
            .set(49, self.settings.identity.currency.as_str())
            .set(60, format!("00{batch}{NET_SETTLEMENT}"))
            .set(63, format!("{count:03}{amount:012}"));
        match self.exchange(&mut request, |_| {}) {
            Ok(reply) if reply.message.text(39) == Some("00") => {
                let balanced = reply.message.text(63).is_some_and(|t| t.starts_with('1'));
                self.nvm.ram.batch = self.nvm.ram.batch % 999_999 + 1;
                self.nvm.ram.records.clear();
                self.persist();
                let balanced = if balanced { "yes" } else { "no" };
                self.log(
                    "SETTLED",
                    &format!("batch={batch} count={count} amount={amount} balanced={balanced}"),
                );
            }
            Ok(reply) => {
                let rc = reply.message.text(39).unwrap_or("--").to_string();
                self.log("SETTLE", &format!("failed batch={batch} rc={rc}"));
            }
            Err(failure) => self.log(
                "SETTLE",
                &format!("failed batch={batch} why={}", describe(&failure)),
            ),
        }
    }

    fn status(&mut self) {
        let reversal = match self.reversal() {
            Some(r) => format!(
                "{}/{}/{}{}",
                r.stan,
                r.reason,
                r.attempts,
                if r.exhausted { "/failed" } else { "" }
            ),
            None => "none".into(),
        };
        let line = format!(
            "stan={:06} batch={:06} signed_on={} records={} reversal={reversal}",
            self.nvm.ram.stan,
            self.nvm.ram.batch,
            self.signed_on,
            self.nvm.ram.records.len()
        );
        self.log("STATUS", &line);
    }

    fn reprint(&mut self) {
        match self.nvm.ram.records.last().cloned() {
            Some(record) => self.receipt(&record),
            None => self.log("REFUSED", "stan=- why=\"no transaction to reprint\""),
        }
    }

    fn receipt(&mut self, record: &TxnRecord) {
        let kind = match record.kind {
            RecordKind::Sale => "sale",
            RecordKind::Void => "void",
        };
        let line = format!(
            "type={kind} stan={} amount={}.{:02} card={} auth={} rrn={}",
            record.stan,
            record.amount / 100,
            record.amount % 100,
            mask(&record.pan),
            record.auth_code,
            record.rrn
        );
        self.log("RECEIPT", &line);
    }

    fn log(&mut self, tag: &str, text: &str) {
        self.console.log(tag, text);
    }
}

/// The record of a request the host approved and the terminal completed.
fn committed_record(kind: RecordKind, request: &Message, auth_code: String, rrn: String) -> TxnRecord {
    let text = |n: u8| request.text(n).unwrap_or_default().to_string();
    TxnRecord {
        kind,
        stan: text(11),
        amount: request.text(4).and_then(|a| a.parse().ok()).unwrap_or(0),
        pan: text(2),
        expiry: text(14),
        entry_mode: text(22),
        rrn,
        auth_code,
        date: text(13),
        voided_by: None,
        original_stan: None,
    }
}

fn describe(failure: &Failure) -> String {
    match failure {
        Failure::Unreachable(why) => format!("unreachable ({why})"),
        Failure::Unencodable(why) => format!("cannot be encoded ({why})"),
        Failure::Timeout => "timeout".into(),
        Failure::Closed(why) => format!("closed ({why})"),
    }
}

/// The first six and last four characters of a card number, the rest starred.
fn mask(pan: &str) -> String {
    let chars: Vec<char> = pan.chars().collect();
    if chars.len() <= 10 {
        return "*".repeat(chars.len());
    }
    let (head, tail) = (&chars[..6], &chars[chars.len() - 4..]);
    format!(
        "{}{}{}",
        head.iter().collect::<String>(),
        "*".repeat(chars.len() - 10),
        tail.iter().collect::<String>()
    )
}

/// What a decline code means to the cardholder.
fn decline_reason(rc: &str) -> &'static str {
    match rc {
        "05" => "do not honour",
        "12" => "transaction invalid",
        "25" => "original not found",
        "51" => "insufficient funds",
        "54" => "expired card",
        "55" => "wrong PIN",
        "61" => "amount limit exceeded",
        "64" => "amount differs from the original",
        "91" => "issuer unavailable",
        "94" => "duplicate transmission",
        "96" => "system malfunction",
        "A0" => "MAC error, sign on again",
        _ => "declined",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn card_numbers_are_masked_on_receipts() {
        assert_eq!(mask("6222021234567890123"), "622202*********0123");
        assert_eq!(mask("1234"), "****");
    }
}
