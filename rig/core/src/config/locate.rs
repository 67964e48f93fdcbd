//! Where in a rig configuration's text a table or a key is written, so every error can name the
//! line and the field.

use std::path::Path;

use crate::error::RigError;

/// The tables (`[power]`, `[card_feeder.sensor]`, `[[inputs]]`) in force at each line.
pub(super) struct Layout<'a> {
    text: &'a str,
    /// (byte offset where the line starts, the line, its table).
    lines: Vec<(usize, &'a str, String)>,
}

impl<'a> Layout<'a> {
    /// Reads the table headers of `text`.
    pub(super) fn new(text: &'a str) -> Layout<'a> {
        let mut table = String::new();
        let mut offset = 0;
        let mut lines = Vec::new();
        for line in text.split_inclusive('\n') {
            let trimmed = line.trim();
            if trimmed.starts_with('[') {
                table = trimmed
                    .split('#')
                    .next()
                    .unwrap_or_default()
                    .trim()
                    .trim_matches(['[', ']'])
                    .trim()
                    .to_string();
            }
            lines.push((offset, line.trim_end_matches(['\n', '\r']), table.clone()));
            offset += line.len();
        }
        Layout { text, lines }
    }

    /// The offset of `key = …` in table `table` (or a table below it), or of the table's header.
    pub(super) fn key(&self, table: &str, key: &str) -> Option<usize> {
        self.find(table, |line| assigns(line, key).is_some())
            .or_else(|| self.header(table))
    }

    /// The offset of the last line in `table` (or below it) assigning a key that ends in `pin`
    /// the number `pin`: of two users of one pin, the one written second.
    pub(super) fn pin(&self, table: &str, pin: u32) -> Option<usize> {
        self.find_last(table, |line| {
            line.split([',', '{'])
                .filter_map(|part| part.split_once('='))
                .any(|(k, v)| {
                    k.trim().ends_with("pin") && v.trim().trim_end_matches('}').trim() == pin.to_string()
                })
        })
    }

    /// The table in force at byte `at`.
    pub(super) fn table_at(&self, at: usize) -> &str {
        self.lines
            .iter()
            .rev()
            .find(|(offset, ..)| *offset <= at)
            .map_or("", |(_, _, table)| table.as_str())
    }

    /// The offset of table `table`'s header.
    pub(super) fn header(&self, table: &str) -> Option<usize> {
        self.lines
            .iter()
            .find(|(_, line, t)| t == table && line.trim().starts_with('['))
            .map(|(offset, ..)| *offset)
    }

    fn find(&self, table: &str, wanted: impl Fn(&str) -> bool) -> Option<usize> {
        self.matching(table, wanted).next()
    }

    fn find_last(&self, table: &str, wanted: impl Fn(&str) -> bool) -> Option<usize> {
        self.matching(table, wanted).last()
    }

    /// The offsets of the lines in `table` (or below it) that `wanted` accepts, comments aside.
    fn matching<'s>(
        &'s self,
        table: &'s str,
        wanted: impl Fn(&str) -> bool + 's,
    ) -> impl Iterator<Item = usize> + 's {
        let inside =
            move |t: &str| t == table || t.strip_prefix(table).is_some_and(|rest| rest.starts_with('.'));
        self.lines
            .iter()
            .filter(move |(_, line, t)| inside(t) && wanted(line.split('#').next().unwrap_or_default()))
            .map(|(offset, ..)| *offset)
    }

    /// A configuration error at byte `at`: the line, and the dotted key written there.
    pub(super) fn error(&self, path: &Path, at: usize, problem: impl Into<String>) -> RigError {
        let index = self
            .lines
            .iter()
            .rposition(|(offset, ..)| *offset <= at.min(self.text.len()))
            .unwrap_or(0);
        let (line, table) = self
            .lines
            .get(index)
            .map_or(("", ""), |(_, line, table)| (*line, table.as_str()));
        let key = line
            .split('#')
            .next()
            .and_then(|l| l.split_once('='))
            .map(|(k, _)| k.trim().to_string())
            .filter(|k| !k.starts_with('['));
        let field = match (table.is_empty(), key) {
            (false, Some(key)) => format!("{table}.{key}"),
            (false, None) => table.to_string(),
            (true, Some(key)) => key,
            (true, None) => "(top level)".into(),
        };
        RigError::Config {
            path: path.to_path_buf(),
            line: index + 1,
            field,
            problem: problem.into(),
        }
    }
}

/// The value text when `line` assigns `key` (at its start or inside an inline table).
fn assigns<'l>(line: &'l str, key: &str) -> Option<&'l str> {
    line.split([',', '{'])
        .filter_map(|part| part.split_once('='))
        .find(|(k, _)| k.trim() == key)
        .map(|(_, v)| v)
}

/// The field a serde message names (``unknown field `x` ``, ``missing field `x` ``), if any.
pub(super) fn named_field(message: &str) -> Option<&str> {
    let rest = message.split_once("field `")?.1;
    rest.split_once('`').map(|(field, _)| field)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "[rig]\nname = \"a\"\n\n[power]\nbackend = \"relay\"\npin = 17\nreadback = { pin = 27, timeout_ms = 50 }\n\n[card_feeder.sensor]\npin = 23 # the sensor\n";

    #[test]
    fn keys_and_pins_are_found_in_their_tables() {
        let layout = Layout::new(TEXT);
        let line_of = |at: Option<usize>| TEXT[..at.unwrap()].matches('\n').count() + 1;
        assert_eq!(line_of(layout.key("power", "pin")), 6);
        assert_eq!(line_of(layout.pin("power", 27)), 7);
        assert_eq!(line_of(layout.pin("power", 17)), 6);
        assert_eq!(line_of(layout.pin("card_feeder", 23)), 10);
        assert_eq!(
            line_of(layout.key("power", "settle_ms")),
            4,
            "an absent key points at its table"
        );
        assert!(layout.pin("power", 23).is_none());
    }

    #[test]
    fn an_error_names_the_line_and_the_dotted_field() {
        let layout = Layout::new(TEXT);
        let error = layout.error(Path::new("r.toml"), layout.key("power", "pin").unwrap(), "bad");
        assert_eq!(error.to_string(), "r.toml:6: power.pin: bad");
        assert_eq!(named_field("unknown field `pinn`, expected one of"), Some("pinn"));
    }
}
