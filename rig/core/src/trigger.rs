//! The trigger engine: "when `console regex | canonical event | host message | timer` [after Δ]
//! do `action` [for a duration], once or every time". Triggers fire without the caller in the
//! loop: a console match is acted on in the console's read path, a host match in the host's
//! journal path, and delayed actions and undos on the engine's own scheduler thread. Each firing
//! records when its event happened, when the action started and when it completed.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use posrig_host::{Direction, JournalEntry};
use regex::Regex;

use crate::actuators::{Action, Actuators};
use crate::capability::{ConsoleLine, LineSink};
use crate::literals::LiteralFinder;
use crate::straight::StraightPattern;
use crate::timeline::{now_ns, Entry, Source, Timeline};

/// What a trigger waits for.
#[derive(Debug, Clone)]
pub enum When {
    /// A raw console line matching the regex.
    Console(Regex),
    /// A canonical terminal event with this name and, if given, these field values.
    Event {
        /// The event name, e.g. `request_sent`.
        name: String,
        /// Fields that must have these values, e.g. `("mti", "0200")`.
        fields: Vec<(String, String)>,
    },
    /// A message on the host's wire.
    Host {
        /// Received by the host (`In`) or sent (`Out`).
        direction: Direction,
        /// The MTI, if it matters.
        mti: Option<String>,
        /// The STAN, if it matters.
        stan: Option<String>,
    },
    /// The moment the trigger is armed (with `after`, a timer).
    Armed,
}

/// A trigger to arm.
#[derive(Debug, Clone)]
pub struct Trigger {
    /// The event it waits for.
    pub when: When,
    /// How long after the event to act.
    pub after: Duration,
    /// What to do.
    pub action: Action,
    /// Undo the action after this long (power back on, link back up), if set.
    pub hold: Option<Duration>,
    /// Fire on every match instead of the first only.
    pub every_time: bool,
}

/// A trigger as data (JSON, TOML, a Python dict), turned into a [`Trigger`] by [`TriggerSpec::build`].
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TriggerSpec {
    /// The event to wait for.
    pub when: WhenSpec,
    /// Milliseconds after the event to act.
    #[serde(default)]
    pub after_ms: f64,
    /// What to do.
    pub action: Action,
    /// Undo the action after this many milliseconds, if set.
    #[serde(default)]
    pub hold_ms: Option<f64>,
    /// Fire on every match instead of the first only.
    #[serde(default)]
    pub every_time: bool,
}

/// [`When`] as data.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum WhenSpec {
    /// A console line matching this regex.
    Console(String),
    /// A canonical event with this name and these field values.
    Event {
        /// The event name.
        name: String,
        /// Field values that must match.
        #[serde(default)]
        fields: std::collections::BTreeMap<String, String>,
    },
    /// A host message.
    Host {
        /// `in` (received by the host) or `out` (sent).
        direction: Direction,
        /// The MTI, if it matters.
        #[serde(default)]
        mti: Option<String>,
        /// The STAN, if it matters.
        #[serde(default)]
        stan: Option<String>,
    },
    /// The moment it is armed.
    Armed,
}

impl TriggerSpec {
    /// The trigger this describes; an error names what is wrong (a bad regex, a negative time).
    pub fn build(self) -> Result<Trigger, String> {
        let duration = |ms: f64, what: &str| {
            if ms.is_finite() && ms >= 0.0 {
                Ok(Duration::from_secs_f64(ms / 1000.0))
            } else {
                Err(format!("{what} must be a number of milliseconds, not {ms}"))
            }
        };
        let when = match self.when {
            WhenSpec::Console(pattern) => {
                When::Console(Regex::new(&pattern).map_err(|e| format!("console pattern {pattern:?}: {e}"))?)
            }
            WhenSpec::Event { name, fields } => When::Event {
                name,
                fields: fields.into_iter().collect(),
            },
            WhenSpec::Host { direction, mti, stan } => When::Host { direction, mti, stan },
            WhenSpec::Armed => When::Armed,
        };
        Ok(Trigger {
            when,
            after: duration(self.after_ms, "after_ms")?,
            action: self.action,
            hold: self.hold_ms.map(|ms| duration(ms, "hold_ms")).transpose()?,
            every_time: self.every_time,
        })
    }
}

/// One firing of a trigger.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Firing {
    /// The trigger's id.
    pub trigger: u64,
    /// What matched.
    pub matched: String,
    /// When the matching event happened (rig clock, ns).
    pub event_ns: u64,
    /// When the action started.
    pub started_ns: u64,
    /// When the action completed.
    pub done_ns: u64,
    /// When the undo completed, for a held action.
    pub undone_ns: Option<u64>,
    /// Why the action failed, if it did.
    pub error: Option<String>,
}

impl Firing {
    /// Time from the event to the action's completion, in nanoseconds.
    pub fn latency_ns(&self) -> u64 {
        self.done_ns.saturating_sub(self.event_ns)
    }
}

struct Armed {
    id: u64,
    trigger: Trigger,
    /// Fired once and about to be removed.
    spent: bool,
    /// The console pattern, compiled for the read path.
    console: Option<ConsolePattern>,
}

impl Armed {
    fn new(id: u64, trigger: Trigger) -> Armed {
        let console = match &trigger.when {
            When::Console(regex) => ConsolePattern::new(regex.as_str()),
            _ => None,
        };
        Armed {
            id,
            trigger,
            spent: false,
            console,
        }
    }

    /// True when this is a console trigger whose pattern matches `text`.
    fn console_matches(&self, text: &str) -> bool {
        self.console
            .as_ref()
            .is_some_and(|pattern| pattern.is_match(text))
    }
}

/// A console trigger's pattern, compiled for the read path, where the line that fires it must be
/// told at once even after a quiet spell (when an engine's caches have gone cold).
struct ConsolePattern {
    /// The regex as a matcher with no DFA at all (measured: a DFA, lazily built or built in full
    /// when armed, makes the first match after a quiet spell slower, by tens of microseconds).
    regex: regex_automata::meta::Regex,
    /// The literals a match begins with, when it has a few: lines without them are turned away
    /// before anything else runs.
    starts: Option<LiteralFinder>,
    /// The pattern read straight through from each place a literal begins, when it reads so: a
    /// plain loop, where even the NFA takes some 15 µs for the first match after a quiet spell.
    /// Exact on ASCII lines; other lines go to the regex.
    straight: Option<StraightPattern>,
}

impl ConsolePattern {
    fn new(pattern: &str) -> Option<ConsolePattern> {
        let regex = regex_automata::meta::Regex::builder()
            .configure(regex_automata::meta::Config::new().hybrid(false).dfa(false))
            .build(pattern)
            .ok()?;
        let starts =
            crate::literals::prefixes(pattern, true).and_then(|literals| LiteralFinder::new(&literals));
        let straight = starts.as_ref().and_then(|_| StraightPattern::new(pattern, true));
        Some(ConsolePattern {
            regex,
            starts,
            straight,
        })
    }

    fn is_match(&self, text: &str) -> bool {
        let Some(starts) = &self.starts else {
            return self.regex.is_match(text);
        };
        let bytes = text.as_bytes();
        let Some((mut at, _)) = starts.find(bytes) else {
            return false;
        };
        let Some(straight) = self.straight.as_ref().filter(|_| text.is_ascii()) else {
            return self.regex.is_match(text);
        };
        // Every match begins where a literal does.
        loop {
            if straight.read(bytes, at).is_some() {
                return true;
            }
            match starts.find_from(bytes, at + 1) {
                Some((next, _)) => at = next,
                None => return false,
            }
        }
    }
}

/// Work for the scheduler thread, ordered by due time.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
enum Job {
    Act { trigger: u64, firing: usize },
    Undo { firing: usize },
}

struct State {
    armed: Vec<Armed>,
    /// Actions waiting to be done (then their undos), by firing index, with how long to hold.
    pending: Vec<Option<(Action, Option<Duration>)>>,
    firings: Vec<Firing>,
    jobs: BinaryHeap<Reverse<(u64, Job)>>,
    next_id: u64,
    stopping: bool,
}

struct Shared {
    actuators: Arc<Actuators>,
    timeline: Timeline,
    state: Mutex<State>,
    wake: Condvar,
    /// Whether any console trigger and any event trigger is armed, kept with `state.armed` so
    /// the console's read path skips the lock for a line no trigger could want.
    console_armed: AtomicBool,
    event_armed: AtomicBool,
}

/// The trigger engine. Dropping it stops its scheduler.
pub struct TriggerEngine {
    shared: Arc<Shared>,
    scheduler: Option<JoinHandle<()>>,
}

impl TriggerEngine {
    /// An engine acting through `actuators` and recording on `timeline`.
    pub fn new(actuators: Arc<Actuators>, timeline: Timeline) -> TriggerEngine {
        let shared = Arc::new(Shared {
            actuators,
            timeline,
            state: Mutex::new(State {
                armed: Vec::new(),
                pending: Vec::new(),
                firings: Vec::new(),
                jobs: BinaryHeap::new(),
                next_id: 1,
                stopping: false,
            }),
            wake: Condvar::new(),
            console_armed: AtomicBool::new(false),
            event_armed: AtomicBool::new(false),
        });
        let scheduler = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("trigger scheduler".into())
                .spawn(move || schedule(&shared))
                .ok()
        };
        TriggerEngine { shared, scheduler }
    }

    /// Arms a trigger and returns its id.
    pub fn arm(&self, trigger: Trigger) -> u64 {
        let mut state = self.shared.state.lock().expect("trigger lock");
        let id = state.next_id;
        state.next_id += 1;
        let detail = format!(
            "{:?} after {:?} do {}",
            trigger.when,
            trigger.after,
            trigger.action.name()
        );
        self.shared.timeline.push(Entry::new(
            now_ns(),
            Source::Trigger,
            format!("trigger {id} armed"),
            detail,
        ));
        let fires_now = matches!(trigger.when, When::Armed);
        state.armed.push(Armed::new(id, trigger));
        self.shared.note_kinds(&state);
        drop(state);
        if fires_now {
            self.shared.matched(|a| a.id == id, now_ns(), "armed");
        }
        id
    }

    /// Disarms a trigger; its pending actions still run.
    pub fn disarm(&self, id: u64) {
        let mut state = self.shared.state.lock().expect("trigger lock");
        state.armed.retain(|a| a.id != id);
        self.shared.note_kinds(&state);
    }

    /// Every firing so far.
    pub fn firings(&self) -> Vec<Firing> {
        self.shared.state.lock().expect("trigger lock").firings.clone()
    }

    /// Waits until `count` firings have completed (including undos), or `timeout` passes.
    pub fn wait_firings(&self, count: usize, timeout: Duration) -> Vec<Firing> {
        let deadline = std::time::Instant::now() + timeout;
        let mut state = self.shared.state.lock().expect("trigger lock");
        loop {
            let complete = state.firings.iter().filter(|f| f.done_ns > 0).count() >= count
                && state.pending.iter().all(Option::is_none)
                && state.jobs.is_empty();
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if complete || left.is_zero() {
                return state.firings.clone();
            }
            state = self
                .shared
                .wake
                .wait_timeout(state, left.min(Duration::from_millis(20)))
                .expect("trigger lock")
                .0;
        }
    }

    /// Called by the console reader with a line's raw text, in its read path, before the line is
    /// parsed: console-regex triggers fire here.
    pub fn on_console_text(&self, text: &str, t_ns: u64) {
        if !self.shared.console_armed.load(Ordering::Acquire) {
            return;
        }
        self.shared.matched(|a| a.console_matches(text), t_ns, text);
    }

    /// Called by the console reader with each parsed line: canonical-event triggers fire here.
    pub fn on_console_line(&self, line: &ConsoleLine) {
        let Some(event) = &line.event else {
            return;
        };
        if !self.shared.event_armed.load(Ordering::Acquire) {
            return;
        }
        self.shared.matched(
            |a| match &a.trigger.when {
                When::Event { name, fields } => {
                    &event.name == name && fields.iter().all(|(k, v)| event.get(k) == v)
                }
                _ => false,
            },
            line.t_ns,
            &line.text,
        );
    }

    /// Called by the host for every journal entry, in its journal path.
    pub fn on_host(&self, entry: &JournalEntry) {
        self.shared.matched(
            |a| match &a.trigger.when {
                When::Host { direction, mti, stan } => {
                    entry.direction == *direction
                        && mti.as_ref().is_none_or(|m| entry.mti.as_ref() == Some(m))
                        && stan.as_ref().is_none_or(|s| entry.stan.as_ref() == Some(s))
                }
                _ => false,
            },
            entry.t_ns,
            &format!(
                "host {:?} {} stan {}",
                entry.direction,
                entry.mti.as_deref().unwrap_or("-"),
                entry.stan.as_deref().unwrap_or("-")
            ),
        );
    }
}

impl Drop for TriggerEngine {
    fn drop(&mut self) {
        self.shared.state.lock().expect("trigger lock").stopping = true;
        self.shared.wake.notify_all();
        if let Some(scheduler) = self.scheduler.take() {
            let _ = scheduler.join();
        }
    }
}

impl Shared {
    /// Fires every armed trigger `matches` accepts: immediate actions right here, delayed ones
    /// through the scheduler. Between the match and an immediate action there is only the
    /// firing's record: a trigger that fires once is marked spent, and removed (freeing its
    /// compiled pattern, some 15 µs) only after acting.
    fn matched(&self, matches: impl Fn(&Armed) -> bool, event_ns: u64, what: &str) {
        let mut now = Vec::new();
        let mut any_spent = false;
        {
            let mut state = self.state.lock().expect("trigger lock");
            for index in 0..state.armed.len() {
                let armed = &mut state.armed[index];
                if armed.spent || !matches(armed) {
                    continue;
                }
                armed.spent = !armed.trigger.every_time;
                any_spent |= armed.spent;
                // Only what the firing needs is copied out: no clone of the trigger and its pattern.
                let (id, action, hold, after) = (
                    armed.id,
                    armed.trigger.action.clone(),
                    armed.trigger.hold,
                    armed.trigger.after,
                );
                let firing = state.firings.len();
                state.firings.push(Firing {
                    trigger: id,
                    matched: what.to_string(),
                    event_ns,
                    started_ns: 0,
                    done_ns: 0,
                    undone_ns: None,
                    error: None,
                });
                if after.is_zero() {
                    state.pending.push(None);
                    now.push((id, firing, action, hold));
                } else {
                    state.pending.push(Some((action, hold)));
                    let due_ns = event_ns + after.as_nanos() as u64;
                    state
                        .jobs
                        .push(Reverse((due_ns, Job::Act { trigger: id, firing })));
                    self.wake.notify_all();
                }
            }
            if any_spent {
                self.note_kinds(&state);
            }
        }
        for (id, firing, action, hold) in now {
            self.carry_out(id, firing, action, hold);
        }
        if any_spent {
            let spent: Vec<Armed> = {
                let mut state = self.state.lock().expect("trigger lock");
                let (spent, kept) = std::mem::take(&mut state.armed)
                    .into_iter()
                    .partition(|a| a.spent);
                state.armed = kept;
                spent
            };
            drop(spent);
        }
    }

    /// Notes which kinds of trigger `state` has armed (and not spent).
    fn note_kinds(&self, state: &State) {
        let any = |kind: fn(&When) -> bool| state.armed.iter().any(|a| !a.spent && kind(&a.trigger.when));
        self.console_armed
            .store(any(|w| matches!(w, When::Console(_))), Ordering::Release);
        self.event_armed
            .store(any(|w| matches!(w, When::Event { .. })), Ordering::Release);
    }

    /// Performs the scheduled action of firing `firing`.
    fn act(&self, trigger: u64, firing: usize) {
        let Some((action, hold)) = self.state.lock().expect("trigger lock").pending[firing].take() else {
            return;
        };
        self.carry_out(trigger, firing, action, hold);
    }

    /// Performs `action` for firing `firing`, records it and schedules its undo after `hold`.
    fn carry_out(&self, trigger: u64, firing: usize, action: Action, hold: Option<Duration>) {
        let outcome = self.actuators.perform(&action, &format!("trigger {trigger}"));
        let mut state = self.state.lock().expect("trigger lock");
        let record = &mut state.firings[firing];
        match outcome {
            Ok(done) => {
                record.started_ns = done.started_ns;
                record.done_ns = done.done_ns;
            }
            Err(e) => {
                let now = now_ns();
                record.started_ns = now;
                record.done_ns = now;
                record.error = Some(e.to_string());
            }
        }
        let event_ns = record.event_ns;
        let detail = format!("{} → {}", record.matched, action.name());
        let latency_us = record.latency_ns() / 1000;
        if let (Some(hold), Some(undo)) = (hold, action.undo()) {
            let due_ns = record.done_ns + hold.as_nanos() as u64;
            state.pending[firing] = Some((undo, None));
            state.jobs.push(Reverse((due_ns, Job::Undo { firing })));
        }
        drop(state);
        let entry = Entry::new(
            event_ns,
            Source::Trigger,
            format!("trigger {trigger} fired"),
            detail,
        )
        .with("latency_us", latency_us.to_string());
        self.timeline.push(entry);
        self.wake.notify_all();
    }

    fn undo(&self, firing: usize) {
        let (trigger, action) = {
            let mut state = self.state.lock().expect("trigger lock");
            let Some((action, _)) = state.pending[firing].take() else {
                return;
            };
            (state.firings[firing].trigger, action)
        };
        let outcome = self
            .actuators
            .perform(&action, &format!("trigger {trigger} (undo)"));
        let mut state = self.state.lock().expect("trigger lock");
        let record = &mut state.firings[firing];
        match outcome {
            Ok(done) => record.undone_ns = Some(done.done_ns),
            Err(e) => record.error = Some(e.to_string()),
        }
        drop(state);
        self.wake.notify_all();
    }
}

/// The scheduler thread: sleeps until the next job is due, then does it.
fn schedule(shared: &Shared) {
    let mut state = shared.state.lock().expect("trigger lock");
    loop {
        if state.stopping {
            return;
        }
        let next_due = state.jobs.peek().map(|Reverse((due, _))| *due);
        match next_due {
            None => state = shared.wake.wait(state).expect("trigger lock"),
            Some(due) => {
                let now = now_ns();
                if due > now {
                    let wait = Duration::from_nanos(due - now);
                    state = shared.wake.wait_timeout(state, wait).expect("trigger lock").0;
                    continue;
                }
                let Some(Reverse((_, job))) = state.jobs.pop() else {
                    continue;
                };
                drop(state);
                match job {
                    Job::Act { trigger, firing } => shared.act(trigger, firing),
                    Job::Undo { firing } => shared.undo(firing),
                }
                state = shared.state.lock().expect("trigger lock");
            }
        }
    }
}

/// The engine reads the console directly: raw lines for console-regex triggers, parsed lines for
/// event triggers.
impl LineSink for TriggerEngine {
    fn raw(&self, text: &str, t_ns: u64) {
        self.on_console_text(text, t_ns);
    }

    fn line(&self, line: &ConsoleLine) {
        self.on_console_line(line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actuators::Capabilities;

    #[test]
    fn arming_a_trigger_fires_only_that_one_of_those_that_fire_when_armed() {
        let timeline = Timeline::new();
        let actuators = Arc::new(Actuators::new(Capabilities::default(), timeline.clone()));
        let engine = TriggerEngine::new(actuators, timeline);
        let when_armed = Trigger {
            when: When::Armed,
            after: Duration::ZERO,
            action: Action::LinkUp,
            hold: None,
            every_time: true,
        };
        let first = engine.arm(when_armed.clone());
        let second = engine.arm(when_armed);
        let fired: Vec<u64> = engine
            .wait_firings(2, Duration::from_secs(5))
            .iter()
            .map(|f| f.trigger)
            .collect();
        assert_eq!(
            fired,
            [first, second],
            "arming the second does not fire the first again"
        );
    }

    #[test]
    fn a_console_pattern_matches_where_its_regex_does() {
        let lines = [
            "[ 1.0] TXN sent mti=0200 stan=000042",
            "[ 1.0] TXN sent mti=0400 stan=000042 ] TXN sent mti=0200 stan=000043",
            "[ 1.0] TXN sent mti=0200 stan=00004",
            "[ 1.0] TXN sent mti=0200 stan=٠٠٠٠٤٢",
            "[ 1.0] 银联 TXN sent mti=0200 stan=000042",
            "[ 1.0] CARD read name=\"银联\"",
            "[ 1.0] READY",
            "",
        ];
        let patterns = [
            // Straight, with a literal: the loop, or the regex on lines beyond ASCII.
            r"\] TXN sent mti=0200 stan=\d{6}",
            r"\] CARD read name=(?P<name>.*)",
            // Not straight, or with no literal: the regex.
            r"\] TXN sent mti=(?:0200|0220)? stan=\d+",
            r"\d{6}$",
        ];
        for pattern in patterns {
            let compiled = ConsolePattern::new(pattern).unwrap();
            let regex = Regex::new(pattern).unwrap();
            for line in lines {
                assert_eq!(
                    compiled.is_match(line),
                    regex.is_match(line),
                    "{pattern} on {line:?}"
                );
            }
        }
        assert!(ConsolePattern::new(patterns[0]).unwrap().straight.is_some());
        assert!(ConsolePattern::new(patterns[2]).unwrap().straight.is_none());
    }
}
