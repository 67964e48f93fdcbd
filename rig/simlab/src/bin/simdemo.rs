//! `simdemo`: a short run of the simulated lab — a sale, then a sale whose reply is lost and the
//! reversal that follows — printing what happened and writing the console log, the wire journal
//! and the ledger under `--results`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use posrig_simlab::{Lab, LabOptions, SALE_ENDINGS};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(20);

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let results = match (args.next().as_deref(), args.next()) {
        (Some("--results"), Some(dir)) => PathBuf::from(dir),
        (None, _) => PathBuf::from("results"),
        _ => {
            eprintln!("usage: simdemo [--results DIR]");
            return ExitCode::FAILURE;
        }
    };
    match demo(&results) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("simdemo: {e}");
            ExitCode::FAILURE
        }
    }
}

fn demo(results: &Path) -> Result<bool, String> {
    println!("starting the simulated lab: acquirer host and posterm as processes, PTY console, NVM folder");
    let lab = Lab::start(LabOptions {
        terminal_settings: vec!["policy.response_timeout_ms=1000".into()],
        ..LabOptions::default()
    })?;
    println!(
        "  host listening on {}, terminal console on {}, signed on",
        lab.host.addr,
        lab.console_device()
    );
    lab.insert_card("unionpay-debit")?;

    println!("\n1. sale of 123.45 with nothing in the way");
    sale_and_tell(&lab, 12_345)?;

    println!("\n2. sale of 50.00 whose 0210 the host processes but never sends (P3)");
    lab.host
        .add_rule(json!({"kind": "sale", "times": 1, "action": "drop_reply"}))?;
    sale_and_tell(&lab, 5_000)?;

    let ledger = lab.host.ledger()?;
    let verdict = lab.verdict()?;
    println!("\nwire journal (host side):");
    let journal = lab.host.journal()?;
    let start = journal.first().map_or(0, |e| e.t_ns);
    for e in journal {
        if let Some(mti) = &e.mti {
            let rc = e.fields.get(&39).map_or(String::new(), |rc| format!(" 39={rc}"));
            let stan = e.stan.as_deref().unwrap_or("-");
            let t_ms = (e.t_ns - start) as f64 / 1e6;
            let direction = format!("{:?}", e.direction);
            println!(
                "  {t_ms:>9.3} ms  {direction:<3} {mti} stan {stan}{rc}  {}",
                e.note
            );
        }
    }
    println!("\nhost ledger:");
    for entry in ledger.entries.values() {
        println!(
            "  stan {} {:?} {} fen, answered {}, reversals applied {}, net {}",
            entry.key.stan,
            entry.kind,
            entry.amount,
            entry.response_code,
            entry.reversals_applied,
            ledger.net(&entry.key)
        );
    }
    if verdict.passed() {
        println!("oracle: every invariant of domain.md §5 holds; nothing unresolved");
    }
    for v in &verdict.violations {
        println!(
            "VIOLATION of invariant {} for stan {}: {}",
            v.invariant, v.stan, v.summary
        );
        for line in &v.evidence {
            println!("    {line}");
        }
    }
    for u in &verdict.unresolved {
        println!("UNRESOLVED stan {}: {}", u.stan, u.summary);
    }
    let dir = write_records(&lab, results)?;
    println!("\nrecords: {}", dir.display());
    Ok(verdict.passed())
}

fn sale_and_tell(lab: &Lab, amount: u64) -> Result<(), String> {
    let mark = lab.type_command("sale", &[("amount", amount.to_string())])?;
    let last = lab.wait_event(mark, WAIT, &SALE_ENDINGS)?;
    // Let the lines that follow the outcome (the receipt) arrive.
    let _ = lab.wait_event(mark, Duration::from_millis(300), &["receipt"]);
    for line in &lab.console.lines()[mark..] {
        println!("  terminal | {}", line.text);
    }
    println!("  → {}", last.name);
    Ok(())
}

fn write_records(lab: &Lab, results: &Path) -> Result<PathBuf, String> {
    let stamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let dir = results.join(format!("demo-{stamp}"));
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let write = |name: &str, text: String| {
        std::fs::File::create(dir.join(name))
            .and_then(|mut f| f.write_all(text.as_bytes()))
            .map_err(|e| format!("cannot write {name}: {e}"))
    };
    let console: String = lab
        .console
        .lines()
        .iter()
        .map(|l| format!("{},{}\n", l.t_ns, l.text))
        .collect();
    write("console.log", format!("t_ns,line\n{console}"))?;
    let mut journal = String::from("seq,t_ns,connection,direction,mti,stan,rc,note,raw\n");
    for e in lab.host.journal()? {
        journal.push_str(&format!(
            "{},{},{},{:?},{},{},{},\"{}\",{}\n",
            e.seq,
            e.t_ns,
            e.connection,
            e.direction,
            e.mti.unwrap_or_default(),
            e.stan.unwrap_or_default(),
            e.fields.get(&39).cloned().unwrap_or_default(),
            e.note.replace('"', "'"),
            e.raw
        ));
    }
    write("journal.csv", journal)?;
    let ledger = serde_json::to_string_pretty(&lab.host.ledger()?).map_err(|e| e.to_string())?;
    write("ledger.json", ledger)?;
    Ok(dir)
}
