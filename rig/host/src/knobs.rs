//! Fault knobs: rules that change how the host treats a message type or a STAN (domain.md §6).

use serde::{Deserialize, Serialize};

/// The kinds of request the host serves, by MTI and processing code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// 0800 sign-on.
    Signon,
    /// 0200 with processing code 000000.
    Sale,
    /// 0200 with processing code 200000.
    Void,
    /// 0400.
    Reversal,
    /// 0500.
    Settlement,
}

impl Kind {
    /// Classifies a request by MTI and processing code; `None` for anything the host does not serve.
    pub fn of(mti: &str, processing_code: Option<&str>) -> Option<Kind> {
        match (mti, processing_code) {
            ("0800", _) => Some(Kind::Signon),
            ("0200", Some("200000")) => Some(Kind::Void),
            ("0200", _) => Some(Kind::Sale),
            ("0400", _) => Some(Kind::Reversal),
            ("0500", _) => Some(Kind::Settlement),
            _ => None,
        }
    }
}

/// A reply field a rule can alter so that the terminal must reject the reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlteredField {
    /// Field 11, the STAN.
    Stan,
    /// Field 41, the terminal id.
    Tid,
    /// Field 4, the amount.
    Amount,
}

/// What a rule does to a request it matches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// Process the request, answering with this response code (a decline, or 00/12/25/96 to a 0400).
    Respond {
        /// The response code, field 39.
        code: String,
    },
    /// Process the request but never send the reply.
    DropReply,
    /// Drop the request before processing it: no ledger effect, no reply.
    DropRequest,
    /// Process the request and send the reply after a delay.
    Delay {
        /// Milliseconds between receipt and reply.
        ms: u64,
    },
    /// Process the request and send the reply twice.
    Duplicate,
    /// Process the request and send the reply with a wrong MAC.
    CorruptMac,
    /// Process the request and send the reply with a field altered.
    Alter {
        /// The field to alter.
        field: AlteredField,
    },
    /// Process the request, send the first `after_bytes` bytes of the reply, then close the connection.
    Close {
        /// Bytes of the reply written before closing.
        after_bytes: usize,
    },
    /// Process the request, send the first `after_bytes` bytes of the reply, then reset the
    /// connection (RST).
    Reset {
        /// Bytes of the reply written before resetting.
        after_bytes: usize,
    },
}

/// One knob: which requests it matches, how often, and what it does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    /// The kind of request it applies to; all kinds when absent.
    #[serde(default)]
    pub kind: Option<Kind>,
    /// The STAN (field 11) it applies to; every STAN when absent.
    #[serde(default)]
    pub stan: Option<String>,
    /// How many matching requests it applies to before it retires; forever when absent.
    #[serde(default)]
    pub times: Option<u32>,
    /// What it does.
    #[serde(flatten)]
    pub action: Action,
}

impl Rule {
    /// Checks the rule can do what it says; the error names the value at fault.
    pub fn validate(&self) -> Result<(), String> {
        match &self.action {
            Action::Respond { code }
                if code.len() != 2 || !code.chars().all(|c| c.is_ascii_alphanumeric()) =>
            {
                Err(format!(
                    "respond: code {code:?} is not a two-character response code"
                ))
            }
            Action::Delay { ms } if *ms > 600_000 => Err(format!("delay: {ms} ms is more than ten minutes")),
            _ => match &self.stan {
                Some(stan) if stan.len() != 6 || !stan.chars().all(|c| c.is_ascii_digit()) => {
                    Err(format!("stan {stan:?} is not six digits"))
                }
                _ => Ok(()),
            },
        }
    }

    fn matches(&self, kind: Kind, stan: Option<&str>) -> bool {
        self.kind.is_none_or(|k| k == kind)
            && self.stan.as_deref().is_none_or(|s| Some(s) == stan)
            && self.times != Some(0)
    }
}

/// The rules in force, first match wins.
#[derive(Debug, Default, Clone)]
pub struct Rulebook {
    rules: Vec<Rule>,
}

impl Rulebook {
    /// Adds a rule after the existing ones, if it is valid.
    pub fn add(&mut self, rule: Rule) -> Result<(), String> {
        rule.validate()?;
        self.rules.push(rule);
        Ok(())
    }

    /// Removes every rule.
    pub fn clear(&mut self) {
        self.rules.clear();
    }

    /// The rules in force.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The action for a request, counting one use of the rule that matched.
    pub fn take(&mut self, kind: Kind, stan: Option<&str>) -> Option<Action> {
        let rule = self.rules.iter_mut().find(|r| r.matches(kind, stan))?;
        if let Some(times) = rule.times.as_mut() {
            *times -= 1;
        }
        Some(rule.action.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_match_by_kind_and_stan_and_retire_after_their_count() {
        let mut book = Rulebook::default();
        book.add(Rule {
            kind: Some(Kind::Sale),
            stan: Some("000007".into()),
            times: Some(1),
            action: Action::DropReply,
        })
        .unwrap();
        book.add(Rule {
            kind: Some(Kind::Reversal),
            stan: None,
            times: None,
            action: Action::Respond { code: "96".into() },
        })
        .unwrap();
        assert_eq!(book.take(Kind::Sale, Some("000006")), None);
        assert_eq!(book.take(Kind::Sale, Some("000007")), Some(Action::DropReply));
        assert_eq!(book.take(Kind::Sale, Some("000007")), None);
        assert_eq!(
            book.take(Kind::Reversal, Some("000001")),
            Some(Action::Respond { code: "96".into() })
        );
    }

    #[test]
    fn rules_read_from_json_as_the_control_port_sends_them() {
        let rule: Rule = serde_json::from_str(r#"{"kind":"sale","action":"delay","ms":50}"#).unwrap();
        assert_eq!(rule.action, Action::Delay { ms: 50 });
        assert!(serde_json::from_str::<Rule>(r#"{"kind":"sale","action":"explode"}"#).is_err());
        let bad: Rule = serde_json::from_str(r#"{"action":"respond","code":"X"}"#).unwrap();
        assert!(Rulebook::default().add(bad).unwrap_err().contains("\"X\""));
    }
}
