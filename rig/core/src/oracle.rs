//! The oracle: the eight invariants of `shared/domain.md` §5, judged from what the acquirer host
//! journalled and booked and what the terminal showed on its console.
//!
//! The host's journal orders the wire (by `seq`); the terminal's canonical events
//! (`fixtures/terminals/README.md`) say what the terminal decided, on the same monotonic clock.
//! Every finding names its invariant and STAN and quotes the journal entries, terminal events and
//! ledger lines behind it. A reversal the terminal reported as failed, or that is still pending at
//! the end, is never a pass: it is reported as unresolved (domain.md §4, P12).
//!
//! Terminal events carry no terminal id; they are matched to requests by STAN. An event with a
//! `tid` field applies to that terminal only.

use std::collections::{BTreeMap, BTreeSet};

use posrig_host::{Direction, Entry, EntryKind, JournalEntry, Key, Ledger};

use crate::profile::Event;

/// A canonical terminal event and when the rig saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TerminalEvent {
    /// Rig clock (CLOCK_MONOTONIC) in nanoseconds, the clock of [`JournalEntry::t_ns`].
    pub t_ns: u64,
    /// The event.
    pub event: Event,
}

/// Everything the oracle judges: the host's wire journal and ledger, and the terminal's events.
#[derive(Debug, Clone, Copy)]
pub struct Observation<'a> {
    /// The host's journal.
    pub journal: &'a [JournalEntry],
    /// The host's ledger.
    pub ledger: &'a Ledger,
    /// The terminal's canonical events.
    pub terminal: &'a [TerminalEvent],
}

/// A broken invariant.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Violation {
    /// The invariant's number in domain.md §5.
    pub invariant: u8,
    /// The STAN concerned (for a settlement, the STAN of its 0500).
    pub stan: String,
    /// What is wrong, in words.
    pub summary: String,
    /// The journal entries, terminal events and ledger lines involved, with their times.
    pub evidence: Vec<String>,
}

/// A reversal the terminal gave up on, or that is still pending: not a pass, not a verdict.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Unresolved {
    /// The STAN of the request to reverse.
    pub stan: String,
    /// What is unresolved, in words.
    pub summary: String,
    /// The journal entries, terminal events and ledger lines involved, with their times.
    pub evidence: Vec<String>,
}

/// Judges a run from the host's journal and ledger and every console line the terminal wrote
/// (those with a canonical event are the terminal's side of the observation).
pub fn judge(
    journal: &[JournalEntry],
    ledger: &Ledger,
    console: &[crate::capability::ConsoleLine],
) -> Verdict {
    let terminal: Vec<TerminalEvent> = console
        .iter()
        .filter_map(|line| {
            Some(TerminalEvent {
                t_ns: line.t_ns,
                event: line.event.clone()?,
            })
        })
        .collect();
    check(&Observation {
        journal,
        ledger,
        terminal: &terminal,
    })
}

/// The oracle's verdict on one observation.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Verdict {
    /// Broken invariants, by invariant then STAN.
    pub violations: Vec<Violation>,
    /// Reversals left failed or pending.
    pub unresolved: Vec<Unresolved>,
}

impl Verdict {
    /// True when no invariant is broken and nothing is left unresolved.
    pub fn passed(&self) -> bool {
        self.violations.is_empty() && self.unresolved.is_empty()
    }
}

/// Judges `observation` against invariants 1 to 8 of domain.md §5.
pub fn check(observation: &Observation) -> Verdict {
    let facts = Facts::new(observation);
    let mut findings = Findings::default();
    let checks: [fn(&Facts, &mut Findings); 11] = [
        check_no_double_charge,
        check_reversed_exactly_once,
        check_no_needless_reversal,
        check_stans_increase,
        check_stans_not_reused,
        check_reversal_goes_first,
        check_void_states_agree,
        check_voids_have_originals,
        check_no_lost_approval,
        check_settlements_balance,
        check_reversal_messages,
    ];
    for check in checks {
        check(&facts, &mut findings);
    }
    report_unresolved(&facts, &mut findings);
    findings.into_verdict()
}

// ---- what the checks read ----------------------------------------------------------------------

/// Processing code of a void (domain.md §1).
const VOID_PROCESSING_CODE: &str = "200000";
/// Where 60.2 (batch, n6) sits in field 60, after 60.1 (type, n2) (domain.md §2).
const BATCH_IN_60: std::ops::Range<usize> = 2..8;
/// STANs are six digits and wrap; a later STAN is "greater" within half the range (serial numbers).
const STAN_MODULUS: u32 = 1_000_000;
/// Fields a 0400 copies from the request it reverses (domain.md §3), 61 only for a void.
const COPIED_FIELDS: [u8; 6] = [3, 4, 11, 41, 42, 60];
/// Fields a 0400 must never carry: track 2, PIN block, security control.
const FORBIDDEN_FIELDS: [(u8, &str); 3] = [(35, "track 2"), (52, "PIN block"), (53, "PIN security data")];
/// Reasons accepted when the terminal showed no cause (a power cut).
const REASONS_WITHOUT_EVIDENCE: [&str; 3] = ["98", "96", "06"];

/// Reading a journal entry as an ISO 8583 message.
trait WireMessage {
    fn field(&self, number: u8) -> Option<&str>;
    fn is(&self, direction: Direction, mti: &str) -> bool;
    fn tid(&self) -> &str;
    fn stan_text(&self) -> &str;
    fn batch(&self) -> &str;
    fn key(&self) -> Key;
    fn is_void(&self) -> bool;
}

impl WireMessage for JournalEntry {
    fn field(&self, number: u8) -> Option<&str> {
        self.fields.get(&number).map(String::as_str)
    }

    fn is(&self, direction: Direction, mti: &str) -> bool {
        self.direction == direction && self.mti.as_deref() == Some(mti)
    }

    fn tid(&self) -> &str {
        self.field(41).unwrap_or_default()
    }

    fn stan_text(&self) -> &str {
        self.stan.as_deref().unwrap_or_default()
    }

    fn batch(&self) -> &str {
        self.field(60)
            .and_then(|f| f.get(BATCH_IN_60))
            .unwrap_or_default()
    }

    fn key(&self) -> Key {
        Key {
            tid: self.tid().to_string(),
            batch: self.batch().to_string(),
            stan: self.stan_text().to_string(),
        }
    }

    fn is_void(&self) -> bool {
        self.field(3) == Some(VOID_PROCESSING_CODE)
    }
}

/// True for a request that goes online with a STAN of its own (everything but a 0400).
fn takes_a_stan(entry: &JournalEntry) -> bool {
    entry.direction == Direction::In && entry.stan.is_some() && entry.mti.as_deref() != Some("0400")
}

/// True for a financial request (0200) or a settlement (0500) arriving at the host.
fn is_online_request(entry: &JournalEntry) -> bool {
    entry.is(Direction::In, "0200") || entry.is(Direction::In, "0500")
}

/// True when `later` follows `earlier` as a STAN: strictly greater, modulo the six-digit wrap.
fn stan_follows(earlier: u32, later: u32) -> bool {
    let step = (later + STAN_MODULUS - earlier % STAN_MODULUS) % STAN_MODULUS;
    step != 0 && step < STAN_MODULUS / 2
}

/// The host's journal in wire order.
struct Wire<'a> {
    entries: Vec<&'a JournalEntry>,
}

impl<'a> Wire<'a> {
    fn new(journal: &'a [JournalEntry]) -> Wire<'a> {
        let mut entries: Vec<&JournalEntry> = journal.iter().collect();
        entries.sort_by_key(|e| e.seq);
        Wire { entries }
    }

    /// Requests of type `mti` the host received.
    fn received(&self, mti: &'a str) -> impl Iterator<Item = &'a JournalEntry> + '_ {
        self.entries
            .iter()
            .copied()
            .filter(move |e| e.is(Direction::In, mti))
    }

    /// 0400s for `tid`/`stan` the host received.
    fn reversals_of(&self, tid: &'a str, stan: &'a str) -> impl Iterator<Item = &'a JournalEntry> + '_ {
        self.received("0400")
            .filter(move |e| e.tid() == tid && e.stan_text() == stan)
    }

    /// 0400s for `tid`/`stan` received after position `seq`.
    fn reversals_after(
        &self,
        tid: &'a str,
        stan: &'a str,
        seq: u64,
    ) -> impl Iterator<Item = &'a JournalEntry> + '_ {
        self.reversals_of(tid, stan).filter(move |e| e.seq > seq)
    }

    /// The first 0200 or 0500 from `tid` after position `seq`.
    fn next_online_request(&self, tid: &str, seq: u64) -> Option<&'a JournalEntry> {
        self.entries
            .iter()
            .copied()
            .find(|e| e.seq > seq && is_online_request(e) && e.tid() == tid)
    }

    /// The last 0200 with the 0400's terminal and STAN received before it.
    fn original_of(&self, reversal: &JournalEntry) -> Option<&'a JournalEntry> {
        self.received("0200")
            .filter(|e| e.seq < reversal.seq && e.tid() == reversal.tid() && e.stan == reversal.stan)
            .last()
    }

    /// Messages the host sent on the request's connection after it.
    fn replies_to(&self, request: &'a JournalEntry) -> impl Iterator<Item = &'a JournalEntry> + '_ {
        self.entries.iter().copied().filter(move |e| {
            e.direction == Direction::Out && e.connection == request.connection && e.seq > request.seq
        })
    }

    /// The response code of the host's reply to `request`, if it sent one.
    fn answer_to(&self, request: &'a JournalEntry) -> Option<&'a str> {
        self.replies_to(request)
            .find(|e| e.stan == request.stan)?
            .field(39)
    }

    /// Every entry on a connection that carried a request from `tid` with `stan` (`tid` "" for any).
    fn about(&self, tid: &str, stan: &str) -> Vec<&'a JournalEntry> {
        let connections: BTreeSet<u64> = self
            .entries
            .iter()
            .filter(|e| e.direction == Direction::In && e.stan_text() == stan && same_tid(e.tid(), tid))
            .map(|e| e.connection)
            .collect();
        self.entries
            .iter()
            .copied()
            .filter(|e| connections.contains(&e.connection))
            .collect()
    }
}

/// What became of a reversal, as the terminal showed it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Reversal {
    /// The terminal never showed one.
    Never,
    /// Stored and waiting to go out.
    Pending,
    /// Accepted by the host and cleared.
    Done,
    /// Given up after N attempts, under this policy.
    Failed(String),
    /// Was pending, then the terminal stopped showing it without delivering it (after a boot, or
    /// per a `status` line): the record is gone.
    Lost,
}

impl Reversal {
    fn unresolved(&self) -> bool {
        matches!(self, Reversal::Pending | Reversal::Failed(_))
    }

    /// The state after `event`, for the reversal of `stan`.
    fn after(self, event: &Event, stan: &str) -> Reversal {
        let mine = event.get("stan") == stan;
        match (event.name.as_str(), self) {
            (
                "reversal_pending" | "reversal_rejected" | "reversal_unreachable",
                failed @ Reversal::Failed(_),
            ) if mine => failed,
            ("reversal_pending" | "reversal_rejected" | "reversal_unreachable", _) if mine => {
                Reversal::Pending
            }
            ("reversal_done", _) if mine => Reversal::Done,
            ("reversal_failed", _) if mine => Reversal::Failed(event.get("policy").to_string()),
            ("boot", Reversal::Pending) => Reversal::Lost,
            ("status", state) => Reversal::shown_by_status(event.get("reversal"), stan, state),
            (_, state) => state,
        }
    }

    /// The state after a `status` line whose `reversal` field is "none" or "STAN/reason/attempts[/failed]".
    fn shown_by_status(shown: &str, stan: &str, state: Reversal) -> Reversal {
        let mut parts = shown.split('/');
        let shown_stan = parts.next().unwrap_or_default();
        let failed = parts.any(|p| p == "failed");
        match state {
            Reversal::Failed(policy) => Reversal::Failed(policy),
            _ if shown_stan == stan && failed => Reversal::Failed("kept".into()),
            _ if shown_stan == stan => Reversal::Pending,
            Reversal::Pending => Reversal::Lost,
            state => state,
        }
    }
}

/// True when an event or message of terminal `a` may concern terminal `b` ("" matches any).
fn same_tid(a: &str, b: &str) -> bool {
    a.is_empty() || b.is_empty() || a == b
}

/// The terminal's console, in time order.
struct Console<'a> {
    events: Vec<&'a TerminalEvent>,
}

impl<'a> Console<'a> {
    fn new(terminal: &'a [TerminalEvent]) -> Console<'a> {
        let mut events: Vec<&TerminalEvent> = terminal.iter().collect();
        events.sort_by_key(|e| e.t_ns);
        Console { events }
    }

    fn of_terminal<'s>(&'s self, tid: &'s str) -> impl Iterator<Item = &'a TerminalEvent> + 's {
        self.events
            .iter()
            .copied()
            .filter(move |e| same_tid(e.event.get("tid"), tid))
    }

    /// Events `name` of `tid` whose field `field` is `value`.
    fn with<'s>(
        &'s self,
        name: &'s str,
        tid: &'s str,
        field: &'s str,
        value: &'s str,
    ) -> impl Iterator<Item = &'a TerminalEvent> + 's {
        self.of_terminal(tid)
            .filter(move |e| e.event.name == name && e.event.get(field) == value)
    }

    fn saw(&self, name: &str, tid: &str, stan: &str) -> bool {
        self.with(name, tid, "stan", stan).next().is_some()
    }

    /// True when the terminal committed the request `stan` as approved: a sale or a void, as it
    /// announced, or as a receipt shows (a receipt is printed only from a committed record: a
    /// power cut between the commit and its log line leaves one that only a reprint reveals).
    fn committed(&self, tid: &str, stan: &str) -> bool {
        self.saw("approved", tid, stan) || self.saw("voided", tid, stan) || self.saw("receipt", tid, stan)
    }

    /// `voided` events of the sale `sale`.
    fn voids_of(&self, tid: &str, sale: &str) -> Vec<&'a TerminalEvent> {
        self.with("voided", tid, "original", sale).collect()
    }

    /// What became of the reversal of `stan`.
    fn reversal(&self, tid: &str, stan: &str) -> Reversal {
        self.of_terminal(tid)
            .fold(Reversal::Never, |state, e| state.after(&e.event, stan))
    }

    /// STANs the terminal showed a reversal for, in order of first appearance.
    fn reversal_stans(&self) -> Vec<&'a str> {
        let mut stans: Vec<&str> = Vec::new();
        for e in &self.events {
            let stan = e.event.get("stan");
            if e.event.name.starts_with("reversal_") && !stans.contains(&stan) {
                stans.push(stan);
            }
        }
        stans
    }

    /// Events that mention `stan`, as its own STAN or as a void's original.
    fn about(&self, tid: &str, stan: &str) -> Vec<&'a TerminalEvent> {
        self.of_terminal(tid)
            .filter(|e| e.event.get("stan") == stan || e.event.get("original") == stan)
            .collect()
    }

    /// `boot` events strictly between two times.
    fn boots_between(&self, from_ns: u64, to_ns: u64) -> Vec<&'a TerminalEvent> {
        self.events
            .iter()
            .copied()
            .filter(|e| e.event.name == "boot" && e.t_ns > from_ns && e.t_ns < to_ns)
            .collect()
    }

    /// The codes a 0400 for `stan` may carry, by the cause the terminal showed (domain.md §3).
    fn reasons_for(&self, tid: &str, stan: &str) -> BTreeSet<&'static str> {
        let reasons: BTreeSet<&'static str> = self
            .of_terminal(tid)
            .filter(|e| e.event.get("stan") == stan)
            .flat_map(|e| cause_reasons(&e.event))
            .copied()
            .collect();
        if reasons.is_empty() {
            REASONS_WITHOUT_EVIDENCE.into_iter().collect()
        } else {
            reasons
        }
    }
}

/// The reversal reasons a terminal event calls for.
fn cause_reasons(event: &Event) -> &'static [&'static str] {
    match event.name.as_str() {
        "timeout" => &["98"],
        "mac_error" => &["A0"],
        "reply_mismatch" => &["06"],
        "card_removed" => &["96", "06"],
        "second_generate_ac" if event.get("result") == "AAC" => &["96", "06"],
        _ => &[],
    }
}

/// The journal, the ledger and the console, indexed for the checks.
struct Facts<'a> {
    wire: Wire<'a>,
    console: Console<'a>,
    ledger: &'a Ledger,
}

impl<'a> Facts<'a> {
    fn new(observation: &Observation<'a>) -> Facts<'a> {
        Facts {
            wire: Wire::new(observation.journal),
            console: Console::new(observation.terminal),
            ledger: observation.ledger,
        }
    }

    fn entries(&self, kind: EntryKind) -> impl Iterator<Item = &'a Entry> + '_ {
        self.ledger.entries.values().filter(move |e| e.kind == kind)
    }

    /// True when the reversal of `stan` is failed or still pending on the terminal.
    fn unresolved(&self, tid: &str, stan: &str) -> bool {
        self.console.reversal(tid, stan).unresolved()
    }

    /// True when the sale, or a void of it, has a reversal failed or still pending.
    fn sale_unresolved(&self, sale: &Entry) -> bool {
        self.unresolved(&sale.key.tid, &sale.key.stan)
            || self
                .entries(EntryKind::Void)
                .filter(|v| v.original.as_ref() == Some(&sale.key))
                .any(|v| self.unresolved(&v.key.tid, &v.key.stan))
    }

    /// A request the terminal was bound to reverse: neither committed nor seen declined.
    fn must_reverse(&self, tid: &str, stan: &str) -> bool {
        !self.console.committed(tid, stan) && !self.console.saw("declined", tid, stan)
    }

    /// The auth code the terminal received for `request`: field 38 of a reply the host sent on
    /// the request's connection that the terminal logged as received and did not reject as
    /// mismatched (a mismatched reply counts as no reply, domain.md §3 and P9).
    fn received_auth_code(&self, request: &'a JournalEntry) -> Option<&'a str> {
        let (tid, stan) = (request.tid(), request.stan_text());
        if self.console.saw("reply_mismatch", tid, stan) {
            return None;
        }
        self.wire.replies_to(request).find_map(|reply| {
            let auth = reply.field(38)?;
            let mti = reply.mti.as_deref()?;
            self.console
                .with("reply_received", tid, "stan", reply.stan_text())
                .any(|e| e.event.get("mti") == mti)
                .then_some(auth)
        })
    }

    /// True when the power was cut after the terminal received the auth code of `reversal`'s
    /// original and before it showed the code stored (`approval_pending`, or a pending reversal
    /// with a reason other than 98): the flash never held the code, so the reversal cannot carry
    /// it.
    fn auth_code_lost(&self, reversal: &JournalEntry) -> bool {
        let (tid, stan) = (reversal.tid(), reversal.stan_text());
        let Some(received_ns) = self
            .console
            .with("reply_received", tid, "stan", stan)
            .map(|e| e.t_ns)
            .next()
        else {
            return false;
        };
        let stored = self.console.saw("approval_pending", tid, stan)
            || self
                .console
                .with("reversal_pending", tid, "stan", stan)
                .any(|e| e.event.get("reason") != "98");
        !stored && !self.console.boots_between(received_ns, reversal.t_ns).is_empty()
    }

    /// Everything known about `stan` of `tid`, in time order: journal entries on its connections,
    /// terminal events that mention it, and the host's ledger entries for it.
    fn evidence(&self, tid: &str, stan: &str) -> Vec<String> {
        let mut timed: Vec<(u64, String)> = self
            .wire
            .about(tid, stan)
            .into_iter()
            .map(|e| (e.t_ns, journal_line(e)))
            .chain(
                self.console
                    .about(tid, stan)
                    .into_iter()
                    .map(|e| (e.t_ns, event_line(e))),
            )
            .collect();
        timed.sort_by_key(|(t, _)| *t);
        let ledger = self
            .ledger
            .entries
            .values()
            .filter(|e| e.key.stan == stan && same_tid(&e.key.tid, tid))
            .map(|e| ledger_line(self.ledger, e));
        timed.into_iter().map(|(_, line)| line).chain(ledger).collect()
    }
}

// ---- evidence lines ----------------------------------------------------------------------------

/// A time on the rig clock in milliseconds, to the microsecond.
fn ms(t_ns: u64) -> String {
    format!("{}.{:03} ms", t_ns / 1_000_000, (t_ns / 1_000) % 1_000)
}

/// Fields quoted in evidence, when present.
const QUOTED_FIELDS: [u8; 11] = [3, 4, 11, 35, 38, 39, 41, 52, 53, 60, 61];

fn journal_line(entry: &JournalEntry) -> String {
    let direction = match entry.direction {
        Direction::In => "host received",
        Direction::Out => "host sent",
        Direction::Event => "host event",
    };
    let fields: Vec<String> = QUOTED_FIELDS
        .iter()
        .filter_map(|&n| {
            let value = entry.field(n)?;
            let secret = FORBIDDEN_FIELDS.iter().any(|(f, _)| *f == n);
            Some(format!("{n}={}", if secret { "(present)" } else { value }))
        })
        .collect();
    let mti = entry.mti.as_deref().unwrap_or("-");
    format!(
        "{} journal #{} conn {} {direction} {mti} {} ({})",
        ms(entry.t_ns),
        entry.seq,
        entry.connection,
        fields.join(" "),
        entry.note
    )
}

fn event_line(event: &TerminalEvent) -> String {
    let fields = event.event.fields.iter().map(|(k, v)| format!(" {k}={v}"));
    format!(
        "{} terminal {}{}",
        ms(event.t_ns),
        event.event.name,
        fields.collect::<String>()
    )
}

fn ledger_line(ledger: &Ledger, entry: &Entry) -> String {
    let kind = match entry.kind {
        EntryKind::Sale => "sale",
        EntryKind::Void => "void",
    };
    let (original, net_of) = match &entry.original {
        Some(sale) => (format!(" of {}", sale.id()), sale),
        None => (String::new(), &entry.key),
    };
    format!(
        "ledger {} {kind}{original} of {} answered {} at {}: {} reversal request(s), {} applied, voided by {:?}, sale net {}",
        entry.key.id(),
        entry.amount,
        entry.response_code,
        ms(entry.t_ns),
        entry.reversal_requests,
        entry.reversals_applied,
        entry.voided_by,
        ledger.net(net_of)
    )
}

// ---- findings ----------------------------------------------------------------------------------

#[derive(Default)]
struct Findings {
    violations: Vec<Violation>,
    unresolved: Vec<Unresolved>,
}

impl Findings {
    /// Records a violation; a second finding for the same invariant and STAN joins the first.
    fn flag(&mut self, invariant: u8, stan: &str, summary: String, evidence: Vec<String>) {
        let existing = self
            .violations
            .iter_mut()
            .find(|v| v.invariant == invariant && v.stan == stan);
        match existing {
            Some(v) if v.summary == summary => {}
            Some(v) => {
                v.evidence.push(format!("also: {summary}"));
                for line in evidence {
                    if !v.evidence.contains(&line) {
                        v.evidence.push(line);
                    }
                }
            }
            None => self.violations.push(Violation {
                invariant,
                stan: stan.to_string(),
                summary,
                evidence,
            }),
        }
    }

    fn into_verdict(mut self) -> Verdict {
        self.violations
            .sort_by(|a, b| (a.invariant, &a.stan).cmp(&(b.invariant, &b.stan)));
        Verdict {
            violations: self.violations,
            unresolved: self.unresolved,
        }
    }
}

// ---- the checks --------------------------------------------------------------------------------

/// Invariant 1: the host's net for a sale is its amount iff the terminal committed it approved and
/// did not void it, else 0 — unless a reversal of the sale or of a void of it is unresolved. A
/// sale the terminal committed that the host never booked counts as net 0.
fn check_no_double_charge(facts: &Facts, findings: &mut Findings) {
    for sale in facts.entries(EntryKind::Sale) {
        let (tid, stan) = (sale.key.tid.as_str(), sale.key.stan.as_str());
        let committed = facts.console.committed(tid, stan);
        let voided = !facts.console.voids_of(tid, stan).is_empty();
        let expected = if committed && !voided {
            sale.amount as i64
        } else {
            0
        };
        let net = facts.ledger.net(&sale.key);
        if net != expected && !facts.sale_unresolved(sale) {
            let state = match (committed, voided) {
                (true, false) => "committed it approved",
                (true, true) => "committed it and voided it",
                _ => "did not commit it",
            };
            let summary = format!(
                "the host holds {net} for sale {} of {}; the terminal {state}, so it should hold {expected}",
                sale.key.id(),
                sale.amount
            );
            findings.flag(1, stan, summary, facts.evidence(tid, stan));
        }
    }
    let booked = |tid: &str, stan: &str| {
        facts
            .entries(EntryKind::Sale)
            .any(|s| s.key.stan == stan && same_tid(&s.key.tid, tid))
    };
    for approved in facts.console.events.iter().filter(|e| e.event.name == "approved") {
        let (tid, stan) = (approved.event.get("tid"), approved.event.get("stan"));
        if !booked(tid, stan) {
            let summary = format!(
                "the terminal committed sale {stan} of {} approved; the host never booked it",
                approved.event.get("amount")
            );
            findings.flag(1, stan, summary, facts.evidence(tid, stan));
        }
    }
}

/// Invariant 2: every 0200 the host received whose approval the terminal did not commit (and did
/// not see declined) is followed by a 0400 for it, and, when the host approved it, the reversal
/// took effect exactly once (`reversals_applied == 1`) — unless its reversal is unresolved. No
/// reversal ever takes effect more than once.
fn check_reversed_exactly_once(facts: &Facts, findings: &mut Findings) {
    let mut seen = BTreeSet::new();
    for request in facts.wire.received("0200") {
        let key = request.key();
        if !seen.insert(key.id()) {
            continue; // a STAN used again: invariant 4
        }
        let (tid, stan) = (request.tid(), request.stan_text());
        let bound = facts.must_reverse(tid, stan) && !facts.unresolved(tid, stan);
        let entry = facts.ledger.entry(&key);
        let applied = entry.map_or(0, |e| e.reversals_applied);
        let approved = entry.is_some_and(Entry::approved);
        let problem = if bound
            && facts
                .wire
                .reversals_after(tid, stan, request.seq)
                .next()
                .is_none()
        {
            // A 0400 that overtook its request (the request held up on the way) reversed nothing.
            Some(match facts.wire.reversals_of(tid, stan).next() {
                Some(early) => format!(
                    "the terminal did not commit it, and its 0400 (#{}, answered {}) reached the \
                     host before it, reversing nothing",
                    early.seq,
                    facts.wire.answer_to(early).unwrap_or("nothing")
                ),
                None => "the terminal did not commit it, and no 0400 for it reached the host".to_string(),
            })
        } else if applied > 1 {
            Some(format!("its reversal took effect {applied} times"))
        } else if bound && approved && applied == 0 {
            Some("the host approved it, the terminal did not commit it, and no reversal took effect".into())
        } else {
            None
        };
        if let Some(problem) = problem {
            let summary = format!("request {} (0200 #{}): {problem}", key.id(), request.seq);
            findings.flag(2, stan, summary, facts.evidence(tid, stan));
        }
    }
}

/// Invariant 3: no 0400 for a request the terminal committed, nor for one it saw declined.
fn check_no_needless_reversal(facts: &Facts, findings: &mut Findings) {
    for reversal in facts.wire.received("0400") {
        let (tid, stan) = (reversal.tid(), reversal.stan_text());
        let why = if facts.console.committed(tid, stan) {
            "the terminal committed that approval"
        } else if facts.console.saw("declined", tid, stan) {
            "the terminal saw that request declined"
        } else {
            continue;
        };
        let summary = format!("0400 #{} reverses {}/{stan}, but {why}", reversal.seq, tid);
        findings.flag(3, stan, summary, facts.evidence(tid, stan));
    }
}

/// Invariant 4, across power cycles: per terminal, the STAN of every request the host received
/// (0400s excluded: they repeat their original's) is greater than the one before, modulo the wrap.
fn check_stans_increase(facts: &Facts, findings: &mut Findings) {
    let mut last: BTreeMap<&str, &JournalEntry> = BTreeMap::new();
    for request in facts.wire.entries.iter().copied().filter(|e| takes_a_stan(e)) {
        let stan = request.stan_text();
        if let Some(previous) = last.insert(request.tid(), request) {
            let increases = match (previous.stan_text().parse(), stan.parse()) {
                (Ok(earlier), Ok(later)) => stan_follows(earlier, later),
                _ => true,
            };
            if !increases {
                let boots = facts.console.boots_between(previous.t_ns, request.t_ns);
                let summary = format!(
                    "{} STAN {stan} does not follow STAN {} of #{} ({} boot(s) in between)",
                    request.tid(),
                    previous.stan_text(),
                    previous.seq,
                    boots.len()
                );
                let evidence = [journal_line(previous)]
                    .into_iter()
                    .chain(boots.into_iter().map(event_line))
                    .chain([journal_line(request)])
                    .collect();
                findings.flag(4, stan, summary, evidence);
            }
        }
    }
}

/// Invariant 4, within a batch: no STAN is used by two requests of a terminal's batch (0400s
/// excluded), and the host refused no request as a duplicate (`ledger.duplicate_stans`).
fn check_stans_not_reused(facts: &Facts, findings: &mut Findings) {
    let mut uses: BTreeMap<Key, Vec<&JournalEntry>> = BTreeMap::new();
    for request in facts.wire.entries.iter().copied().filter(|e| takes_a_stan(e)) {
        uses.entry(request.key()).or_default().push(request);
    }
    for (key, requests) in uses.iter().filter(|(_, r)| r.len() > 1) {
        let summary = format!(
            "STAN {} used by {} requests in batch {} of {}",
            key.stan,
            requests.len(),
            key.batch,
            key.tid
        );
        findings.flag(
            4,
            &key.stan,
            summary,
            requests.iter().map(|e| journal_line(e)).collect(),
        );
    }
    for key in &facts.ledger.duplicate_stans {
        let summary = format!("the host refused a request {} as a duplicate STAN (94)", key.id());
        findings.flag(4, &key.stan, summary, facts.evidence(&key.tid, &key.stan));
    }
}

/// Invariant 4 (ordering, shared with 2): when the terminal had to reverse a 0200 the host
/// received, a 0400 for it reached the host before the terminal's next 0200 or 0500.
fn check_reversal_goes_first(facts: &Facts, findings: &mut Findings) {
    for request in facts.wire.received("0200") {
        let (tid, stan) = (request.tid(), request.stan_text());
        if !facts.must_reverse(tid, stan) {
            continue;
        }
        let Some(next) = facts.wire.next_online_request(tid, request.seq) else {
            continue;
        };
        // A 0400 that overtook its request on the way (the request held up) went first too.
        let reversed_first = facts
            .wire
            .reversals_of(tid, stan)
            .next()
            .is_some_and(|r| r.seq < next.seq);
        if !reversed_first {
            let summary = format!(
                "the reversal of {tid}/{stan} did not reach the host before the next {} (#{}, STAN {})",
                next.mti.as_deref().unwrap_or("-"),
                next.seq,
                next.stan_text()
            );
            let mut evidence = facts.evidence(tid, stan);
            evidence.push(journal_line(next));
            findings.flag(4, stan, summary, evidence);
        }
    }
}

/// Invariant 5, per sale: voided on the terminal (`voided` events) iff voided at the host
/// (`voided_by`, which void reversals empty), unless a reversal of one of its voids is unresolved;
/// never voided twice on either side.
fn check_void_states_agree(facts: &Facts, findings: &mut Findings) {
    for sale in facts.entries(EntryKind::Sale) {
        let (tid, stan) = (sale.key.tid.as_str(), sale.key.stan.as_str());
        let terminal_voids = facts.console.voids_of(tid, stan).len();
        let host_voids = sale.voided_by.len();
        let problem = if terminal_voids > 1 || host_voids > 1 {
            Some(format!(
                "voided twice: {terminal_voids} time(s) on the terminal, {host_voids} at the host"
            ))
        } else if (terminal_voids == 1) != (host_voids == 1) && !facts.sale_unresolved(sale) {
            let side = if host_voids == 1 {
                "at the host"
            } else {
                "on the terminal"
            };
            Some(format!("voided {side} only"))
        } else {
            None
        };
        if let Some(problem) = problem {
            let summary = format!("sale {}: {problem}", sale.key.id());
            findings.flag(5, stan, summary, facts.evidence(tid, stan));
        }
    }
}

/// Invariant 5, per void: an approved void at the host voids an approved sale of the same
/// terminal and batch; a `voided` event names a sale the terminal committed approved.
fn check_voids_have_originals(facts: &Facts, findings: &mut Findings) {
    for void in facts.entries(EntryKind::Void).filter(|v| v.approved()) {
        let original = void.original.as_ref().and_then(|k| facts.ledger.entry(k));
        let valid = original.is_some_and(|o| {
            o.kind == EntryKind::Sale
                && o.approved()
                && o.key.tid == void.key.tid
                && o.key.batch == void.key.batch
        });
        if !valid {
            let target = void.original.as_ref().map_or("nothing".to_string(), Key::id);
            let summary = format!(
                "the host approved void {} of {target}, which is no approved sale of that batch",
                void.key.id()
            );
            findings.flag(
                5,
                &void.key.stan,
                summary,
                facts.evidence(&void.key.tid, &void.key.stan),
            );
        }
    }
    for void in facts.entries(EntryKind::Void) {
        let (tid, stan) = (void.key.tid.as_str(), void.key.stan.as_str());
        let original = void.original.as_ref().map_or("", |k| k.stan.as_str());
        if !facts.console.committed(tid, original) {
            // domain.md §3: a void of an original the terminal does not hold is refused locally.
            let summary = format!(
                "the terminal sent void {stan} of sale {original}, which it never approved: it must refuse it locally"
            );
            findings.flag(5, stan, summary, facts.evidence(tid, stan));
        }
    }
    for voided in facts.console.events.iter().filter(|e| e.event.name == "voided") {
        let (tid, stan, original) = (
            voided.event.get("tid"),
            voided.event.get("stan"),
            voided.event.get("original"),
        );
        if !facts.console.committed(tid, original) {
            let summary =
                format!("the terminal committed void {stan} of sale {original}, which it never approved");
            let mut evidence = facts.evidence(tid, stan);
            evidence.extend(facts.evidence(tid, original));
            findings.flag(5, stan, summary, evidence);
        }
    }
}

/// Invariant 6: the host approved a request and never heard of its reversal, yet the terminal has
/// neither committed it nor a reversal failed or pending for it.
fn check_no_lost_approval(facts: &Facts, findings: &mut Findings) {
    for entry in facts
        .ledger
        .entries
        .values()
        .filter(|e| e.approved() && e.reversal_requests == 0)
    {
        let (tid, stan) = (entry.key.tid.as_str(), entry.key.stan.as_str());
        let reversal = facts.console.reversal(tid, stan);
        if !facts.console.committed(tid, stan) && !reversal.unresolved() {
            let summary = format!(
                "the host approved {}; the terminal has neither a record nor a reversal (reversal {reversal:?})",
                entry.key.id()
            );
            findings.flag(6, stan, summary, facts.evidence(tid, stan));
        }
    }
}

/// Invariant 7: every settlement the host compared is balanced, and every `settled` event says
/// `balanced=yes`. Reported under the STAN of the settlement's 0500.
fn check_settlements_balance(facts: &Facts, findings: &mut Findings) {
    let request_of = |tid: &str, batch: &str, t_ns: Option<u64>| {
        let mut settlements = facts
            .wire
            .received("0500")
            .filter(|e| same_tid(e.tid(), tid) && e.batch() == batch);
        match t_ns {
            Some(t) => settlements.find(|e| e.t_ns == t),
            None => settlements.last(),
        }
    };
    for settlement in facts.ledger.settlements.iter().filter(|s| !s.balanced()) {
        let request = request_of(&settlement.tid, &settlement.batch, Some(settlement.t_ns))
            .or_else(|| request_of(&settlement.tid, &settlement.batch, None));
        let summary = format!(
            "settlement of {} batch {} at {}: terminal totals {:?}, host totals {:?}",
            settlement.tid,
            settlement.batch,
            ms(settlement.t_ns),
            settlement.terminal_totals,
            settlement.host_totals
        );
        let evidence = request.map(journal_line).into_iter().collect();
        findings.flag(7, request.map_or("", |r| r.stan_text()), summary, evidence);
    }
    for settled in facts.console.events.iter().filter(|e| e.event.name == "settled") {
        if settled.event.get("balanced") != "yes" {
            let request = request_of(settled.event.get("tid"), settled.event.get("batch"), None);
            let summary = format!(
                "the terminal settled batch {} unbalanced",
                settled.event.get("batch")
            );
            let evidence = request
                .map(journal_line)
                .into_iter()
                .chain([event_line(settled)])
                .collect();
            findings.flag(7, request.map_or("", |r| r.stan_text()), summary, evidence);
        }
    }
}

/// Invariant 8: every 0400 copies 3, 4, 11, 41, 42, 60 (and 61 for a void) of its original,
/// carries 38 exactly when the terminal received an auth code for it, carries no track or PIN
/// data, and gives a reason (39) matching the cause the terminal showed.
fn check_reversal_messages(facts: &Facts, findings: &mut Findings) {
    for reversal in facts.wire.received("0400") {
        let original = facts.wire.original_of(reversal);
        let problems: Vec<String> = copy_problems(reversal, original)
            .into_iter()
            .chain(auth_code_problem(facts, reversal, original))
            .chain(forbidden_field_problems(reversal))
            .chain(reason_problem(facts, reversal))
            .collect();
        if !problems.is_empty() {
            let (tid, stan) = (reversal.tid(), reversal.stan_text());
            let summary = format!("0400 #{} for {tid}/{stan}: {}", reversal.seq, problems.join("; "));
            findings.flag(8, stan, summary, facts.evidence(tid, stan));
        }
    }
}

/// Fields of the original the 0400 did not copy; with no original in the journal, only that a
/// void's reversal carries 61.
fn copy_problems(reversal: &JournalEntry, original: Option<&JournalEntry>) -> Vec<String> {
    let Some(original) = original else {
        if reversal.is_void() && reversal.field(61).is_none() {
            return vec!["the reversal of a void lacks 61".to_string()];
        }
        return Vec::new();
    };
    let void_field = original.is_void().then_some(61);
    COPIED_FIELDS
        .iter()
        .copied()
        .chain(void_field)
        .filter(|&n| reversal.field(n) != original.field(n))
        .map(|n| {
            let show = |v: Option<&str>| v.map_or("absent".to_string(), |v| format!("{v:?}"));
            format!(
                "field {n} is {} but the original 0200 #{} has {}",
                show(reversal.field(n)),
                original.seq,
                show(original.field(n))
            )
        })
        .collect()
}

/// 38 present iff the terminal received an auth code for the original, and then equal to it.
fn auth_code_problem(
    facts: &Facts,
    reversal: &JournalEntry,
    original: Option<&JournalEntry>,
) -> Option<String> {
    let received = original.and_then(|o| facts.received_auth_code(o));
    match (received, reversal.field(38)) {
        (Some(_), None) if facts.auth_code_lost(reversal) => None,
        (Some(auth), None) => Some(format!(
            "lacks 38 although the terminal received auth code {auth}"
        )),
        (Some(auth), Some(sent)) if auth != sent => {
            Some(format!("carries 38={sent} but the auth code was {auth}"))
        }
        (None, Some(sent)) => Some(format!(
            "carries 38={sent} but the terminal received no auth code"
        )),
        _ => None,
    }
}

fn forbidden_field_problems(reversal: &JournalEntry) -> Vec<String> {
    FORBIDDEN_FIELDS
        .iter()
        .filter(|(n, _)| reversal.field(*n).is_some())
        .map(|(n, what)| format!("carries field {n} ({what})"))
        .collect()
}

fn reason_problem(facts: &Facts, reversal: &JournalEntry) -> Option<String> {
    let allowed = facts.console.reasons_for(reversal.tid(), reversal.stan_text());
    let reason = reversal.field(39).unwrap_or_default();
    (!allowed.contains(reason)).then(|| {
        let allowed: Vec<&str> = allowed.into_iter().collect();
        format!(
            "reason 39={reason:?} but the terminal's evidence calls for {}",
            allowed.join(" or ")
        )
    })
}

/// Every reversal the terminal left failed or pending, with what the host holds for it.
fn report_unresolved(facts: &Facts, findings: &mut Findings) {
    for stan in facts.console.reversal_stans() {
        let state = match facts.console.reversal("", stan) {
            Reversal::Failed(policy) => format!("failed (policy {policy})"),
            Reversal::Pending => "still pending at the end".to_string(),
            _ => continue,
        };
        let held: Vec<String> = facts
            .ledger
            .entries
            .values()
            .filter(|e| e.key.stan == stan)
            .map(|e| {
                format!(
                    "the host holds {} for {}",
                    facts.ledger.net(e.original.as_ref().unwrap_or(&e.key)),
                    e.key.id()
                )
            })
            .collect();
        let held = if held.is_empty() {
            "the host booked nothing for it".to_string()
        } else {
            held.join(", ")
        };
        findings.unresolved.push(Unresolved {
            stan: stan.to_string(),
            summary: format!("reversal of STAN {stan} {state}; {held}"),
            evidence: facts.evidence("", stan),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use posrig_host::{Acquirer, Action, Kind, Rule, Settings};
    use posrig_iso8583::{Codec, Message, Spec};

    const TID: &str = "TERM0001";
    const MID: &str = "MERCHANT0000001";
    const BATCH: &str = "000001";
    const AMOUNT: u64 = 12_345;
    const TPDU: [u8; 5] = [0x60, 0x00, 0x01, 0x00, 0x00];
    const HEADER: [u8; 6] = [0x60, 0x31, 0x00, 0x31, 0x00, 0x00];

    fn codec() -> Codec {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures/iso8583/cup.toml");
        Codec::new(Spec::load(path).expect("the CUP spec loads"))
    }

    fn message(mti: &str, stan: &str) -> Message {
        let mut message = Message::new(mti, &TPDU, &HEADER);
        message.set(11, stan).set(41, TID).set(42, MID);
        message
    }

    fn financial(stan: &str, processing_code: &str, type_code: &str) -> Message {
        let mut request = message("0200", stan);
        request
            .set(2, "6222021234567890123")
            .set(3, processing_code)
            .set(4, format!("{AMOUNT:012}"))
            .set(14, "2512")
            .set(22, "051")
            .set(25, "00")
            .set(49, "156")
            .set(60, format!("{type_code}{BATCH}000"));
        request
    }

    fn sale(stan: &str) -> Message {
        let mut request = financial(stan, "000000", "22");
        request.set(35, "6222021234567890123D25121010000");
        request
    }

    fn void(stan: &str, original: &str) -> Message {
        let mut request = financial(stan, "200000", "23");
        request.set(61, format!("{BATCH}{original}0101"));
        request
    }

    /// The 0400 a correct terminal builds from its reversal record (domain.md §3 rule 4).
    fn reversal(original: &Message, reason: &str, auth: Option<&str>) -> Message {
        let mut request = Message::new("0400", &TPDU, &HEADER);
        for n in [2, 3, 4, 11, 14, 22, 25, 41, 42, 49, 60, 61] {
            if let Some(value) = original.fields.get(&n) {
                request.set(n, value.clone());
            }
        }
        request.set(39, reason);
        if let Some(auth) = auth {
            request.set(38, auth);
        }
        request
    }

    fn signon(stan: &str) -> Message {
        let mut request = message("0800", stan);
        request.set(60, format!("00{BATCH}003"));
        request
    }

    fn settlement(stan: &str, count: u32, amount: u64) -> Message {
        let mut request = message("0500", stan);
        request
            .set(49, "156")
            .set(60, format!("00{BATCH}201"))
            .set(63, format!("{count:03}{amount:012}"));
        request
    }

    fn text(message: &Message, n: u8) -> &str {
        message.text(n).unwrap_or_default()
    }

    /// A synthetic run: the real acquirer decides, the journal is what the server would write,
    /// and the terminal's events are scripted as the reference terminal would log them.
    struct Run {
        codec: Codec,
        host: Acquirer,
        journal: Vec<JournalEntry>,
        events: Vec<TerminalEvent>,
        t_ns: u64,
        connections: u64,
    }

    impl Run {
        fn new() -> Run {
            Run::with_settings(Settings::default())
        }

        fn with_settings(settings: Settings) -> Run {
            Run {
                codec: codec(),
                host: Acquirer::with_settings(settings),
                journal: Vec::new(),
                events: Vec::new(),
                t_ns: 7_000_000_000,
                connections: 0,
            }
        }

        fn now(&mut self) -> u64 {
            self.t_ns += 1_250_000;
            self.t_ns
        }

        fn rule(&mut self, kind: Kind, times: Option<u32>, action: Action) {
            self.host
                .rules
                .add(Rule {
                    kind: Some(kind),
                    stan: None,
                    times,
                    action,
                })
                .expect("a valid rule");
        }

        fn event(&mut self, name: &str, fields: &[(&str, &str)]) {
            let t_ns = self.now();
            let fields = fields
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            let event = Event {
                name: name.to_string(),
                fields,
            };
            self.events.push(TerminalEvent { t_ns, event });
        }

        fn record(
            &mut self,
            t_ns: u64,
            direction: Direction,
            connection: u64,
            message: &Message,
            note: String,
        ) {
            let mut entry = JournalEntry::message(direction, connection, t_ns, message, &[], note);
            entry.seq = self.journal.len() as u64;
            self.journal.push(entry);
        }

        /// The terminal sends `request` on a new connection; the host decides and answers unless a
        /// rule drops the reply. Returns the reply the host sent.
        fn send(&mut self, request: &Message) -> Option<Message> {
            self.connections += 1;
            let connection = self.connections;
            self.event(
                "request_sent",
                &[("mti", &request.mti), ("stan", text(request, 11))],
            );
            let t_ns = self.now();
            let decision = self.host.decide(&self.codec, request, Some(true), t_ns);
            self.record(t_ns, Direction::In, connection, request, decision.note);
            let reply = decision
                .reply
                .filter(|_| decision.delivery != Some(Action::DropReply))?;
            let t_ns = self.now();
            self.record(t_ns, Direction::Out, connection, &reply, "reply".into());
            Some(reply)
        }

        /// `send`, and the terminal logs the reply it received.
        fn exchange(&mut self, request: &Message) -> Option<Message> {
            let reply = self.send(request)?;
            let fields = [
                ("mti", reply.mti.as_str()),
                ("stan", text(&reply, 11)),
                ("rc", text(&reply, 39)),
            ];
            self.event("reply_received", &fields);
            Some(reply)
        }

        fn boot(&mut self, stan: &str) {
            self.event("boot", &[]);
            self.sign_on(stan);
            self.event("ready", &[]);
        }

        fn sign_on(&mut self, stan: &str) {
            let reply = self.exchange(&signon(stan)).expect("sign-on answered");
            assert_eq!(text(&reply, 39), "00");
            self.event("signon_ok", &[("stan", stan)]);
        }

        fn prepared(&mut self, stan: &str, kind: &str) {
            self.event("prepared", &[("stan", stan), ("type", kind)]);
        }

        /// P1: approved, TC, committed. Returns the reply.
        fn approved_sale(&mut self, stan: &str) -> Message {
            self.prepared(stan, "sale");
            let reply = self.exchange(&sale(stan)).expect("sale answered");
            assert_eq!(text(&reply, 39), "00");
            self.event("second_generate_ac", &[("stan", stan), ("result", "TC")]);
            let amount = AMOUNT.to_string();
            let fields = [
                ("stan", stan),
                ("amount", &amount),
                ("auth", text(&reply, 38)),
                ("rrn", text(&reply, 37)),
            ];
            self.event("approved", &fields);
            reply
        }

        /// P3 up to the pending reversal: the host approves, the reply is lost, the terminal times
        /// out. Returns the request.
        fn lost_sale(&mut self, stan: &str) -> Message {
            self.rule(Kind::Sale, Some(1), Action::DropReply);
            self.prepared(stan, "sale");
            let request = sale(stan);
            assert!(self.exchange(&request).is_none());
            self.event("timeout", &[("stan", stan)]);
            self.event("reversal_pending", &[("stan", stan), ("reason", "98")]);
            request
        }

        /// Sends a 0400 and returns the host's response code.
        fn deliver(&mut self, reversal: &Message) -> String {
            let reply = self.exchange(reversal).expect("reversal answered");
            text(&reply, 39).to_string()
        }

        /// Sends the reversal of `original` and logs the outcome as the terminal would (00 only).
        fn reverse(&mut self, original: &Message, reason: &str, auth: Option<&str>) -> String {
            let stan = text(original, 11).to_string();
            let rc = self.deliver(&reversal(original, reason, auth));
            match rc.as_str() {
                "00" => self.event("reversal_done", &[("stan", &stan), ("rc", &rc)]),
                _ => self.event(
                    "reversal_rejected",
                    &[("stan", &stan), ("why", &format!("rc={rc}"))],
                ),
            }
            rc
        }

        fn settle(&mut self, stan: &str, count: u32, amount: u64) {
            let reply = self
                .exchange(&settlement(stan, count, amount))
                .expect("settlement answered");
            let balanced = if text(&reply, 63).starts_with('1') {
                "yes"
            } else {
                "no"
            };
            let (count, amount) = (count.to_string(), amount.to_string());
            let fields = [
                ("batch", BATCH),
                ("count", &count),
                ("amount", &amount),
                ("balanced", balanced),
            ];
            self.event("settled", &fields);
        }

        fn verdict(&self) -> Verdict {
            check(&Observation {
                journal: &self.journal,
                ledger: &self.host.ledger,
                terminal: &self.events,
            })
        }
    }

    /// (invariant, STAN) of every violation, in the verdict's order.
    fn flagged(verdict: &Verdict) -> Vec<(u8, &str)> {
        verdict
            .violations
            .iter()
            .map(|v| (v.invariant, v.stan.as_str()))
            .collect()
    }

    fn assert_clean(run: &Run) {
        let verdict = run.verdict();
        assert!(verdict.passed(), "{verdict:#?}");
    }

    // ---- clean runs --------------------------------------------------------------------------

    #[test]
    fn w5_a_commit_the_power_cut_kept_from_being_announced_is_shown_by_its_reprinted_receipt() {
        let mut run = Run::new();
        run.boot("000001");
        run.prepared("000002", "sale");
        let reply = run.exchange(&sale("000002")).expect("sale answered");
        run.event("second_generate_ac", &[("stan", "000002"), ("result", "TC")]);
        // The record is in flash; the power went before "approved" was written.
        run.boot("000003");
        assert_eq!(
            flagged(&run.verdict()),
            vec![(1, "000002"), (2, "000002"), (6, "000002")]
        );
        let amount = format!("{}.{:02}", AMOUNT / 100, AMOUNT % 100);
        let fields = [
            ("type", "sale"),
            ("stan", "000002"),
            ("amount", amount.as_str()),
            ("auth", text(&reply, 38)),
        ];
        run.event("receipt", &fields);
        assert_clean(&run);
    }

    #[test]
    fn p1_approved_sale_is_clean() {
        let mut run = Run::new();
        run.boot("000001");
        run.approved_sale("000002");
        assert_eq!(run.host.ledger.net(&key("000002")), AMOUNT as i64);
        assert_clean(&run);
    }

    #[test]
    fn p3_lost_reply_reversed_with_98_is_clean() {
        let mut run = Run::new();
        run.boot("000001");
        let request = run.lost_sale("000002");
        assert_eq!(run.reverse(&request, "98", None), "00");
        assert_eq!(run.host.ledger.net(&key("000002")), 0);
        assert_clean(&run);
    }

    #[test]
    fn p6_decline_is_clean() {
        let mut run = Run::new();
        run.boot("000001");
        run.rule(Kind::Sale, Some(1), Action::Respond { code: "51".into() });
        run.prepared("000002", "sale");
        let reply = run.exchange(&sale("000002")).unwrap();
        run.event("declined", &[("stan", "000002"), ("rc", text(&reply, 39))]);
        assert_clean(&run);
    }

    #[test]
    fn v1_void_is_clean() {
        let mut run = Run::new();
        run.boot("000001");
        run.approved_sale("000002");
        run.prepared("000003", "void");
        let reply = run.exchange(&void("000003", "000002")).unwrap();
        assert_eq!(text(&reply, 39), "00");
        let amount = AMOUNT.to_string();
        run.event(
            "voided",
            &[("stan", "000003"), ("original", "000002"), ("amount", &amount)],
        );
        assert_eq!(run.host.ledger.net(&key("000002")), 0);
        assert_clean(&run);
    }

    /// Sale 000002 approved, then its void 000003 sent and its reply lost: the terminal timed out
    /// and holds the void's reversal (98). Returns the run and the void request.
    fn void_reply_lost() -> (Run, Message) {
        let mut run = Run::new();
        run.boot("000001");
        run.approved_sale("000002");
        run.rule(Kind::Void, Some(1), Action::DropReply);
        run.prepared("000003", "void");
        let request = void("000003", "000002");
        assert!(run.exchange(&request).is_none());
        run.event("timeout", &[("stan", "000003")]);
        run.event("reversal_pending", &[("stan", "000003"), ("reason", "98")]);
        (run, request)
    }

    #[test]
    fn v7_lost_void_reply_reversed_is_clean() {
        let (mut run, request) = void_reply_lost();
        run.reverse(&request, "98", None);
        assert_eq!(
            run.host.ledger.net(&key("000002")),
            AMOUNT as i64,
            "the sale stands"
        );
        assert_clean(&run);
    }

    #[test]
    fn p7_bad_mac_reversed_with_a0_and_the_auth_code_is_clean() {
        let mut run = Run::new();
        run.boot("000001");
        run.rule(Kind::Sale, Some(1), Action::CorruptMac);
        run.prepared("000002", "sale");
        let request = sale("000002");
        let reply = run.exchange(&request).unwrap();
        run.event("mac_error", &[("stan", "000002")]);
        run.event("reversal_pending", &[("stan", "000002"), ("reason", "A0")]);
        run.sign_on("000003");
        run.reverse(&request, "A0", reply.text(38));
        assert_clean(&run);
    }

    #[test]
    fn c3_aac_reversed_with_96_and_the_auth_code_is_clean() {
        let mut run = Run::new();
        run.boot("000001");
        run.prepared("000002", "sale");
        let request = sale("000002");
        let reply = run.exchange(&request).unwrap();
        run.event("second_generate_ac", &[("stan", "000002"), ("result", "AAC")]);
        run.event("reversal_pending", &[("stan", "000002"), ("reason", "96")]);
        run.reverse(&request, "96", reply.text(38));
        assert_clean(&run);
    }

    #[test]
    fn w2_power_cut_after_the_request_with_the_reversal_announced_at_boot_is_clean() {
        let mut run = Run::new();
        run.boot("000001");
        run.prepared("000002", "sale");
        let request = sale("000002");
        run.send(&request)
            .expect("the host answered; the terminal was already off");
        run.event("boot", &[]);
        run.event("reversal_pending", &[("stan", "000002"), ("reason", "98")]);
        run.sign_on("000003");
        run.reverse(&request, "98", None);
        assert_clean(&run);
    }

    #[test]
    fn p16_reversal_before_a_balanced_settlement_is_clean() {
        let mut run = Run::new();
        run.boot("000001");
        run.approved_sale("000002");
        let request = run.lost_sale("000003");
        run.reverse(&request, "98", None);
        run.settle("000004", 1, AMOUNT);
        assert_clean(&run);
    }

    fn key(stan: &str) -> Key {
        Key {
            tid: TID.into(),
            batch: BATCH.into(),
            stan: stan.into(),
        }
    }

    // ---- unresolved ------------------------------------------------------------------------------

    #[test]
    fn p13_reversal_still_pending_at_the_end_is_unresolved_not_a_violation() {
        let mut run = Run::new();
        run.boot("000001");
        run.lost_sale("000002");
        run.event("reversal_unreachable", &[("stan", "000002")]);
        let verdict = run.verdict();
        assert_eq!(flagged(&verdict), vec![]);
        let stans: Vec<&str> = verdict.unresolved.iter().map(|u| u.stan.as_str()).collect();
        assert_eq!(stans, vec!["000002"]);
        assert!(verdict.unresolved[0].summary.contains("pending"), "{verdict:#?}");
        assert!(!verdict.passed());
    }

    #[test]
    fn p12_failed_reversal_is_unresolved_never_a_pass() {
        let mut run = Run::new();
        run.boot("000001");
        let request = run.lost_sale("000002");
        run.rule(Kind::Reversal, None, Action::Respond { code: "96".into() });
        for _ in 0..2 {
            assert_eq!(run.reverse(&request, "98", None), "96");
        }
        run.event(
            "reversal_failed",
            &[("stan", "000002"), ("policy", "drop_and_notify")],
        );
        run.host.rules.clear();
        run.approved_sale("000003");
        let verdict = run.verdict();
        assert_eq!(flagged(&verdict), vec![]);
        assert_eq!(verdict.unresolved.len(), 1, "{verdict:#?}");
        let unresolved = &verdict.unresolved[0];
        assert_eq!(unresolved.stan, "000002");
        assert!(
            unresolved.summary.contains("failed (policy drop_and_notify)"),
            "{unresolved:?}"
        );
        assert!(
            unresolved.summary.contains(&format!("holds {AMOUNT}")),
            "{unresolved:?}"
        );
        assert!(!verdict.passed());
    }

    // ---- one failing case per invariant ----------------------------------------------------------

    #[test]
    fn invariant_1_terminal_committing_a_sale_the_host_declined() {
        let mut run = Run::new();
        run.boot("000001");
        run.rule(Kind::Sale, Some(1), Action::Respond { code: "51".into() });
        run.prepared("000002", "sale");
        run.exchange(&sale("000002")).unwrap();
        let amount = AMOUNT.to_string();
        run.event("approved", &[("stan", "000002"), ("amount", &amount)]);
        assert_eq!(flagged(&run.verdict()), vec![(1, "000002")]);
    }

    #[test]
    fn invariant_1_and_2_double_charge_when_a_reversal_accepted_with_12_took_no_effect() {
        let mut run = Run::new();
        run.boot("000001");
        let request = run.lost_sale("000002");
        run.rule(Kind::Reversal, Some(1), Action::Respond { code: "12".into() });
        assert_eq!(run.deliver(&reversal(&request, "98", None)), "12");
        run.event("reversal_done", &[("stan", "000002"), ("rc", "12")]);
        assert_eq!(flagged(&run.verdict()), vec![(1, "000002"), (2, "000002")]);
    }

    #[test]
    fn invariants_1_2_6_double_charge_when_the_request_arrives_after_its_own_reversal() {
        let mut run = Run::new();
        run.boot("000001");
        run.prepared("000002", "sale");
        let request = sale("000002");
        // The 0200 is held up on the way; the terminal times out and its 0400 overtakes it.
        run.event("timeout", &[("stan", "000002")]);
        run.event("reversal_pending", &[("stan", "000002"), ("reason", "98")]);
        assert_eq!(run.deliver(&reversal(&request, "98", None)), "25");
        run.event("reversal_done", &[("stan", "000002"), ("rc", "25")]);
        let late = run.exchange(&request).expect("the late sale is answered");
        assert_eq!(text(&late, 39), "00");
        let verdict = run.verdict();
        assert_eq!(
            flagged(&verdict),
            vec![(1, "000002"), (2, "000002"), (6, "000002")]
        );
        let summary = &verdict.violations[1].summary;
        assert!(
            summary.contains("answered 25) reached the host before it, reversing nothing"),
            "{summary}"
        );
    }

    #[test]
    fn reversals_that_overtook_their_request_went_first_and_a_failed_one_is_unresolved() {
        let mut run = Run::new();
        run.boot("000001");
        run.prepared("000002", "sale");
        let request = sale("000002");
        run.event("timeout", &[("stan", "000002")]);
        for _ in 0..3 {
            assert_eq!(
                run.reverse(&request, "98", None),
                "25",
                "the 0200 is still held up"
            );
        }
        run.event(
            "reversal_failed",
            &[("stan", "000002"), ("policy", "drop_and_notify")],
        );
        run.exchange(&request).expect("the late sale is answered");
        run.approved_sale("000003");
        let verdict = run.verdict();
        assert_eq!(
            flagged(&verdict),
            vec![],
            "the 0400s reached the host before the next sale"
        );
        assert_eq!(verdict.unresolved.len(), 1, "{verdict:#?}");
        assert!(
            verdict.unresolved[0].summary.contains(&format!("holds {AMOUNT}")),
            "{verdict:#?}"
        );
    }

    #[test]
    fn invariant_2_request_never_reversed_after_a_power_cut() {
        let mut run = Run::new();
        run.boot("000001");
        run.rule(Kind::Sale, Some(1), Action::Respond { code: "51".into() });
        run.prepared("000002", "sale");
        run.send(&sale("000002")).unwrap();
        run.boot("000003"); // the record was lost: nothing announced, no 0400
        assert_eq!(flagged(&run.verdict()), vec![(2, "000002")]);
    }

    #[test]
    fn invariant_2_reversal_applied_twice_with_idempotency_off() {
        let mut run = Run::with_settings(Settings {
            idempotent_reversals: false,
            ..Settings::default()
        });
        run.boot("000001");
        let request = run.lost_sale("000002");
        run.deliver(&reversal(&request, "98", None));
        run.event("reversal_rejected", &[("stan", "000002"), ("why", "closed")]);
        run.reverse(&request, "98", None);
        assert_eq!(run.host.ledger.net(&key("000002")), -(AMOUNT as i64));
        let verdict = run.verdict();
        assert_eq!(flagged(&verdict), vec![(1, "000002"), (2, "000002")]);
        assert!(verdict.violations[1].summary.contains("2 times"), "{verdict:#?}");
    }

    #[test]
    fn invariant_3_reversal_of_a_declined_sale() {
        let mut run = Run::new();
        run.boot("000001");
        run.rule(Kind::Sale, Some(1), Action::Respond { code: "51".into() });
        run.prepared("000002", "sale");
        let request = sale("000002");
        run.exchange(&request).unwrap();
        run.event("declined", &[("stan", "000002"), ("rc", "51")]);
        run.reverse(&request, "98", None);
        assert_eq!(flagged(&run.verdict()), vec![(3, "000002")]);
    }

    #[test]
    fn invariant_3_reversal_of_a_committed_approval() {
        let mut run = Run::new();
        run.boot("000001");
        let reply = run.approved_sale("000002");
        run.reverse(&sale("000002"), "96", reply.text(38));
        // the host applied it, so the committed sale is no longer charged: invariant 1 as well
        assert_eq!(flagged(&run.verdict()), vec![(1, "000002"), (3, "000002")]);
    }

    #[test]
    fn invariant_4_stan_reset_by_a_power_cycle() {
        let mut run = Run::new();
        run.boot("000001");
        run.approved_sale("000002");
        run.boot("000001");
        let verdict = run.verdict();
        assert_eq!(flagged(&verdict), vec![(4, "000001")]);
        assert!(
            verdict.violations[0].summary.contains("1 boot(s)"),
            "{verdict:#?}"
        );
    }

    #[test]
    fn invariant_4_new_sale_overtakes_a_pending_reversal() {
        let mut run = Run::new();
        run.boot("000001");
        let request = run.lost_sale("000002");
        run.approved_sale("000003");
        run.reverse(&request, "98", None);
        assert_eq!(flagged(&run.verdict()), vec![(4, "000002")]);
    }

    #[test]
    fn invariant_4_request_resent_with_its_stan() {
        let mut run = Run::new();
        run.boot("000001");
        run.rule(Kind::Sale, Some(1), Action::DropReply);
        run.prepared("000002", "sale");
        assert!(run.exchange(&sale("000002")).is_none());
        run.event("timeout", &[("stan", "000002")]);
        let reply = run.exchange(&sale("000002")).unwrap();
        assert_eq!(text(&reply, 39), "94");
        run.event("declined", &[("stan", "000002"), ("rc", "94")]);
        assert_eq!(run.host.ledger.duplicate_stans, vec![key("000002")]);
        // the first 0200 was approved and the terminal holds nothing for it: 1 and 6 as well
        assert_eq!(
            flagged(&run.verdict()),
            vec![(1, "000002"), (4, "000002"), (6, "000002")]
        );
    }

    #[test]
    fn invariant_5_approved_void_of_an_unknown_sale() {
        let mut run = Run::new();
        run.boot("000001");
        run.rule(Kind::Void, Some(1), Action::Respond { code: "00".into() });
        run.prepared("000003", "void");
        run.exchange(&void("000003", "000009")).unwrap();
        let amount = AMOUNT.to_string();
        run.event(
            "voided",
            &[("stan", "000003"), ("original", "000009"), ("amount", &amount)],
        );
        assert_eq!(flagged(&run.verdict()), vec![(5, "000003")]);
    }

    #[test]
    fn invariant_5_sale_voided_twice_with_idempotency_off() {
        let mut run = Run::with_settings(Settings {
            idempotent_voids: false,
            ..Settings::default()
        });
        run.boot("000001");
        run.approved_sale("000002");
        let amount = AMOUNT.to_string();
        for stan in ["000003", "000004"] {
            run.prepared(stan, "void");
            run.exchange(&void(stan, "000002")).unwrap();
            run.event(
                "voided",
                &[("stan", stan), ("original", "000002"), ("amount", &amount)],
            );
        }
        // the second void credited the card again: invariant 1 as well
        assert_eq!(flagged(&run.verdict()), vec![(1, "000002"), (5, "000002")]);
    }

    #[test]
    fn invariant_6_power_cut_between_clearing_the_reversal_and_writing_the_log() {
        let mut run = Run::new();
        run.boot("000001");
        run.prepared("000002", "sale");
        run.exchange(&sale("000002")).unwrap();
        run.boot("000003"); // no record, no reversal announced
                            // the host keeps the money and nothing will reverse it: 1 and 2 as well
        assert_eq!(
            flagged(&run.verdict()),
            vec![(1, "000002"), (2, "000002"), (6, "000002")]
        );
    }

    #[test]
    fn reversal_pending_before_a_boot_and_not_announced_after_it_counts_as_lost() {
        let mut run = Run::new();
        run.boot("000001");
        run.lost_sale("000002");
        run.boot("000003");
        let verdict = run.verdict();
        assert_eq!(
            flagged(&verdict),
            vec![(1, "000002"), (2, "000002"), (6, "000002")]
        );
        assert!(verdict.unresolved.is_empty(), "{verdict:#?}");
    }

    #[test]
    fn invariant_7_unbalanced_settlement() {
        let mut run = Run::new();
        run.boot("000001");
        run.approved_sale("000002");
        run.settle("000003", 2, 2 * AMOUNT);
        assert_eq!(run.events.last().unwrap().event.get("balanced"), "no");
        assert_eq!(flagged(&run.verdict()), vec![(7, "000003")]);
    }

    /// A change made to a correct 0400.
    type Tamper = fn(&mut Message);

    /// P3 with the 0400 changed by `tamper`.
    fn p3_with_reversal(tamper: impl FnOnce(&mut Message)) -> Verdict {
        let mut run = Run::new();
        run.boot("000001");
        let request = run.lost_sale("000002");
        let mut message = reversal(&request, "98", None);
        tamper(&mut message);
        run.deliver(&message);
        run.event("reversal_done", &[("stan", "000002"), ("rc", "00")]);
        run.verdict()
    }

    #[test]
    fn invariant_8_reversal_messages_that_break_the_rules() {
        let cases: [(&str, Tamper); 6] = [
            ("reason 39=\"96\"", |m| {
                m.set(39, "96");
            }),
            ("field 35 (track 2)", |m| {
                m.set(35, "6222021234567890123D25121010000");
            }),
            ("field 52 (PIN block)", |m| {
                m.set(52, "0123456789ABCDEF");
            }),
            ("field 42 is", |m| {
                m.set(42, "MERCHANT0000002");
            }),
            ("field 3 is absent", |m| {
                m.remove(3);
            }),
            ("carries 38=123456 but the terminal received no auth code", |m| {
                m.set(38, "123456");
            }),
        ];
        for (problem, tamper) in cases {
            let verdict = p3_with_reversal(tamper);
            assert_eq!(flagged(&verdict), vec![(8, "000002")], "{problem}");
            assert!(
                verdict.violations[0].summary.contains(problem),
                "{problem}: {verdict:#?}"
            );
        }
    }

    #[test]
    fn invariant_8_reversal_after_a_bad_mac_without_the_auth_code() {
        let mut run = Run::new();
        run.boot("000001");
        run.rule(Kind::Sale, Some(1), Action::CorruptMac);
        run.prepared("000002", "sale");
        let request = sale("000002");
        let reply = run.exchange(&request).unwrap();
        run.event("mac_error", &[("stan", "000002")]);
        run.event("reversal_pending", &[("stan", "000002"), ("reason", "A0")]);
        run.reverse(&request, "A0", None);
        let verdict = run.verdict();
        assert_eq!(flagged(&verdict), vec![(8, "000002")]);
        let expected = format!(
            "lacks 38 although the terminal received auth code {}",
            text(&reply, 38)
        );
        assert!(verdict.violations[0].summary.contains(&expected), "{verdict:#?}");
    }

    #[test]
    fn invariant_8_void_reversal_without_61_and_evidence_quotes_times() {
        let (mut run, request) = void_reply_lost();
        let mut message = reversal(&request, "98", None);
        message.remove(61);
        run.deliver(&message);
        run.event("reversal_done", &[("stan", "000003"), ("rc", "00")]);
        let verdict = run.verdict();
        assert_eq!(flagged(&verdict), vec![(8, "000003")]);
        let violation = &verdict.violations[0];
        assert!(violation.summary.contains("field 61 is absent"), "{violation:#?}");
        assert!(
            violation.evidence.iter().all(|line| line.contains(" ms")),
            "{violation:#?}"
        );
        for quoted in [
            "host received 0200",
            "host received 0400",
            "terminal timeout",
            "ledger TERM0001/000001/000003",
        ] {
            assert!(
                violation.evidence.iter().any(|l| l.contains(quoted)),
                "{quoted}: {violation:#?}"
            );
        }
    }

    #[test]
    fn stans_wrap_after_999999() {
        assert!(stan_follows(999_999, 1));
        assert!(stan_follows(1, 2));
        assert!(!stan_follows(2, 2));
        assert!(!stan_follows(5, 1));
    }
}
