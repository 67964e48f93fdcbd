//! Packet loss, blackhole and connection resets on the terminal's interface, through an nftables
//! table the rig owns.
//!
//! # The table
//!
//! Each rig owns one table, `inet posrig_<rig>`, named after the rig as it is (nft takes dashes in
//! a name, so `bench-3` and `bench_3` own tables of their own).
//! Its base chains hook input, output and forward, and send the terminal's traffic (packets
//! entering by, or leaving by, the configured interface: `iifname` / `oifname`) to a regular
//! chain `impair` holding the rules in force. Nothing else on the machine is matched, and no
//! other table is touched. Every change is one `nft -f -` transaction that deletes and rebuilds
//! the table, so the rules in force are replaced atomically, and a change nft refuses leaves the
//! previous rules in force. With nothing in force the table does not exist.
//!
//! * Loss with probability p: `numgen random mod 1000000 < p·10⁶ drop`. Each packet is judged
//!   once, so a request and its answer are each lost with probability p.
//! * Blackhole: `drop` (connections stay open; TCP retransmits into the void).
//! * Delay: refused. nftables cannot hold packets back and this kernel has no `tc netem`; the
//!   proxy impairment delays messages.
//!
//! # Resetting connections
//!
//! nftables cannot reach into sockets, so [`NetworkImpairment::reset_connections`] works through
//! conntrack marks: each reset picks a new mark; the table then marks every TCP connection that
//! starts afterwards (by its SYN) with that mark, and answers every packet of any other TCP
//! connection on the interface with `reject with tcp reset`. A connection opened before the
//! reset is therefore reset in each direction as soon as that side sends a packet (data, an
//! acknowledgement or a keep-alive): the side that sent gets the RST, and the peer gets one on
//! its own next packet. A connection that stays idle on both sides is reset when it next speaks.
//! New connections are untouched. This holds until [`NetworkImpairment::clear`], which removes
//! the whole table; [`NetworkImpairment::apply`] keeps it. While it holds, the terminal's TCP
//! connections carry a conntrack mark set by the rig.
//!
//! # Why the `nft` program
//!
//! The rules go to the kernel through `nft -f -` (the script on standard input, its exit status
//! and standard error checked, errors quoting nft's own message with the offending line). The
//! Rust alternatives are worse for this: the `nftables` crate itself runs `nft`, and the netlink
//! crates (`rustables`, `nftnl`) either wrap the C libraries libnftnl and libmnl or are young and
//! change their API often. `nft` is what a lab engineer uses to look at the rules
//! (`nft list table inet posrig_<rig>`), and it makes every script one atomic transaction.
//!
//! # Left-overs
//!
//! A rig killed by SIGKILL leaves its table in force. [`NftablesImpairment::new`] deletes any
//! table of its name first, and dropping the impairment deletes its table.
//!
//! # Privilege
//!
//! Changing nftables needs `CAP_NET_ADMIN` (run the rig as root), and the machine needs the
//! `nftables` package (`apt-get install nftables`).

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::capability::{Impairment, NetworkImpairment};
use crate::error::{Result, RigError};
use crate::linux::namespace::{namespace_path, run_inside};
use crate::linux::netlink_link::validate_interface_name;

/// The longest rig name a table name is made from.
pub const MAX_RIG_NAME_LEN: usize = 64;
/// Loss probabilities are rounded to this many steps.
const LOSS_STEPS: u32 = 1_000_000;
/// What the error says when asked to delay.
const DELAY_REFUSAL: &str =
    "delay needs the proxy impairment (nftables cannot delay packets; no tc netem on this kernel)";

/// Which interface an [`NftablesImpairment`] degrades (the `[impairment]` table of a rig using the
/// `nftables` backend).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NftablesConfig {
    /// The interface the terminal's traffic passes through, e.g. `eth1`; only packets entering or
    /// leaving by it are impaired.
    pub interface: String,
    /// The network namespace whose nftables to use: a name from `ip netns list`, or the path of a
    /// namespace file. The rig's own namespace when absent.
    #[serde(default)]
    pub namespace: Option<String>,
}

/// What the table holds.
#[derive(Debug, Clone, Default)]
struct Rules {
    /// The impairment in force (never with a delay).
    impairment: Impairment,
    /// The conntrack mark of connections opened since the last reset, if there was one.
    reset_mark: Option<u32>,
}

/// Loss and blackhole on the terminal's interface through the nftables table `inet posrig_<rig>`.
#[derive(Debug)]
pub struct NftablesImpairment {
    table: String,
    interface: String,
    namespace: Option<PathBuf>,
    capability: String,
    rules: Mutex<Rules>,
    /// The mark the next reset uses.
    next_mark: Mutex<u32>,
}

impl NftablesImpairment {
    /// Takes charge of the table `inet posrig_<rig_name>` for `config.interface`, deleting any
    /// table of that name a predecessor left behind. The rig name is 1 to [`MAX_RIG_NAME_LEN`]
    /// ASCII letters, digits, `-` or `_`.
    pub fn new(rig_name: &str, config: &NftablesConfig) -> Result<NftablesImpairment> {
        let table = table_name(rig_name)
            .map_err(|reason| RigError::actuator("network impairment (nftables)", "start", reason))?;
        let capability = format!("network impairment (nftables {table} on {})", config.interface);
        validate_interface_name(&config.interface)
            .map_err(|reason| RigError::actuator(&capability, "start", reason))?;
        let namespace = config.namespace.as_deref().map(namespace_path);
        let removal = script(&table, &config.interface, &Rules::default());
        run_inside(namespace.as_deref(), move || run_nft(&removal)).map_err(|reason| {
            RigError::actuator(
                &capability,
                "start",
                format!("removing a left-over table: {reason}"),
            )
        })?;
        Ok(NftablesImpairment {
            table,
            interface: config.interface.clone(),
            namespace,
            capability,
            rules: Mutex::new(Rules::default()),
            next_mark: Mutex::new(first_mark()),
        })
    }

    /// The table's name, `posrig_<rig>` (in the `inet` family).
    pub fn table(&self) -> &str {
        &self.table
    }

    /// The interface whose traffic is impaired.
    pub fn interface(&self) -> &str {
        &self.interface
    }

    fn failure(&self, action: &str, reason: impl std::fmt::Display) -> RigError {
        RigError::actuator(&self.capability, action, reason)
    }

    /// Replaces the table's contents with `rules` in one transaction.
    fn install(&self, rules: &Rules) -> std::result::Result<(), String> {
        let script = script(&self.table, &self.interface, rules);
        run_inside(self.namespace.as_deref(), move || run_nft(&script))
    }
}

impl NetworkImpairment for NftablesImpairment {
    /// Replaces the impairment in force (keeping a reset in force). A delay, or a drop
    /// probability outside 0 to 1, is refused and changes nothing.
    fn apply(&self, impairment: &Impairment) -> Result<()> {
        if impairment.delay > Duration::ZERO {
            return Err(self.failure("apply impairment", DELAY_REFUSAL));
        }
        if !(0.0..=1.0).contains(&impairment.drop) {
            return Err(self.failure(
                "apply impairment",
                format!("drop probability {} is not between 0 and 1", impairment.drop),
            ));
        }
        let mut rules = self.rules.lock().unwrap_or_else(PoisonError::into_inner);
        let wanted = Rules {
            impairment: impairment.clone(),
            reset_mark: rules.reset_mark,
        };
        self.install(&wanted)
            .map_err(|reason| self.failure("apply impairment", reason))?;
        *rules = wanted;
        Ok(())
    }

    /// Resets the terminal's TCP connections open now, each side at its next packet (see the
    /// module documentation); connections opened afterwards are untouched.
    fn reset_connections(&self) -> Result<()> {
        let mut rules = self.rules.lock().unwrap_or_else(PoisonError::into_inner);
        let mut next_mark = self.next_mark.lock().unwrap_or_else(PoisonError::into_inner);
        let wanted = Rules {
            impairment: rules.impairment.clone(),
            reset_mark: Some(*next_mark),
        };
        self.install(&wanted)
            .map_err(|reason| self.failure("reset connections", reason))?;
        *next_mark = following_mark(*next_mark);
        *rules = wanted;
        Ok(())
    }

    /// Removes every rule, a reset in force included: the table is deleted.
    fn clear(&self) -> Result<()> {
        let mut rules = self.rules.lock().unwrap_or_else(PoisonError::into_inner);
        self.install(&Rules::default())
            .map_err(|reason| self.failure("clear", reason))?;
        *rules = Rules::default();
        Ok(())
    }
}

impl Drop for NftablesImpairment {
    /// Deletes the table. Never panics: a failure is reported on stderr, and the next
    /// [`NftablesImpairment::new`] for the same rig deletes the table.
    fn drop(&mut self) {
        if let Err(reason) = self.install(&Rules::default()) {
            let _ = writeln!(
                std::io::stderr(),
                "posrig: {}; delete it with `nft delete table inet {}`",
                self.failure("remove", reason),
                self.table
            );
        }
    }
}

/// `posrig_<rig>`, or why the rig's name cannot make a table name.
fn table_name(rig_name: &str) -> std::result::Result<String, String> {
    let allowed = |character: char| character.is_ascii_alphanumeric() || character == '-' || character == '_';
    if rig_name.is_empty() || rig_name.len() > MAX_RIG_NAME_LEN || !rig_name.chars().all(allowed) {
        return Err(format!(
            "the rig name {rig_name:?} must be 1 to {MAX_RIG_NAME_LEN} ASCII letters, digits, '-' or \
             '_' (it names the nftables table posrig_<rig>)"
        ));
    }
    Ok(format!("posrig_{rig_name}"))
}

/// A mark no earlier run of the rig is likely to have used (marks of a killed predecessor may
/// still sit on connections), never 0 (the mark of connections nobody marked).
fn first_mark() -> u32 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.subsec_nanos() ^ elapsed.as_secs() as u32)
        .unwrap_or(1);
    nanos.max(1)
}

/// The mark after `mark`, skipping 0.
fn following_mark(mark: u32) -> u32 {
    mark.wrapping_add(1).max(1)
}

/// The nft script that replaces the table with one holding `rules` (or just deletes it when
/// `rules` hold nothing). `table X {}` before the delete makes the delete succeed whether or not
/// the table exists; nft runs the whole script as one transaction.
fn script(table: &str, interface: &str, rules: &Rules) -> String {
    let mut script = format!("table inet {table} {{}}\ndelete table inet {table}\n");
    let mut impair = Vec::new();
    if let Some(mark) = rules.reset_mark {
        impair.push(format!(
            "tcp flags & (syn | ack) == syn ct state new ct mark set {mark} comment \"connection opened since the last reset\""
        ));
        impair.push(format!(
            "tcp flags & rst == 0 ct mark != {mark} reject with tcp reset comment \"connection opened before the last reset\""
        ));
    }
    let impairment = &rules.impairment;
    let loss_steps = (impairment.drop * f64::from(LOSS_STEPS)).round() as u32;
    if impairment.blackhole {
        impair.push("counter drop comment \"blackhole\"".to_string());
    } else if loss_steps >= LOSS_STEPS {
        impair.push("counter drop comment \"loss 1\"".to_string());
    } else if loss_steps > 0 {
        impair.push(format!(
            "numgen random mod {LOSS_STEPS} < {loss_steps} counter drop comment \"loss {}\"",
            impairment.drop
        ));
    }
    if impair.is_empty() {
        return script;
    }
    let base_chain = |hook: &str, matches: &[&str]| {
        let jumps: String = matches
            .iter()
            .map(|direction| format!("\t\t{direction} \"{interface}\" jump impair\n"))
            .collect();
        format!(
            "\tchain {hook} {{\n\t\ttype filter hook {hook} priority filter; policy accept;\n{jumps}\t}}\n"
        )
    };
    script.push_str(&format!("table inet {table} {{\n\tchain impair {{\n"));
    for rule in impair {
        script.push_str(&format!("\t\t{rule}\n"));
    }
    script.push_str("\t}\n");
    script.push_str(&base_chain("input", &["iifname"]));
    script.push_str(&base_chain("output", &["oifname"]));
    script.push_str(&base_chain("forward", &["iifname", "oifname"]));
    script.push_str("}\n");
    script
}

/// Runs `nft -f -` with `script` on its standard input, in the calling thread's namespace.
fn run_nft(script: &str) -> std::result::Result<(), String> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|error| spawn_failure(&error))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(script.as_bytes())
            .map_err(|error| format!("could not pass the rules to nft: {error}"))?;
    }
    let output = child
        .wait_with_output()
        .map_err(|error| format!("could not wait for nft: {error}"))?;
    if output.status.success() {
        return Ok(());
    }
    let said = String::from_utf8_lossy(&output.stderr).trim().to_string();
    let hint = if said.contains("Operation not permitted") {
        "; changing nftables needs CAP_NET_ADMIN: run the rig as root"
    } else {
        ""
    };
    Err(format!("nft refused the rules ({}): {said}{hint}", output.status))
}

/// Why `nft` could not be started.
fn spawn_failure(error: &std::io::Error) -> String {
    if error.kind() == std::io::ErrorKind::NotFound {
        "nftables is not installed (apt-get install nftables)".to_string()
    } else {
        format!("could not run nft: {error}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(drop: f64, blackhole: bool, reset_mark: Option<u32>) -> Rules {
        Rules {
            impairment: Impairment {
                drop,
                blackhole,
                ..Impairment::default()
            },
            reset_mark,
        }
    }

    #[test]
    fn rig_names_make_table_names() {
        assert_eq!(table_name("bench-3").as_deref(), Ok("posrig_bench-3"));
        assert_ne!(
            table_name("bench-3"),
            table_name("bench_3"),
            "two rigs, two tables"
        );
        for bad in ["", "a b", "rig;flush ruleset", &"x".repeat(MAX_RIG_NAME_LEN + 1)] {
            let problem = table_name(bad).expect_err("refused");
            assert!(problem.contains("posrig_<rig>"), "{bad}: {problem}");
        }
    }

    #[test]
    fn nothing_in_force_only_deletes_the_table() {
        let script = script("posrig_r", "eth1", &Rules::default());
        assert_eq!(script, "table inet posrig_r {}\ndelete table inet posrig_r\n");
    }

    #[test]
    fn loss_is_a_random_drop_on_every_hook_of_the_interface_only() {
        let script = script("posrig_r", "eth1", &rules(0.25, false, None));
        assert!(
            script.contains("numgen random mod 1000000 < 250000 counter drop"),
            "{script}"
        );
        for hook in ["input", "output", "forward"] {
            assert!(
                script.contains(&format!("type filter hook {hook} priority filter")),
                "{script}"
            );
        }
        assert_eq!(
            script.matches("iifname \"eth1\" jump impair").count(),
            2,
            "{script}"
        );
        assert_eq!(
            script.matches("oifname \"eth1\" jump impair").count(),
            2,
            "{script}"
        );
        assert!(!script.contains("ct mark"), "{script}");
    }

    #[test]
    fn certain_loss_and_blackhole_drop_everything() {
        for rules in [
            rules(1.0, false, None),
            rules(0.0, true, None),
            rules(0.3, true, None),
        ] {
            let script = script("posrig_r", "eth1", &rules);
            assert!(script.contains("\t\tcounter drop comment"), "{script}");
            assert!(!script.contains("numgen"), "{script}");
        }
    }

    #[test]
    fn a_reset_marks_new_connections_and_rejects_the_others() {
        let script = script("posrig_r", "eth1", &rules(0.0, false, Some(7)));
        assert!(script.contains("ct mark set 7"), "{script}");
        assert!(script.contains("ct mark != 7 reject with tcp reset"), "{script}");
        assert!(!script.contains("drop"), "{script}");
    }

    #[test]
    fn marks_skip_zero() {
        assert_eq!(following_mark(u32::MAX), 1);
        assert_eq!(following_mark(41), 42);
        assert_ne!(first_mark(), 0);
    }

    #[test]
    fn config_refuses_unknown_fields() {
        let config: NftablesConfig =
            toml::from_str("interface = \"eth1\"\nnamespace = \"lab\"").expect("parses");
        assert_eq!(config.interface, "eth1");
        assert_eq!(config.namespace.as_deref(), Some("lab"));
        let error =
            toml::from_str::<NftablesConfig>("interface = \"eth1\"\ndelay = 3").expect_err("unknown field");
        assert!(error.to_string().contains("delay"), "{error}");
    }

    #[test]
    fn a_missing_nft_says_how_to_install_it() {
        let missing = std::io::Error::from(std::io::ErrorKind::NotFound);
        assert_eq!(
            spawn_failure(&missing),
            "nftables is not installed (apt-get install nftables)"
        );
    }
}
