//! The pin table of docs/hardware.md against the example rig (fixtures/rigs/pi-example.toml) and
//! the Raspberry Pi's header: every pin the configuration uses has a row with its BCM number and
//! configuration field, no row names a pin the configuration does not use, and every row's header
//! pin is the board's.

use std::path::Path;

use posrig_core::config::{CardFeederConfig, PowerConfig, RigConfig};
use posrig_core::gpio::Board;

const DOC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/hardware.md");
const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures/rigs/pi-example.toml");

/// The table's header row, cells trimmed.
const HEADER: [&str; 4] = ["BCM GPIO", "header pin", "use", "config field"];

/// One row of the pin table.
#[derive(Debug, Clone)]
struct Row {
    /// 1-based line in the document.
    line: usize,
    /// The row as written.
    text: String,
    bcm: u32,
    header_pin: u32,
    field: String,
}

impl Row {
    fn name(&self) -> String {
        format!("docs/hardware.md:{}: `{}`", self.line, self.text)
    }
}

/// A pin the configuration uses: its configuration field, its number, and what uses it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Use {
    field: String,
    pin: u32,
    what: String,
}

fn cells(line: &str) -> Vec<String> {
    let inner = line.trim().trim_start_matches('|').trim_end_matches('|');
    inner
        .split('|')
        .map(|cell| cell.trim().trim_matches('`').trim().to_string())
        .collect()
}

/// The rows of the one table headed `| BCM GPIO | header pin | use | config field |`.
fn parse_table(doc: &str) -> Result<Vec<Row>, Vec<String>> {
    let lines: Vec<&str> = doc.lines().collect();
    let starts: Vec<usize> = lines
        .iter()
        .enumerate()
        .filter(|(_, line)| line.trim_start().starts_with('|') && cells(line) == HEADER)
        .map(|(i, _)| i)
        .collect();
    let start = match starts.as_slice() {
        [start] => *start,
        [] => return Err(vec![format!("docs/hardware.md has no table headed {HEADER:?}")]),
        more => {
            let at: Vec<String> = more.iter().map(|i| (i + 1).to_string()).collect();
            return Err(vec![format!(
                "docs/hardware.md has {} tables headed {HEADER:?} (lines {}); keep one",
                more.len(),
                at.join(", ")
            )]);
        }
    };
    let separator = lines.get(start + 1).copied().unwrap_or_default();
    let dashes = cells(separator);
    if dashes.len() != 4
        || !dashes
            .iter()
            .all(|c| !c.is_empty() && c.chars().all(|ch| matches!(ch, '-' | ':')))
    {
        return Err(vec![format!(
            "docs/hardware.md:{}: the pin table's header must be followed by |---|---|---|---|, found {separator:?}",
            start + 2
        )]);
    }
    let mut rows = Vec::new();
    let mut problems = Vec::new();
    for (i, line) in lines.iter().enumerate().skip(start + 2) {
        if !line.trim_start().starts_with('|') {
            break;
        }
        let text = line.trim().to_string();
        let at = format!("docs/hardware.md:{}: `{text}`", i + 1);
        let row = cells(line);
        if row.len() != 4 {
            problems.push(format!("{at}: has {} cells, the table has 4", row.len()));
            continue;
        }
        let mut number = |cell: &str, what: &str| -> Option<u32> {
            cell.parse().ok().or_else(|| {
                problems.push(format!("{at}: {what} {cell:?} is not a number"));
                None
            })
        };
        let bcm = number(&row[0], "BCM GPIO");
        let header_pin = number(&row[1], "header pin");
        if row[2].is_empty() {
            problems.push(format!("{at}: the use is empty"));
        }
        if let (Some(bcm), Some(header_pin)) = (bcm, header_pin) {
            rows.push(Row {
                line: i + 1,
                text,
                bcm,
                header_pin,
                field: row[3].clone(),
            });
        }
    }
    if rows.is_empty() && problems.is_empty() {
        problems.push(format!(
            "docs/hardware.md:{}: the pin table has no rows",
            start + 1
        ));
    }
    if problems.is_empty() {
        Ok(rows)
    } else {
        Err(problems)
    }
}

/// Every pin `config` uses, with the configuration field that sets it. Cross-checked against the
/// configuration's own `pins()`, so a pin the configuration gains cannot be left out here.
fn used_pins(config: &RigConfig) -> Vec<Use> {
    let mut uses = Vec::new();
    let mut reported: Vec<(String, u32)> = Vec::new();
    let mut add = |field: &str, pin: u32| {
        uses.push(Use {
            field: field.to_string(),
            pin,
            what: String::new(),
        });
    };
    if let PowerConfig::Relay(relay) = &config.power {
        add("power.pin", relay.pin);
        if let Some(readback) = &relay.readback {
            add("power.readback.pin", readback.pin);
        }
        reported.extend(relay.pins());
    }
    match &config.card_feeder {
        CardFeederConfig::Solenoid(solenoid) => {
            add("card_feeder.push_pin", solenoid.push_pin);
            if let Some(pull) = solenoid.pull_pin {
                add("card_feeder.pull_pin", pull);
            }
            add("card_feeder.sensor.pin", solenoid.sensor.pin);
            reported.extend(solenoid.pins());
        }
        CardFeederConfig::Servo(servo) => {
            add("card_feeder.pin", servo.pin);
            if let Some(sensor) = &servo.sensor {
                add("card_feeder.sensor.pin", sensor.pin);
            }
            reported.extend(servo.pins());
        }
        CardFeederConfig::Sim {} => {}
    }
    for input in &config.inputs {
        add("inputs.pin", input.pin);
        reported.extend(input.pins());
    }
    // Name each use as the configuration's pins() does, and insist both list the same pins.
    let mut unmatched = reported.clone();
    for used in &mut uses {
        let found = unmatched.iter().position(|(_, pin)| *pin == used.pin);
        let Some(found) = found else {
            panic!(
                "{} = {} is not among the pins the configuration reports ({reported:?})",
                used.field, used.pin
            );
        };
        used.what = unmatched.remove(found).0;
    }
    assert!(
        unmatched.is_empty(),
        "the configuration reports pins this test does not map to a field: {unmatched:?}; add them to used_pins"
    );
    uses
}

/// What is wrong with `rows` for a rig that uses `uses` on `board`, one sentence per problem,
/// each naming the row (or the pin without a row).
fn problems(rows: &[Row], uses: &[Use], board: Board) -> Vec<String> {
    let mut problems = Vec::new();
    for (i, row) in rows.iter().enumerate() {
        if let Some(first) = rows[..i].iter().find(|r| r.bcm == row.bcm) {
            problems.push(format!(
                "{}: GPIO {} has a row already, at line {}",
                row.name(),
                row.bcm,
                first.line
            ));
            continue;
        }
        match uses.iter().find(|u| u.pin == row.bcm) {
            None => problems.push(format!(
                "{}: the example rig does not use GPIO {}; remove the row or fix its BCM number",
                row.name(),
                row.bcm
            )),
            Some(used) if used.field != row.field => problems.push(format!(
                "{}: GPIO {} is set by {} ({}) in the example rig, but the row names {:?}",
                row.name(),
                row.bcm,
                used.field,
                used.what,
                row.field
            )),
            Some(_) => {}
        }
        match board.header_pin(row.bcm) {
            Some(header) if header == row.header_pin => {}
            Some(header) => problems.push(format!(
                "{}: header pin {}, but GPIO {} is on header pin {header} of the {board}",
                row.name(),
                row.header_pin,
                row.bcm
            )),
            None => problems.push(format!(
                "{}: GPIO {} is not on the {board} header",
                row.name(),
                row.bcm
            )),
        }
    }
    for used in uses {
        if !rows.iter().any(|r| r.bcm == used.pin) {
            problems.push(format!(
                "docs/hardware.md pin table: no row for GPIO {} ({}, {}); add `| {} | {} | ... | {} |`",
                used.pin,
                used.field,
                used.what,
                used.pin,
                board
                    .header_pin(used.pin)
                    .map_or("?".to_string(), |h| h.to_string()),
                used.field
            ));
        }
    }
    problems
}

fn doc() -> String {
    std::fs::read_to_string(DOC).unwrap_or_else(|e| panic!("reading {DOC}: {e}"))
}

fn example() -> RigConfig {
    RigConfig::load(Path::new(EXAMPLE)).unwrap_or_else(|e| panic!("loading {EXAMPLE}: {e}"))
}

fn rows_of(doc: &str) -> Vec<Row> {
    parse_table(doc).unwrap_or_else(|problems| panic!("{}", problems.join("\n")))
}

/// The example's board; the guide's header pins are the Pi 4's (the same on every 40-pin Pi).
fn board_of(config: &RigConfig) -> Board {
    assert_eq!(
        config.board,
        Some(Board::Pi4),
        "the example rig's board changed; check the guide's header pins against it"
    );
    Board::Pi4
}

#[test]
fn the_pin_table_matches_the_example_rig_and_the_pi_header() {
    let config = example();
    let board = board_of(&config);
    let uses = used_pins(&config);
    assert!(
        uses.len() >= 6,
        "the example rig uses the relay, read-back, feeder and an input: {uses:?}"
    );
    let rows = rows_of(&doc());
    let found = problems(&rows, &uses, board);
    assert!(
        found.is_empty(),
        "the pin table of docs/hardware.md is wrong:\n{}",
        found.join("\n")
    );
    assert_eq!(rows.len(), uses.len(), "one row per pin the example rig uses");
}

/// Replaces the first line of `text` starting with `prefix` by `with` (`None` removes it).
fn edit(text: &str, prefix: &str, with: Option<&str>) -> String {
    let mut done = false;
    let lines: Vec<&str> = text
        .lines()
        .filter_map(|line| {
            if !done && line.starts_with(prefix) {
                done = true;
                return with;
            }
            Some(line)
        })
        .collect();
    assert!(done, "no line starts with {prefix:?}");
    lines.join("\n") + "\n"
}

fn problems_in(text: &str) -> Vec<String> {
    let config = example();
    let board = board_of(&config);
    problems(&rows_of(text), &used_pins(&config), board)
}

#[test]
fn a_wrong_header_pin_is_reported_with_its_row() {
    let text = edit(&doc(), "| 17 |", Some("| 17 | 12 | power relay | power.pin |"));
    let found = problems_in(&text);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].contains("`| 17 | 12 | power relay | power.pin |`"),
        "{}",
        found[0]
    );
    assert!(found[0].contains("header pin 11"), "{}", found[0]);
}

#[test]
fn a_wrong_field_or_pin_is_reported_with_its_row() {
    let text = edit(
        &doc(),
        "| 23 |",
        Some("| 23 | 16 | card-present sensor | card_feeder.pin |"),
    );
    let found = problems_in(&text);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].contains("| 23 | 16 |") && found[0].contains("card_feeder.sensor.pin"),
        "{}",
        found[0]
    );

    let text = edit(
        &doc(),
        "| 5 |",
        Some("| 6 | 31 | input printer_busy | inputs.pin |"),
    );
    let found = problems_in(&text);
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(
        found
            .iter()
            .any(|p| p.contains("| 6 | 31 |") && p.contains("does not use GPIO 6")),
        "{found:?}"
    );
    assert!(
        found
            .iter()
            .any(|p| p.contains("no row for GPIO 5") && p.contains("inputs.pin")),
        "{found:?}"
    );
}

#[test]
fn a_missing_or_extra_row_is_reported() {
    let text = edit(&doc(), "| 24 |", None);
    let found = problems_in(&text);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].contains("no row for GPIO 24") && found[0].contains("card_feeder.pull_pin"),
        "{}",
        found[0]
    );

    let text = edit(
        &doc(),
        "| 5 |",
        Some("| 5 | 29 | input printer_busy | inputs.pin |\n| 26 | 37 | spare | inputs.pin |"),
    );
    let found = problems_in(&text);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].contains("| 26 | 37 |") && found[0].contains("does not use GPIO 26"),
        "{}",
        found[0]
    );

    let text = edit(
        &doc(),
        "| 5 |",
        Some("| 5 | 29 | input printer_busy | inputs.pin |\n| 5 | 29 | again | inputs.pin |"),
    );
    let found = problems_in(&text);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].contains("GPIO 5 has a row already"), "{}", found[0]);
}

#[test]
fn a_table_that_cannot_be_read_is_refused() {
    let missing = parse_table("# no table here\n").unwrap_err();
    assert!(missing[0].contains("no table headed"), "{missing:?}");

    let text = edit(
        &doc(),
        "| 22 |",
        Some("| twenty-two | 15 | push solenoid | card_feeder.push_pin |"),
    );
    let bad = parse_table(&text).unwrap_err();
    assert!(
        bad.iter()
            .any(|p| p.contains("twenty-two") && p.contains("not a number")),
        "{bad:?}"
    );

    let text = edit(&doc(), "| 22 |", Some("| 22 | 15 | card_feeder.push_pin |"));
    let short = parse_table(&text).unwrap_err();
    assert!(
        short
            .iter()
            .any(|p| p.contains("| 22 | 15 |") && p.contains("3 cells")),
        "{short:?}"
    );

    let twice = format!("{}\n{}", doc(), doc());
    let two = parse_table(&twice).unwrap_err();
    assert!(two[0].contains("2 tables"), "{two:?}");
}
