//! Finds which event pattern a console line matches and reads its named groups, once per line on
//! the console's read path, in little more than one pass over the line.
//!
//! When every pattern begins with a literal (as `\] TXN sent mti=` does), a [`LiteralFinder`]
//! finds the leftmost literal — a line with none is no event — and that literal's pattern,
//! anchored there, confirms the match and reads its groups in one go: nothing can match earlier,
//! and nothing written before it matches there. A pattern that reads straight through (most do:
//! see [`StraightPattern`]) does so in one loop of its own; others run as a one-pass DFA, or the
//! general engine when they need to backtrack. When the pattern does not match there (or some
//! pattern has no literal), a lazy DFA over every pattern finds the pattern and where its match
//! ends, that pattern's reverse DFA where it starts, and the group reader reads the groups over
//! that span. (The general-purpose captures API runs a full search per call and costs several
//! times more.)

use std::sync::{Arc, Mutex};

use regex_automata::dfa::onepass;
use regex_automata::hybrid::dfa::{Cache as DfaCache, DFA};
use regex_automata::meta;
use regex_automata::nfa::thompson;
use regex_automata::util::captures::Captures;
use regex_automata::{Anchored, Input, MatchKind, PatternID};

use super::{value, Fields};
use crate::literals::LiteralFinder;
use crate::straight::StraightPattern;

/// Every event pattern of a profile, compiled for the read path.
pub(super) struct EventMatcher {
    /// Where each pattern can start, when every pattern begins with a literal.
    starts: Option<Starts>,
    /// All patterns at once, forward: which pattern matches first, and where its match ends.
    forward: DFA,
    /// All patterns reversed, searched for one pattern only, back from the end of its match:
    /// where it starts. (Searching back for every pattern at once would run to the start of the
    /// line whenever some pattern has a `.*`.)
    reverse: DFA,
    patterns: Vec<GroupReader>,
    /// The patterns as written, to compile a copy.
    sources: Vec<String>,
    /// Search state, kept between lines (one reader thread uses it; the lock is uncontended).
    scratch: Mutex<Scratch>,
}

impl Clone for EventMatcher {
    /// A copy with search state of its own.
    fn clone(&self) -> EventMatcher {
        let sources: Vec<&str> = self.sources.iter().map(String::as_str).collect();
        EventMatcher::new(&sources).expect("these patterns compiled once already")
    }
}

impl std::fmt::Debug for EventMatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "EventMatcher({} patterns)", self.patterns.len())
    }
}

/// Reads one pattern's named groups where it may match.
enum GroupReader {
    /// The common case: a pattern that reads straight through, with a loop of its own.
    Straight(StraightPattern),
    /// A pattern that is one-pass (at each byte at most one way forward) all the same.
    OnePass {
        dfa: Box<onepass::DFA>,
        names: Vec<(usize, Arc<str>)>,
    },
    /// Patterns such as `(?P<why>.*) attempt=` need backtracking.
    General {
        regex: meta::Regex,
        names: Vec<(usize, Arc<str>)>,
    },
}

/// The literals every match of each pattern begins with.
struct Starts {
    finder: LiteralFinder,
    /// The event pattern of each literal.
    pattern_of: Vec<usize>,
}

struct Scratch {
    forward: DfaCache,
    reverse: DfaCache,
    /// Each pattern's group reader's state, by pattern index.
    groups: Vec<GroupScratch>,
}

/// What a group reader keeps between lines.
enum GroupScratch {
    /// A straight pattern keeps nothing.
    Nothing,
    OnePass(onepass::Cache, Captures),
    General(Captures),
}

impl EventMatcher {
    /// Compiles `patterns`; an error names the first one that does not compile.
    pub(super) fn new(patterns: &[&str]) -> Result<EventMatcher, (usize, String)> {
        let readers = patterns
            .iter()
            .enumerate()
            .map(|(index, pattern)| GroupReader::new(pattern).map_err(|e| (index, e)))
            .collect::<Result<Vec<_>, _>>()?;
        let combine_error = |e: regex_automata::hybrid::BuildError| (usize::MAX, e.to_string());
        let forward = DFA::builder()
            .syntax(bytewise())
            .build_many(patterns)
            .map_err(combine_error)?;
        let reverse = DFA::builder()
            .syntax(bytewise())
            .thompson(thompson::Config::new().reverse(true))
            .configure(
                DFA::config()
                    .prefilter(None)
                    .match_kind(MatchKind::All)
                    .starts_for_each_pattern(true),
            )
            .build_many(patterns)
            .map_err(combine_error)?;
        let scratch = Mutex::new(Scratch {
            forward: forward.create_cache(),
            reverse: reverse.create_cache(),
            groups: readers.iter().map(GroupReader::scratch).collect(),
        });
        Ok(EventMatcher {
            starts: Starts::new(patterns),
            forward,
            reverse,
            patterns: readers,
            sources: patterns.iter().map(|p| p.to_string()).collect(),
            scratch,
        })
    }

    /// The index of the pattern `line` matches (the earliest match in the line; at the same
    /// place, the pattern written first) and its named groups' values.
    pub(super) fn matches(&self, line: &str) -> Option<(usize, Fields)> {
        let mut scratch = self
            .scratch
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let Scratch {
            forward,
            reverse,
            groups,
        } = &mut *scratch;
        if let Some(starts) = &self.starts {
            // No pattern's literal in the line: no pattern can match.
            let (start, index) = starts.first(line)?;
            // The leftmost literal (and, of those there, the first pattern's): if its pattern
            // matches there, nothing can match earlier or win at that place.
            let span = Input::new(line).range(start..).anchored(Anchored::Yes);
            if let Some(fields) = self.patterns[index].read(line, &span, &mut groups[index]) {
                return Some((index, fields));
            }
        }
        // Otherwise the DFAs decide. The default lazy DFA configuration never gives up on a
        // search, so neither errs.
        let end = self.forward.try_search_fwd(forward, &Input::new(line)).ok()??;
        let back = Input::new(line)
            .range(..end.offset())
            .anchored(Anchored::Pattern(end.pattern()));
        let start = self.reverse.try_search_rev(reverse, &back).ok()??;
        let index = end.pattern().as_usize();
        let span = Input::new(line)
            .range(start.offset()..end.offset())
            .anchored(Anchored::Yes);
        // The pattern is known to match the span; should reading its groups fail all the same,
        // the line keeps its event without fields.
        let fields = self.patterns[index]
            .read(line, &span, &mut groups[index])
            .unwrap_or_default();
        Some((index, fields))
    }
}

impl Starts {
    /// The literals every pattern begins with, if each has a few (none when one pattern can begin
    /// anywhere, e.g. `.*ERROR`).
    fn new(patterns: &[&str]) -> Option<Starts> {
        let mut literals = Vec::new();
        let mut pattern_of = Vec::new();
        for (index, pattern) in patterns.iter().enumerate() {
            for literal in crate::literals::prefixes(pattern, false)? {
                literals.push(literal);
                pattern_of.push(index);
            }
        }
        let finder = LiteralFinder::new(&literals)?;
        Some(Starts { finder, pattern_of })
    }

    /// The leftmost place a pattern's literal begins in `line` and, of the patterns whose literal
    /// begins there, the first written.
    fn first(&self, line: &str) -> Option<(usize, usize)> {
        let (start, literal) = self.finder.find(line.as_bytes())?;
        Some((start, self.pattern_of[literal]))
    }
}

impl GroupReader {
    fn new(pattern: &str) -> Result<GroupReader, String> {
        if let Some(straight) = StraightPattern::new(pattern, false) {
            return Ok(GroupReader::Straight(straight));
        }
        let names = |info: &regex_automata::util::captures::GroupInfo| -> Vec<(usize, Arc<str>)> {
            info.pattern_names(PatternID::ZERO)
                .enumerate()
                .filter_map(|(index, name)| Some((index, Arc::from(name?))))
                .collect()
        };
        match onepass::DFA::builder().syntax(bytewise()).build(pattern) {
            Ok(dfa) => {
                let names = names(dfa.get_nfa().group_info());
                let dfa = Box::new(dfa);
                Ok(GroupReader::OnePass { dfa, names })
            }
            Err(_) => {
                let regex = meta::Regex::builder()
                    .syntax(bytewise())
                    .build(pattern)
                    .map_err(|e| e.to_string())?;
                let names = names(regex.group_info());
                Ok(GroupReader::General { regex, names })
            }
        }
    }

    fn scratch(&self) -> GroupScratch {
        match self {
            GroupReader::Straight(_) => GroupScratch::Nothing,
            GroupReader::OnePass { dfa, .. } => {
                GroupScratch::OnePass(dfa.create_cache(), dfa.create_captures())
            }
            GroupReader::General { regex, .. } => GroupScratch::General(regex.create_captures()),
        }
    }

    /// The named groups' values when the pattern matches `line` from the (anchored) start of
    /// `span`.
    fn read(&self, line: &str, span: &Input<'_>, scratch: &mut GroupScratch) -> Option<Fields> {
        let (captures, names) = match (self, scratch) {
            (GroupReader::Straight(straight), _) => {
                let found = straight.read(line.as_bytes(), span.start())?;
                let (count, bytes) = found.named_groups().fold((0, 0), |(count, bytes), (_, range)| {
                    (count + 1, bytes + range.len())
                });
                let mut fields = Fields::with_capacity(count, bytes);
                for (name, range) in found.named_groups() {
                    fields.push(name.clone(), &value(line, range));
                }
                return Some(fields);
            }
            (GroupReader::OnePass { dfa, names }, GroupScratch::OnePass(cache, captures)) => {
                // Fails only for a search configuration this module never makes.
                dfa.try_search(cache, span, captures).ok()?;
                (captures, names)
            }
            (GroupReader::General { regex, names }, GroupScratch::General(captures)) => {
                regex.search_captures(span, captures);
                (captures, names)
            }
            // Each reader is given the scratch it made.
            _ => return None,
        };
        if !captures.is_match() {
            return None;
        }
        let mut fields = Fields::with_capacity(names.len(), line.len());
        for (group, name) in names {
            if let Some(span) = captures.get_group(*group) {
                fields.push(name.clone(), &value(line, span.range()));
            }
        }
        Some(fields)
    }
}

fn bytewise() -> regex_automata::util::syntax::Config {
    regex_automata::util::syntax::Config::new()
        .unicode(false)
        .utf8(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matcher(patterns: &[&str]) -> EventMatcher {
        let matcher = EventMatcher::new(patterns).unwrap();
        assert!(
            matcher.starts.is_some(),
            "these patterns all begin with a literal"
        );
        matcher
    }

    /// The same patterns matched by the DFA path alone.
    fn through_the_dfa(patterns: &[&str]) -> EventMatcher {
        let mut matcher = EventMatcher::new(patterns).unwrap();
        matcher.starts = None;
        matcher
    }

    fn field<'a>(found: &'a (usize, Fields), name: &str) -> &'a str {
        found.1.get(name).unwrap_or("<absent>")
    }

    #[test]
    fn the_earliest_match_in_the_line_wins_and_at_one_place_the_first_written() {
        let events = matcher(&[
            r"ERROR (?P<why>.*)",
            r"\] (?P<tag>[A-Z]+) ",
            r"\] ERROR code=(?P<code>\d+)",
        ]);
        // The second pattern starts earlier in the line than the first.
        let found = events.matches("[ 1.000] ERROR code=7 disk full").unwrap();
        assert_eq!((found.0, field(&found, "tag")), (1, "ERROR"));
        // Two patterns at the same place: the one written first.
        let events = matcher(&[r"\] ERROR (?P<why>.*)", r"\] ERROR code=(?P<code>\d+)"]);
        let found = events.matches("[ 1.000] ERROR code=7 disk full").unwrap();
        assert_eq!((found.0, field(&found, "why")), (0, "code=7 disk full"));
        assert!(events.matches("[ 1.000] READY").is_none());
    }

    #[test]
    fn groups_are_read_from_one_pass_and_from_backtracking_patterns() {
        let events = matcher(&[
            r"\] TXN sent mti=(?P<mti>\d{4}) stan=(?P<stan>\d{6})",
            r"\] REVERSAL rejected stan=(?P<stan>\d{6}) (?P<why>.*) attempt=(?P<attempt>\d+)",
            r"\] REFUSED (?:original=(?P<original>\d{6}) )?why=(?P<why>\w+)",
        ]);
        let sent = events
            .matches("[ 2.5] TXN sent mti=0200 stan=000042 extra")
            .unwrap();
        assert_eq!(
            (sent.0, field(&sent, "mti"), field(&sent, "stan")),
            (0, "0200", "000042")
        );
        let rejected = events
            .matches("[ 2.5] REVERSAL rejected stan=000042 rc=96 mac attempt=2/3")
            .unwrap();
        assert_eq!(
            (field(&rejected, "why"), field(&rejected, "attempt")),
            ("rc=96 mac", "2")
        );
        // An optional group that took no part is absent, not empty.
        let refused = events.matches("[ 2.5] REFUSED why=busy").unwrap();
        assert_eq!(
            (field(&refused, "original"), field(&refused, "why")),
            ("<absent>", "busy")
        );
    }

    #[test]
    fn lines_with_other_scripts_are_matched_without_splitting_a_character() {
        let events = matcher(&[r"\] CARD read name=(?P<card>\S+)", r"签到 (?P<result>\S+)"]);
        let card = events.matches("[ 3.1] CARD read name=银联卡 pan=6222").unwrap();
        assert_eq!(field(&card, "card"), "银联卡");
        let sign_on = events.matches("[ 3.1] 签到 成功").unwrap();
        assert_eq!((sign_on.0, field(&sign_on, "result")), (1, "成功"));
    }

    #[test]
    fn the_literal_and_the_dfa_paths_agree() {
        let patterns = [
            r"\] TXN sent mti=(?P<mti>\d{4}) stan=(?P<stan>\d{6})",
            r"\] TXN (?P<what>\w+)",
            r"\] ERROR (?P<why>.*)",
            r"\] ERROR code=(?P<code>\d+)",
            r"\] REVERSAL rejected stan=(?P<stan>\d{6}) (?P<why>.*) attempt=(?P<attempt>\d+)",
            r"(?:READY|BOOT) (?P<rest>.*)",
        ];
        let lines = [
            "[ 1.0] TXN sent mti=0200 stan=000001",
            "[ 1.0] TXN sent mti=02x0 stan=000001",
            "[ 1.0] TXN reply mti=0210",
            "[ 1.0] ERROR code=7 disk",
            "] ERROR x ] TXN late",
            "[ 1.0] REVERSAL rejected stan=000009 rc=96 attempt=2/3",
            "[ 1.0] REVERSAL rejected stan=000009 no attempt here",
            "[ 1.0] BOOT posterm READY now",
            "nothing to see",
            "",
        ];
        let (literal, dfa) = (matcher(&patterns), through_the_dfa(&patterns));
        for line in lines {
            assert_eq!(literal.matches(line), dfa.matches(line), "{line:?}");
        }
        assert_eq!(
            literal.matches(lines[1]).unwrap().0,
            1,
            "a failed candidate gives way to the next"
        );
    }

    #[test]
    fn a_pattern_that_can_begin_anywhere_is_matched_by_the_dfa() {
        let events = EventMatcher::new(&[r"\] READY", r"(?P<free>\S+) bytes free"]).unwrap();
        assert!(events.starts.is_none());
        let found = events.matches("[ 1.0] heap: 4096 bytes free").unwrap();
        assert_eq!((found.0, field(&found, "free")), (1, "4096"));
        // A pattern that begins with one of a few characters still has literal starts.
        let digits = matcher(&[r"\] READY", r"(?P<free>\d+) bytes free"]);
        let found = digits.matches("[ 1.0] heap: 4096 bytes free").unwrap();
        assert_eq!((found.0, field(&found, "free")), (1, "4096"));
    }

    #[test]
    fn a_copy_matches_like_the_original() {
        let events = matcher(&[r"\] STATUS stan=(?P<stan>\d{6})"]);
        let copy = events.clone();
        let line = "[ 9.9] STATUS stan=000777 batch=000001";
        assert_eq!(copy.matches(line), events.matches(line));
        assert_eq!(field(&copy.matches(line).unwrap(), "stan"), "000777");
    }

    #[test]
    fn a_pattern_that_does_not_compile_is_named_by_its_index() {
        let error = EventMatcher::new(&[r"\] OK", r"\] BAD (?P<x>"]).err().unwrap();
        assert_eq!(error.0, 1, "{}", error.1);
    }
}
