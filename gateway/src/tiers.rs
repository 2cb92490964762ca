//! Tiers: the limits each kind of client gets.
//!
//! Every client has two rate budgets, one for submitting queries
//! (`POST /api/query`) and one for reading (`GET /api/results/…`,
//! `/api/meta`), and a cap on its queries queued or running at once. A
//! client without a key is in the `anonymous` tier; a key names its tier
//! and may override any of the three for itself (`airq-deploy keys create
//! --submits … --polls … --max-queued …`).
//!
//! | tier        | submits  | polls      | queued | for                                  |
//! |-------------|----------|------------|--------|--------------------------------------|
//! | `anonymous` | 30/min   | 600/min    | 5      | the web page, curl, one person       |
//! | `standard`  | 60/min   | 1200/min   | 20     | a key's default: scripts and apps    |
//! | `unlimited` | off      | off        | none   | benchmarks, trusted internal callers |
//!
//! Why these: a person on the web page submits a query every few seconds
//! at most, and 30 at once still gets through; a client firing hundreds of
//! submits a second is stopped after 30. Polls: a queued result asks to be
//! polled every second (`Retry-After: 1`), so five queued queries polled as
//! asked are 5 a second, inside 10 a second (600/min), which leaves room
//! for the downloads. `standard` follows OpenAQ's 60 requests a minute for
//! submits. `--tier` changes a built-in tier or adds one.

use airq_core::keys::{valid_tier, Budget, KeyLimits};
use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

pub const ANONYMOUS: &str = "anonymous";
pub const STANDARD: &str = "standard";
pub const UNLIMITED: &str = "unlimited";

/// What a client may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tier {
    pub name: String,
    /// `POST /api/query`, answered directly or queued.
    pub submits: Budget,
    /// `GET /api/results/{id}` (polls and downloads) and `GET /api/meta`.
    pub polls: Budget,
    /// Queries queued or running at once; `None` for no cap (the global
    /// `--max-backlog` still applies).
    pub max_queued: Option<u32>,
}

fn per_minute(count: u32) -> Budget {
    Budget::rate(count, std::time::Duration::from_secs(60)).unwrap_or(Budget::Off)
}

impl Tier {
    fn anonymous() -> Tier {
        Tier::new(ANONYMOUS, per_minute(30), per_minute(600), Some(5))
    }

    fn standard() -> Tier {
        Tier::new(STANDARD, per_minute(60), per_minute(1200), Some(20))
    }

    fn unlimited() -> Tier {
        Tier::new(UNLIMITED, Budget::Off, Budget::Off, None)
    }

    fn new(name: &str, submits: Budget, polls: Budget, max_queued: Option<u32>) -> Tier {
        Tier {
            name: name.to_owned(),
            submits,
            polls,
            max_queued,
        }
    }

    /// The built-in tier called `name`.
    fn built_in(name: &str) -> Option<Tier> {
        match name {
            ANONYMOUS => Some(Tier::anonymous()),
            STANDARD => Some(Tier::standard()),
            UNLIMITED => Some(Tier::unlimited()),
            _ => None,
        }
    }

    /// This tier with a key's own limits over it.
    pub fn with(&self, own: &KeyLimits) -> Tier {
        Tier {
            name: self.name.clone(),
            submits: own.submits.unwrap_or(self.submits),
            polls: own.polls.unwrap_or(self.polls),
            max_queued: own.max_queued.or(self.max_queued),
        }
    }
}

impl fmt::Display for Tier {
    /// The `--tier` form: `name:submits=60/min,polls=1200/min,queued=20`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let queued = match self.max_queued {
            Some(n) => n.to_string(),
            None => "off".to_owned(),
        };
        write!(
            f,
            "{}:submits={},polls={},queued={}",
            self.name, self.submits, self.polls, queued
        )
    }
}

impl FromStr for Tier {
    type Err = String;

    /// `NAME:submits=B,polls=B,queued=N|off`; a field left out keeps the
    /// built-in tier of that name's value, or `standard`'s for a new tier.
    fn from_str(s: &str) -> Result<Tier, String> {
        let (name, fields) = s.split_once(':').unwrap_or((s, ""));
        let name = name.trim();
        if !valid_tier(name) {
            return Err(format!(
                "{name:?} is not a tier name (1 to 32 of a-z, 0-9 and -)"
            ));
        }
        let mut tier = Tier::built_in(name).unwrap_or_else(Tier::standard);
        tier.name = name.to_owned();
        for field in fields.split(',').map(str::trim).filter(|f| !f.is_empty()) {
            let (k, v) = field
                .split_once('=')
                .ok_or_else(|| format!("{field:?} is not `field=value`"))?;
            match k.trim() {
                "submits" => tier.submits = v.parse().map_err(|e| format!("submits: {e}"))?,
                "polls" => tier.polls = v.parse().map_err(|e| format!("polls: {e}"))?,
                "queued" => {
                    let v = v.trim();
                    tier.max_queued =
                        if v.eq_ignore_ascii_case("off") {
                            None
                        } else {
                            Some(v.parse().map_err(|_| {
                                format!("queued: {v:?} is not a whole number or `off`")
                            })?)
                        }
                }
                other => {
                    return Err(format!(
                        "{other:?} is not a tier field (submits, polls, queued)"
                    ))
                }
            }
        }
        Ok(tier)
    }
}

/// Every tier a gateway knows: the built-in ones, changed or joined by
/// `--tier`.
#[derive(Debug, Clone)]
pub struct Tiers {
    by_name: HashMap<String, Arc<Tier>>,
    anonymous: Arc<Tier>,
    standard: Arc<Tier>,
}

impl Tiers {
    pub fn new(configured: &[Tier]) -> Tiers {
        let mut by_name = HashMap::new();
        for t in [Tier::anonymous(), Tier::standard(), Tier::unlimited()]
            .into_iter()
            .chain(configured.iter().cloned())
        {
            by_name.insert(t.name.clone(), Arc::new(t));
        }
        let pick = |name: &str, default: fn() -> Tier| {
            by_name
                .get(name)
                .cloned()
                .unwrap_or_else(|| Arc::new(default()))
        };
        Tiers {
            anonymous: pick(ANONYMOUS, Tier::anonymous),
            standard: pick(STANDARD, Tier::standard),
            by_name,
        }
    }

    /// The tier of clients without a key.
    pub fn anonymous(&self) -> Arc<Tier> {
        self.anonymous.clone()
    }

    /// The tier called `name`, and whether it is defined. A key may name a
    /// tier this gateway does not define (another gateway's `--tier`, a
    /// typo at creation); it gets `standard` rather than no limits or a
    /// refusal, and the caller logs it.
    pub fn get(&self, name: &str) -> (Arc<Tier>, bool) {
        match self.by_name.get(name) {
            Some(t) => (t.clone(), true),
            None => (self.standard.clone(), false),
        }
    }

    /// Every tier, by name (for the log at start).
    pub fn describe(&self) -> String {
        let mut all: Vec<String> = self.by_name.values().map(|t| t.to_string()).collect();
        all.sort();
        all.join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_tiers_and_overrides() {
        let tiers = Tiers::new(&["anonymous:submits=5/s".parse().unwrap()]);
        let anon = tiers.anonymous();
        assert_eq!(anon.submits.to_string(), "5/s");
        assert_eq!(anon.polls.to_string(), "600/min");
        assert_eq!(anon.max_queued, Some(5));
        assert_eq!(tiers.get(UNLIMITED).0.submits, Budget::Off);
        // An unknown tier is limited as standard, not unlimited.
        assert_eq!(tiers.get("gold").0.name, STANDARD);
        assert!(!tiers.get("gold").1);
        let own = KeyLimits {
            submits: None,
            polls: Some(Budget::Off),
            max_queued: Some(2),
        };
        let t = tiers.get(STANDARD).0.with(&own);
        assert_eq!(t.to_string(), "standard:submits=60/min,polls=off,queued=2");
    }

    #[test]
    fn tier_flags_parse_and_explain_mistakes() {
        let t: Tier = "gold:submits=600/min,queued=off".parse().unwrap();
        assert_eq!(
            t.to_string(),
            "gold:submits=600/min,polls=1200/min,queued=off"
        );
        assert_eq!("gold".parse::<Tier>().unwrap().name, "gold");
        for (bad, says) in [
            ("Gold:submits=1/s", "not a tier name"),
            ("gold:submits", "field=value"),
            ("gold:speed=1/s", "not a tier field"),
            ("gold:polls=fast", "polls:"),
            ("gold:queued=-1", "queued:"),
        ] {
            let e = bad.parse::<Tier>().unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }
}
