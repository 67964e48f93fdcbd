//! The literals every match of a regex begins with: when a pattern has a few (`\] TXN sent`),
//! one pass of a [`LiteralFinder`] over a console line says where it could match, and the regex
//! engine runs only there — most lines are turned away in tens of nanoseconds.

use std::ops::Range;

use regex_syntax::hir::literal::Extractor;
use regex_syntax::hir::Hir;

/// The literals every match of `pattern` begins with, parsed as the engine that runs it will
/// (`unicode`: classes such as `\d` span Unicode, not only ASCII). None when a match can begin
/// with nearly anything (`.*ERROR`, `\S+`), or the pattern does not parse. Literals that share a
/// beginning are given as that beginning alone (`\] TXN mti=\d{4}` has the one literal
/// `] TXN mti=`, not ten thousand): the literal says where to look, the pattern decides.
pub(crate) fn prefixes(pattern: &str, unicode: bool) -> Option<Vec<Vec<u8>>> {
    let hir = parse(pattern, unicode)?;
    let literals: Vec<Vec<u8>> = Extractor::new()
        .extract(&hir)
        .literals()?
        .iter()
        .map(|literal| literal.as_bytes().to_vec())
        .collect();
    let useful = !literals.is_empty() && literals.iter().all(|literal| !literal.is_empty());
    if !useful {
        return None;
    }
    let shared = literals[1..].iter().fold(literals[0].len(), |shared, literal| {
        shared.min(
            literal
                .iter()
                .zip(&literals[0])
                .take_while(|(a, b)| a == b)
                .count(),
        )
    });
    Some(match shared {
        0 => literals,
        shared => vec![literals[0][..shared].to_vec()],
    })
}

/// `pattern` parsed as the engine that runs it will: Unicode-aware, or byte-wise (classes of
/// bytes, matching any bytes, `unicode` false). None when it does not parse.
pub(crate) fn parse(pattern: &str, unicode: bool) -> Option<Hir> {
    regex_syntax::ParserBuilder::new()
        .unicode(unicode)
        .utf8(unicode)
        .build()
        .parse(pattern)
        .ok()
}

/// Finds where the first of a set of literals begins in a line. Console patterns' literals are
/// few and share long beginnings (`] TXN sent`, `] TXN reply`); the finder jumps from one place
/// where a literal could begin to the next (memchr on their first bytes), looks up the literals
/// that begin with the bytes found there (a sorted table keyed by as many leading bytes as the
/// shortest literal has, up to eight) and compares those few in full. On a console line this takes
/// a fraction of an Aho-Corasick automaton's time, whose per-search cost dominates on short lines.
#[derive(Debug, Clone)]
pub(crate) struct LiteralFinder {
    /// The bytes a literal begins with.
    firsts: FirstBytes,
    /// How many leading bytes make a key: every literal has at least this many.
    key_len: usize,
    /// The distinct keys, sorted.
    keys: Vec<u64>,
    /// For each key, the range of `members` that lists its literals.
    buckets: Vec<Range<usize>>,
    /// Literal indices, grouped by key, each group in the order the literals were given.
    members: Vec<usize>,
    literals: Vec<Box<[u8]>>,
}

/// The bytes literals begin with, searched the fastest way their number allows.
#[derive(Debug, Clone)]
enum FirstBytes {
    One(u8),
    Two(u8, u8),
    Three(u8, u8, u8),
    Many(Box<[bool; 256]>),
}

impl FirstBytes {
    /// The first place at or after `from` in `haystack` holding one of the bytes.
    fn next(&self, haystack: &[u8], from: usize) -> Option<usize> {
        let rest = &haystack[from..];
        let found = match self {
            FirstBytes::One(a) => memchr::memchr(*a, rest),
            FirstBytes::Two(a, b) => memchr::memchr2(*a, *b, rest),
            FirstBytes::Three(a, b, c) => memchr::memchr3(*a, *b, *c, rest),
            FirstBytes::Many(set) => rest.iter().position(|&byte| set[usize::from(byte)]),
        };
        found.map(|at| from + at)
    }
}

impl LiteralFinder {
    /// A finder of `literals`; None when there are none or one is empty (it would match
    /// everywhere).
    pub(crate) fn new<L: AsRef<[u8]>>(literals: &[L]) -> Option<LiteralFinder> {
        let literals: Vec<Box<[u8]>> = literals.iter().map(|l| Box::from(l.as_ref())).collect();
        let key_len = literals.iter().map(|literal| literal.len()).min()?.min(8);
        if key_len == 0 {
            return None;
        }
        let mut firsts: Vec<u8> = literals.iter().map(|literal| literal[0]).collect();
        firsts.sort_unstable();
        firsts.dedup();
        let firsts = match firsts[..] {
            [a] => FirstBytes::One(a),
            [a, b] => FirstBytes::Two(a, b),
            [a, b, c] => FirstBytes::Three(a, b, c),
            _ => {
                let mut set = Box::new([false; 256]);
                firsts.iter().for_each(|&byte| set[usize::from(byte)] = true);
                FirstBytes::Many(set)
            }
        };
        // Sorting by key keeps the given order within a key (the sort is stable).
        let mut by_key: Vec<(u64, usize)> = literals
            .iter()
            .enumerate()
            .map(|(index, literal)| (key(literal, key_len), index))
            .collect();
        by_key.sort_by_key(|(key, _)| *key);
        let (mut keys, mut buckets) = (Vec::<u64>::new(), Vec::<Range<usize>>::new());
        for (at, (key, _)) in by_key.iter().enumerate() {
            match (keys.last(), buckets.last_mut()) {
                (Some(last), Some(bucket)) if last == key => bucket.end = at + 1,
                _ => {
                    keys.push(*key);
                    buckets.push(at..at + 1);
                }
            }
        }
        Some(LiteralFinder {
            firsts,
            key_len,
            keys,
            buckets,
            members: by_key.into_iter().map(|(_, index)| index).collect(),
            literals,
        })
    }

    /// The leftmost place in `haystack` where a literal begins and, of the literals beginning
    /// there, the index of the first given.
    pub(crate) fn find(&self, haystack: &[u8]) -> Option<(usize, usize)> {
        self.find_from(haystack, 0)
    }

    /// As [`LiteralFinder::find`], from `from` on.
    pub(crate) fn find_from(&self, haystack: &[u8], mut from: usize) -> Option<(usize, usize)> {
        while let Some(at) = self.firsts.next(haystack, from) {
            if at + self.key_len > haystack.len() {
                // Every literal is at least key_len long: none fits from here on.
                return None;
            }
            if let Ok(bucket) = self.keys.binary_search(&key(&haystack[at..], self.key_len)) {
                let found = self.members[self.buckets[bucket].clone()]
                    .iter()
                    .find(|&&index| begins_with(&haystack[at..], &self.literals[index]));
                if let Some(&index) = found {
                    return Some((at, index));
                }
            }
            from = at + 1;
        }
        None
    }
}

/// True when `haystack` begins with `prefix`. Compares eight bytes at a time inline: on the short
/// literals of a console line, a call to the C library's `memcmp` costs more than the comparison.
pub(crate) fn begins_with(haystack: &[u8], prefix: &[u8]) -> bool {
    let len = prefix.len();
    if haystack.len() < len {
        return false;
    }
    if len < 8 {
        return haystack.iter().zip(prefix).all(|(a, b)| a == b);
    }
    let word =
        |bytes: &[u8], at: usize| u64::from_ne_bytes(bytes[at..at + 8].try_into().expect("eight bytes"));
    // Whole words, then the last eight bytes (which may overlap the words before them).
    (0..len / 8).all(|at| word(haystack, at * 8) == word(prefix, at * 8))
        && word(haystack, len - 8) == word(prefix, len - 8)
}

/// The first `len` (1 to 8) bytes of `bytes` as a number: one load and a mask where eight bytes
/// are there (a copy of `len` bytes would call `memcpy`), else byte by byte.
fn key(bytes: &[u8], len: usize) -> u64 {
    let mask = u64::MAX << (64 - 8 * len);
    match bytes.first_chunk::<8>() {
        Some(word) => u64::from_be_bytes(*word) & mask,
        None => bytes[..len]
            .iter()
            .enumerate()
            .fold(0, |key, (at, &byte)| key | u64::from(byte) << (56 - 8 * at)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pattern_that_begins_with_text_has_it_as_its_prefix() {
        assert_eq!(
            prefixes(r"\] TXN sent", false),
            Some(vec![b"] TXN sent".to_vec()])
        );
        assert_eq!(
            prefixes(r"\] TXN mti=\d{4}", false),
            Some(vec![b"] TXN mti=".to_vec()]),
            "literals that share a beginning are given as that beginning"
        );
        let digits = prefixes(r"\d+ bytes", false).unwrap();
        let firsts: std::collections::BTreeSet<u8> = digits.iter().map(|d| d[0]).collect();
        assert_eq!(firsts, (b'0'..=b'9').collect(), "{digits:?}");
    }

    #[test]
    fn a_pattern_that_can_begin_with_anything_has_none() {
        assert_eq!(prefixes(r".*ERROR", false), None);
        assert_eq!(prefixes(r"\S+ bytes", false), None);
        assert_eq!(prefixes(r"x?", false), None, "an empty match begins with nothing");
        assert_eq!(prefixes(r"(unclosed", false), None);
        // Unicode digits are too many to list: no prefilter rather than a wrong one.
        assert_eq!(prefixes(r"\d stan", true), None);
    }

    #[test]
    fn the_finder_gives_the_leftmost_literal_and_there_the_first_given() {
        let finder = LiteralFinder::new(&["] TXN sent", "] TXN", "] TXN sent mti=", "] BOOT "]).unwrap();
        assert_eq!(finder.find(b"[ 1.0] TXN sent mti=0200"), Some((5, 0)));
        assert_eq!(finder.find(b"[ 1.0] TXN reply"), Some((5, 1)));
        assert_eq!(
            finder.find(b"x] BOO] BOOT y"),
            Some((6, 3)),
            "a near miss is passed by"
        );
        assert_eq!(finder.find(b"[ 1.0] READY"), None);
        assert_eq!(finder.find(b"] TX"), None, "too short for any literal");
        assert!(
            LiteralFinder::new(&["a", ""]).is_none(),
            "an empty literal matches everywhere"
        );
        assert!(LiteralFinder::new::<&str>(&[]).is_none());
    }

    #[test]
    fn begins_with_compares_every_byte() {
        let text = b"] TXN sent mti=0200 stan=000001";
        for len in 0..=text.len() {
            assert!(begins_with(text, &text[..len]), "{len}");
            for at in 0..len {
                let mut other = text[..len].to_vec();
                other[at] ^= 1;
                assert!(!begins_with(text, &other), "a difference at {at} of {len}");
            }
        }
        assert!(
            !begins_with(b"] TX", b"] TXN"),
            "a haystack shorter than the prefix"
        );
    }

    #[test]
    fn the_finder_agrees_with_aho_corasick() {
        // Literals and haystacks over a small alphabet, so literals overlap, share beginnings
        // and differ in length; every number of distinct first bytes is exercised.
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move |below: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % below
        };
        let mut word = |max_len: u64, alphabet: &[u8]| -> Vec<u8> {
            (0..1 + next(max_len))
                .map(|_| alphabet[next(alphabet.len() as u64) as usize])
                .collect()
        };
        for round in 0..400 {
            let alphabet: &[u8] = [&b"ab"[..], b"abc", b"abcd", b"abcdefgh"][round % 4];
            let literals: Vec<Vec<u8>> = (0..1 + round % 7).map(|_| word(10, alphabet)).collect();
            let finder = LiteralFinder::new(&literals).unwrap();
            let reference = aho_corasick::AhoCorasick::builder()
                .match_kind(aho_corasick::MatchKind::LeftmostFirst)
                .build(&literals)
                .unwrap();
            for _ in 0..50 {
                let haystack = word(40, alphabet);
                let expected = reference
                    .find(&haystack)
                    .map(|found| (found.start(), found.pattern().as_usize()));
                assert_eq!(finder.find(&haystack), expected, "{literals:?} in {haystack:?}");
            }
        }
    }
}
