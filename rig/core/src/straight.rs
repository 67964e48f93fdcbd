//! Patterns that read a line straight through: literals, runs of a byte class (`\d{6}`, `\S+`,
//! `[^"]*`), choices between literals that differ in their first byte (`TC|AAC`), and named
//! groups around them — where at every byte there is only one way on, so a match never needs to
//! undo a step. Most event patterns of a terminal profile look like this, and for them one loop
//! over the line finds the match and its groups: a few nanoseconds a byte, no automaton.
//!
//! A pattern qualifies when each run is followed by something that cannot continue it (a literal
//! or choice whose first bytes the run's class lacks, a run of a disjoint class that must take at
//! least one byte, or the end of the pattern) or has a fixed length. Anything else — optional
//! groups, `.*` before more text, look-arounds — is left to the general engines.
//!
//! Terminal profiles are matched byte-wise (`\d` is an ASCII digit). Console triggers are Unicode
//! regexes (`\d` is any digit); their straight form keeps the ASCII part of each class, so it
//! reads an ASCII line exactly as the regex would, and other lines go to the regex.

use std::ops::Range;
use std::sync::Arc;

use regex_syntax::hir::{Class, Hir, HirKind};

use crate::literals::{self, begins_with};

/// Groups a straight pattern may have.
const MAX_GROUPS: usize = 32;

/// A pattern that reads a line straight through.
#[derive(Debug)]
pub(crate) struct StraightPattern {
    steps: Vec<Step>,
    /// The named groups in the order of their index, with their slot.
    names: Vec<(usize, Arc<str>)>,
}

#[derive(Debug)]
enum Step {
    /// These bytes, exactly.
    Literal(Box<[u8]>),
    /// One of these literals, told apart by their first byte.
    Choice(Vec<Box<[u8]>>),
    /// As many bytes of `class` as there are, at least `min` and at most `max`.
    Run {
        class: ByteSet,
        min: usize,
        max: Option<usize>,
    },
    /// A group begins.
    Open(usize),
    /// A group ends.
    Close(usize),
}

impl Step {
    /// The bytes this step's match can begin with, and whether it must take one; None for a
    /// group marker, which takes nothing.
    fn first_bytes(&self) -> Option<(ByteSet, bool)> {
        match self {
            Step::Literal(literal) => Some((ByteSet::of_first_bytes([literal]), true)),
            Step::Choice(literals) => Some((ByteSet::of_first_bytes(literals), true)),
            Step::Run { class, min, .. } => Some((*class, *min > 0)),
            Step::Open(_) | Step::Close(_) => None,
        }
    }
}

/// A set of bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct ByteSet([u64; 4]);

impl ByteSet {
    fn insert_range(&mut self, from: u8, to: u8) {
        for byte in from..=to {
            self.0[usize::from(byte >> 6)] |= 1 << (byte & 63);
        }
    }

    fn contains(&self, byte: u8) -> bool {
        self.0[usize::from(byte >> 6)] & (1 << (byte & 63)) != 0
    }

    fn overlaps(&self, other: &ByteSet) -> bool {
        self.0.iter().zip(other.0).any(|(a, b)| a & b != 0)
    }

    fn of_first_bytes<'a>(literals: impl IntoIterator<Item = &'a Box<[u8]>>) -> ByteSet {
        let mut set = ByteSet::default();
        for literal in literals {
            set.insert_range(literal[0], literal[0]);
        }
        set
    }
}

impl StraightPattern {
    /// The straight form of `pattern`, or None when it does not read straight through. Byte-wise
    /// (`unicode` false), it reads every line as the byte-wise regex does; with `unicode`, every
    /// ASCII line as the Unicode regex does.
    pub(crate) fn new(pattern: &str, unicode: bool) -> Option<StraightPattern> {
        let hir = literals::parse(pattern, unicode)?;
        let mut compiled = StraightPattern {
            steps: Vec::new(),
            names: Vec::new(),
        };
        compiled.flatten(&hir, unicode)?;
        compiled.names.sort_by_key(|(slot, _)| *slot);
        compiled.is_deterministic().then_some(compiled)
    }

    /// Appends the steps of `hir`; None when some part does not read straight.
    fn flatten(&mut self, hir: &Hir, unicode: bool) -> Option<()> {
        match hir.kind() {
            HirKind::Empty => {}
            HirKind::Literal(literal) => self.steps.push(Step::Literal(literal.0.clone())),
            HirKind::Class(class) => self.steps.push(Step::Run {
                class: byte_set(class, unicode)?,
                min: 1,
                max: Some(1),
            }),
            HirKind::Repetition(repetition) => {
                let class = match repetition.sub.kind() {
                    HirKind::Class(class) => byte_set(class, unicode)?,
                    HirKind::Literal(literal) if literal.0.len() == 1 => {
                        let mut set = ByteSet::default();
                        set.insert_range(literal.0[0], literal.0[0]);
                        set
                    }
                    _ => return None,
                };
                let (min, max) = (repetition.min as usize, repetition.max.map(|max| max as usize));
                // A lazy run stops as early as it can: the same as greedy only at a fixed length.
                if !repetition.greedy && max != Some(min) {
                    return None;
                }
                self.steps.push(Step::Run { class, min, max });
            }
            HirKind::Capture(capture) => {
                let slot = capture.index as usize;
                if slot >= MAX_GROUPS {
                    return None;
                }
                if let Some(name) = &capture.name {
                    self.names.push((slot, Arc::from(&**name)));
                }
                self.steps.push(Step::Open(slot));
                self.flatten(&capture.sub, unicode)?;
                self.steps.push(Step::Close(slot));
            }
            HirKind::Concat(parts) => parts.iter().try_for_each(|part| self.flatten(part, unicode))?,
            HirKind::Alternation(choices) => {
                let literals = choices
                    .iter()
                    .map(|choice| match choice.kind() {
                        HirKind::Literal(literal) => Some(literal.0.clone()),
                        _ => None,
                    })
                    .collect::<Option<Vec<_>>>()?;
                let firsts: std::collections::BTreeSet<u8> = literals.iter().map(|l| l[0]).collect();
                if firsts.len() != literals.len() {
                    return None;
                }
                self.steps.push(Step::Choice(literals));
            }
            HirKind::Look(_) => return None,
        }
        Some(())
    }

    /// True when no run can be continued by what follows it (see the module documentation).
    fn is_deterministic(&self) -> bool {
        self.steps.iter().enumerate().all(|(at, step)| match step {
            Step::Run { class, min, max } if *max != Some(*min) => {
                match self.steps[at + 1..].iter().find_map(Step::first_bytes) {
                    None => true,
                    Some((then, must_take)) => must_take && !class.overlaps(&then),
                }
            }
            _ => true,
        })
    }

    /// Whether the pattern matches `line` beginning exactly at `start`, and if so where.
    pub(crate) fn read(&self, line: &[u8], start: usize) -> Option<StraightMatch<'_>> {
        let mut spans = [(0usize, 0usize); MAX_GROUPS];
        let mut at = start;
        for step in &self.steps {
            match step {
                Step::Literal(literal) => {
                    if !begins_with(&line[at..], literal) {
                        return None;
                    }
                    at += literal.len();
                }
                Step::Choice(literals) => {
                    let literal = literals
                        .iter()
                        .find(|literal| begins_with(&line[at..], literal))?;
                    at += literal.len();
                }
                Step::Run { class, min, max } => {
                    let limit = max.map_or(line.len(), |max| line.len().min(at + max));
                    let taken = line[at..limit]
                        .iter()
                        .position(|&byte| !class.contains(byte))
                        .unwrap_or(limit - at);
                    if taken < *min {
                        return None;
                    }
                    at += taken;
                }
                Step::Open(slot) => spans[*slot].0 = at,
                Step::Close(slot) => spans[*slot].1 = at,
            }
        }
        Some(StraightMatch { pattern: self, spans })
    }
}

/// Where a straight pattern matched.
pub(crate) struct StraightMatch<'p> {
    pattern: &'p StraightPattern,
    /// Each group's byte range, by group index.
    spans: [(usize, usize); MAX_GROUPS],
}

impl StraightMatch<'_> {
    /// Each named group's name and byte range, in the order of the groups' indices.
    pub(crate) fn named_groups(&self) -> impl Iterator<Item = (&Arc<str>, Range<usize>)> + '_ {
        self.pattern.names.iter().map(|(slot, name)| {
            let (from, to) = self.spans[*slot];
            (name, from..to)
        })
    }
}

/// The bytes of `class`: a byte class as it is, a Unicode class's ASCII characters (on an ASCII
/// line, the only ones that can match). None for a byte-wise class of characters beyond ASCII.
fn byte_set(class: &Class, unicode: bool) -> Option<ByteSet> {
    let mut set = ByteSet::default();
    match class {
        Class::Bytes(bytes) => bytes
            .iter()
            .for_each(|range| set.insert_range(range.start(), range.end())),
        Class::Unicode(chars) => {
            for range in chars.iter() {
                if !unicode && range.end() > '\x7f' {
                    return None;
                }
                if let Ok(from) = u8::try_from(range.start()) {
                    let to = u8::try_from(range.end()).unwrap_or(0x7f).min(0x7f);
                    if from <= to {
                        set.insert_range(from, to);
                    }
                }
            }
        }
    }
    Some(set)
}

#[cfg(test)]
mod tests {
    use regex_automata::{meta, Anchored, Input, PatternID};

    use super::*;

    /// The text of `line` over `range`, made valid where a range splits a character.
    fn text(line: &str, range: Range<usize>) -> String {
        String::from_utf8_lossy(&line.as_bytes()[range]).into_owned()
    }

    /// The named groups of a straight match of `pattern` (byte-wise) on `line` at `start`.
    fn groups(pattern: &str, line: &str, start: usize) -> Option<Vec<(String, String)>> {
        let straight = StraightPattern::new(pattern, false).expect("a straight pattern");
        let found = straight.read(line.as_bytes(), start)?;
        Some(
            found
                .named_groups()
                .map(|(name, range)| (name.to_string(), text(line, range)))
                .collect(),
        )
    }

    fn pairs(expected: &[(&str, &str)]) -> Option<Vec<(String, String)>> {
        Some(
            expected
                .iter()
                .map(|(name, value)| (name.to_string(), value.to_string()))
                .collect(),
        )
    }

    #[test]
    fn profile_patterns_read_straight_and_give_their_groups() {
        let sent = r"\] TXN sent mti=(?P<mti>\d{4}) stan=(?P<stan>\d{6})";
        let line = "[ 1.0] TXN sent mti=0200 stan=000042 more";
        assert_eq!(
            groups(sent, line, 5),
            pairs(&[("mti", "0200"), ("stan", "000042")])
        );
        assert_eq!(groups(sent, line, 4), None, "anchored where it is told");
        assert_eq!(groups(sent, "[ 1.0] TXN sent mti=02x0 stan=000042", 5), None);
        assert_eq!(groups(sent, "[ 1.0] TXN sent mti=0200 stan=0042", 5), None);

        let card = r#"\] CARD read name="(?P<card>[^"]*)" pan=(?P<pan>\S+)"#;
        let line = r#"[ 1.0] CARD read name="银联 debit" pan=622202******1234 x"#;
        assert_eq!(
            groups(card, line, 5),
            pairs(&[("card", "银联 debit"), ("pan", "622202******1234")])
        );
        let emv = r"\] EMV second_generate_ac=(?P<result>TC|AAC) stan=(?P<stan>\d{6})";
        let line = "[ 1.0] EMV second_generate_ac=AAC stan=000007";
        assert_eq!(
            groups(emv, line, 5),
            pairs(&[("result", "AAC"), ("stan", "000007")])
        );
        assert_eq!(
            groups(emv, "[ 1.0] EMV second_generate_ac=AC stan=000007", 5),
            None
        );

        let why = r"\] ERROR (?P<why>.*)";
        assert_eq!(
            groups(why, "[ 1.0] ERROR disk full", 5),
            pairs(&[("why", "disk full")])
        );
        let empty = r"\] TXN approval_pending stan=(?P<stan>\d{6}) auth=(?P<auth>\S*)";
        assert_eq!(
            groups(empty, "[ 1.0] TXN approval_pending stan=000001 auth=", 5),
            pairs(&[("stan", "000001"), ("auth", "")])
        );
    }

    #[test]
    fn bounds_of_a_run_are_kept() {
        // At most three digits, then a space: a fourth digit cannot be followed by the space.
        assert_eq!(groups(r"n=(?P<n>\d{1,3}) ", "n=123 ", 0), pairs(&[("n", "123")]));
        assert_eq!(groups(r"n=(?P<n>\d{1,3}) ", "n=1234 ", 0), None);
        assert_eq!(groups(r"n=(?P<n>\d{2,3}) ", "n=1 ", 0), None);
        // A run at the end takes what it may and leaves the rest.
        assert_eq!(groups(r"n=(?P<n>\d{1,3})", "n=12345", 0), pairs(&[("n", "123")]));
        // Unnamed groups give no field.
        assert_eq!(groups(r"(a+)=(?P<v>\w+)", "aa=b1", 0), pairs(&[("v", "b1")]));
    }

    #[test]
    fn patterns_that_need_to_undo_a_step_are_left_to_the_engines() {
        for pattern in [
            r"\] REVERSAL rejected (?P<why>.*) attempt=(?P<n>\d+)",
            r"\] REFUSED (?:original=(?P<original>\d{6}) )?why=(?P<why>\w+)",
            r"\] X (?P<a>\w+)(?P<b>\d+)",
            r"\] X \d*\w+",
            r"\] X (?P<a>ab|ac)",
            r"^\] X",
            r"\] X \b\w+",
            r"\] X \w+?=",
            r"\] X (?:ab)+",
        ] {
            assert!(StraightPattern::new(pattern, false).is_none(), "{pattern}");
        }
        // Fixed-length runs need nothing after them to be told apart.
        assert!(StraightPattern::new(r"\] X (?P<a>\w{2})(?P<b>\d+)", false).is_some());
        assert!(StraightPattern::new(r"\] X (?P<a>\w+?) ", false).is_none());
        // Byte-wise, a class beyond ASCII cannot be a set of bytes.
        assert!(StraightPattern::new(r"\] X (?u:\d)+", false).is_none());
        assert!(StraightPattern::new(r"\] X \d+", true).is_some());
    }

    /// Real log lines, to be mangled.
    const LINES: [&str; 10] = [
        "[    1.234] TXN sent mti=0200 stan=000042",
        "[    1.234] TXN reply mti=0210 stan=000042 rc=00",
        "[    1.234] CARD read name=\"银联 debit\" pan=622202******1234",
        "[    1.234] EMV second_generate_ac=AAC stan=000007",
        "[    1.234] APPROVED stan=000001 amount=100 auth=123456 rrn=000000000001",
        "[    1.234] RECEIPT type=sale stan=000001 amount=1.00",
        "[    1.234] SETTLED batch=000012 count=3 amount=300 balanced=yes",
        "[    1.234] STATUS stan=000001 batch=000012 signed_on=true records=7 reversal=none",
        "[    1.234] ERROR sale needs an amount",
        "aa=b1 n=123 n=12345 xTCy xAACy 1.5 x",
    ];

    /// Patterns beyond the profile's, one for each kind of step.
    const MORE: [&str; 7] = [
        r"n=(?P<n>\d{1,3}) ",
        r"n=(?P<n>\d{2,4})",
        r"(a+)=(?P<v>\w+)",
        r"x(?P<c>TC|AAC)y",
        r"(?P<a>[\d.]+) (?P<b>\S*)",
        r"(?P<w>.*)",
        r"(?i)txn SENT mti=(?P<mti>\d+)",
    ];

    /// Compares every straight pattern of `patterns` with the regex engine, on mangled [`LINES`]
    /// at every place in them (Unicode patterns on ASCII lines only); returns the matches seen.
    fn cross_check(patterns: &[&str], unicode: bool) -> usize {
        let alphabet: &[char] = if unicode {
            &['0', '7', ' ', '=', '"', 'a', 'T', 'C', ']', '.', '\t']
        } else {
            &['0', '7', ' ', '=', '"', 'a', 'T', 'C', ']', '.', '银', '\t']
        };
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move |below: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % below as u64) as usize
        };
        let mut checked = 0;
        for pattern in patterns {
            let Some(straight) = StraightPattern::new(pattern, unicode) else {
                continue;
            };
            let syntax = regex_automata::util::syntax::Config::new()
                .unicode(unicode)
                .utf8(unicode);
            let regex = meta::Regex::builder().syntax(syntax).build(pattern).unwrap();
            let mut captures = regex.create_captures();
            for round in 0..200 {
                let mut line: Vec<char> = LINES[round % LINES.len()].chars().collect();
                for _ in 0..round % 4 {
                    let at = next(line.len());
                    match next(3) {
                        0 => drop(line.remove(at)),
                        1 => line.insert(at, alphabet[next(alphabet.len())]),
                        _ => line[at] = alphabet[next(alphabet.len())],
                    }
                }
                let line: String = line.into_iter().collect();
                if unicode && !line.is_ascii() {
                    continue;
                }
                for start in 0..=line.len() {
                    let span = Input::new(&line).range(start..).anchored(Anchored::Yes);
                    regex.search_captures(&span, &mut captures);
                    let expected = captures.is_match().then(|| {
                        let names = captures.group_info().pattern_names(PatternID::ZERO);
                        names
                            .enumerate()
                            .filter_map(|(group, name)| {
                                Some((name?.to_string(), text(&line, captures.get_group(group)?.range())))
                            })
                            .collect::<Vec<_>>()
                    });
                    let found = straight.read(line.as_bytes(), start).map(|found| {
                        found
                            .named_groups()
                            .map(|(name, range)| (name.to_string(), text(&line, range)))
                            .collect::<Vec<_>>()
                    });
                    assert_eq!(found, expected, "{pattern} on {line:?} from {start}");
                    checked += usize::from(expected.is_some());
                }
            }
        }
        checked
    }

    /// Every straight pattern of the posterm profile, and a few more, agree with the byte-wise
    /// regex engine on lines made by mangling real log lines, at every place in them.
    #[test]
    fn straight_reading_agrees_with_the_regex_engine() {
        let profile = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../fixtures/terminals/posterm.toml"
        ))
        .unwrap();
        let patterns: Vec<&str> = profile
            .lines()
            .filter_map(|line| line.strip_prefix("pattern = '")?.strip_suffix('\''))
            .collect();
        assert_eq!(patterns.len(), 29);
        let straight = patterns
            .iter()
            .filter(|p| StraightPattern::new(p, false).is_some())
            .count();
        assert_eq!(
            straight, 27,
            "all but REFUSED's optional group and REVERSAL rejected's `.* attempt=`"
        );
        let all: Vec<&str> = patterns.iter().copied().chain(MORE).collect();
        let checked = cross_check(&all, false);
        assert!(checked > 1000, "only {checked} matches were compared");
    }

    /// As console triggers use them: Unicode patterns read ASCII lines as the Unicode regex does.
    #[test]
    fn unicode_patterns_read_ascii_lines_as_the_unicode_regex_does() {
        let triggers = [
            r"\] TXN sent mti=0200 stan=\d{6}",
            r"\] (?P<tag>\w+) stan=(?P<stan>\d+)",
            r"\] CARD read name=(?P<name>.*)",
        ];
        let all: Vec<&str> = triggers.into_iter().chain(MORE).collect();
        let checked = cross_check(&all, true);
        assert!(checked > 300, "only {checked} matches were compared");
    }
}
