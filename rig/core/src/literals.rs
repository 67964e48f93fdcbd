//! The literals every match of a regex begins with: when a pattern has a few (`\] TXN sent`),
//! one Aho-Corasick pass over a console line says where it could match, and the regex engine
//! runs only there — most lines are turned away in tens of nanoseconds.

use regex_syntax::hir::literal::Extractor;

/// The literals every match of `pattern` begins with, parsed as the engine that runs it will
/// (`unicode`: classes such as `\d` span Unicode, not only ASCII). None when a match can begin
/// with nearly anything (`.*ERROR`, `\S+`), or the pattern does not parse.
pub(crate) fn prefixes(pattern: &str, unicode: bool) -> Option<Vec<Vec<u8>>> {
    let hir = regex_syntax::ParserBuilder::new()
        .unicode(unicode)
        .utf8(unicode)
        .build()
        .parse(pattern)
        .ok()?;
    let literals: Vec<Vec<u8>> = Extractor::new()
        .extract(&hir)
        .literals()?
        .iter()
        .map(|literal| literal.as_bytes().to_vec())
        .collect();
    let useful = !literals.is_empty() && literals.iter().all(|literal| !literal.is_empty());
    useful.then_some(literals)
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
}
