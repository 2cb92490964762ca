//! API keys: what a client presents to be known (and get more than an
//! anonymous client), and the port where gateways find them.
//!
//! A key is `airq_` followed by 64 hex digits: 244 random bits from the
//! operating system (two v4 UUIDs). It is shown once, when created; the
//! store keeps only its SHA-256. A plain fast hash is the right one here:
//! a slow password hash (Argon2, bcrypt) protects guessable secrets, and a
//! 244-bit random key cannot be guessed, while every keyed request has to
//! look its key up. The store is keyed by the hash, so finding a key is one
//! read and no stored key is ever compared with what a client sent.
//!
//! Each key has a public id (a UUID, shown by `keys list` and used to
//! revoke it), a name, a tier (which limits apply, see the gateway's
//! `--tier`) and optional limits of its own that override the tier's.

use crate::error::BackendError;
use crate::reading::Timestamp;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;
use std::num::NonZeroU32;
use std::str::FromStr;
use std::time::Duration;
use uuid::Uuid;

/// What every key starts with, so that a key pasted in the wrong place is
/// recognisable (and secret scanners can find it).
pub const KEY_PREFIX: &str = "airq_";
/// Hex digits after the prefix.
const KEY_HEX_DIGITS: usize = 64;
/// The length of a key.
pub const KEY_LEN: usize = KEY_PREFIX.len() + KEY_HEX_DIGITS;

/// The SHA-256 of a key, in lowercase hex: the only form ever stored.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct KeyHash(String);

impl KeyHash {
    /// The hash of a key as presented (its format already checked by
    /// [`parse_presented`]).
    fn of(key: &str) -> KeyHash {
        let digest = Sha256::digest(key.as_bytes());
        let mut hex = String::with_capacity(64);
        for b in digest {
            use fmt::Write;
            let _ = write!(hex, "{b:02x}");
        }
        KeyHash(hex)
    }

    /// A hash read back from a store.
    pub fn from_stored(s: String) -> Result<KeyHash, BackendError> {
        if s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
            Ok(KeyHash(s))
        } else {
            Err(BackendError::Corrupt(format!(
                "a stored key hash is not 64 hex digits: {s:?}"
            )))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Why a presented key was refused before any lookup.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyFormatError {
    #[error("the API key is empty")]
    Empty,
    #[error(
        "the API key is {len} characters long; airq keys are {KEY_LEN} (`airq_` and 64 hex digits)"
    )]
    Length { len: usize },
    #[error("the API key is not an airq key (`airq_` followed by 64 hex digits)")]
    Shape,
}

/// Checks a key's form (cheaply, before hashing or looking it up) and
/// returns its hash. The error never repeats the key.
pub fn parse_presented(key: &str) -> Result<KeyHash, KeyFormatError> {
    let key = key.trim();
    if key.is_empty() {
        return Err(KeyFormatError::Empty);
    }
    if key.len() != KEY_LEN {
        return Err(KeyFormatError::Length { len: key.len() });
    }
    let well_formed = key.starts_with(KEY_PREFIX)
        && key[KEY_PREFIX.len()..]
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if !well_formed {
        return Err(KeyFormatError::Shape);
    }
    Ok(KeyHash::of(key))
}

/// A request budget: `count` requests per `period`, all of which may be
/// used at once (then one more every `period / count`). Written `60/min`,
/// `1000/10s`, `2000/h` (the period in the one duration syntax, a bare unit
/// meaning one of it), or `off` for no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Budget {
    Off,
    Rate { count: NonZeroU32, period: Duration },
}

impl Budget {
    /// A rate of `count` per `period`; `None` if either is zero.
    pub fn rate(count: u32, period: Duration) -> Option<Budget> {
        let count = NonZeroU32::new(count)?;
        (!period.is_zero()).then_some(Budget::Rate { count, period })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{input:?} is not a budget: {reason} (write it like `60/min`, `1000/10s` or `off`)")]
pub struct BudgetError {
    input: String,
    reason: &'static str,
}

impl FromStr for Budget {
    type Err = BudgetError;

    fn from_str(s: &str) -> Result<Budget, BudgetError> {
        let err = |reason| BudgetError {
            input: s.to_owned(),
            reason,
        };
        let t = s.trim();
        if t.eq_ignore_ascii_case("off") {
            return Ok(Budget::Off);
        }
        let (count, period) = t.split_once('/').ok_or_else(|| err("no `/`"))?;
        let count: u32 = count
            .trim()
            .parse()
            .map_err(|_| err("the count is not a whole number"))?;
        let period = period.trim();
        // `min` means `1min`: humantime needs the number.
        let period = if period.starts_with(|c: char| c.is_ascii_alphabetic()) {
            format!("1{period}")
        } else {
            period.to_owned()
        };
        let period =
            humantime::parse_duration(&period).map_err(|_| err("the period is not a duration"))?;
        if period > Duration::from_secs(7 * 24 * 3600) {
            return Err(err("the period is longer than a week"));
        }
        Budget::rate(count, period).ok_or_else(|| err("the count and the period must not be zero"))
    }
}

impl fmt::Display for Budget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Budget::Off => f.write_str("off"),
            Budget::Rate { count, period } => {
                let secs = period.as_secs();
                let unit = match secs {
                    _ if period.subsec_nanos() != 0 => {
                        return write!(f, "{count}/{}ms", period.as_millis())
                    }
                    1 => "s".to_owned(),
                    60 => "min".to_owned(),
                    3600 => "h".to_owned(),
                    86400 => "day".to_owned(),
                    s => format!("{s}s"),
                };
                write!(f, "{count}/{unit}")
            }
        }
    }
}

impl Serialize for Budget {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Budget {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Budget, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A key's own limits; each one it sets overrides its tier's.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyLimits {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub submits: Option<Budget>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub polls: Option<Budget>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_queued: Option<u32>,
}

impl KeyLimits {
    pub fn is_empty(&self) -> bool {
        *self == KeyLimits::default()
    }
}

/// One key as stored (never the key itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyRecord {
    /// Its public id: shown by `keys list`, used to revoke it, and what the
    /// results it submits are owned by. Not a secret.
    pub id: Uuid,
    pub hash: KeyHash,
    pub name: String,
    pub tier: String,
    #[serde(default, skip_serializing_if = "KeyLimits::is_empty")]
    pub limits: KeyLimits,
    pub created_at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<Timestamp>,
}

impl KeyRecord {
    pub fn is_revoked(&self) -> bool {
        self.revoked_at.is_some()
    }
}

/// A key just made: the key itself (to show once) and its record (to
/// store).
pub struct NewKey {
    pub key: String,
    pub record: KeyRecord,
}

impl fmt::Debug for NewKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the key itself, not even in a debug print.
        f.debug_struct("NewKey")
            .field("record", &self.record)
            .finish_non_exhaustive()
    }
}

/// The longest key name.
pub const MAX_NAME_LEN: usize = 100;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyFieldError {
    #[error("the name must be 1 to {MAX_NAME_LEN} characters, without control characters")]
    Name,
    #[error("the tier {0:?} is not a tier name (1 to 32 of a-z, 0-9 and -)")]
    Tier(String),
}

/// Whether `tier` is a well-formed tier name.
pub fn valid_tier(tier: &str) -> bool {
    (1..=32).contains(&tier.len())
        && tier
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Makes a new key named `name` in `tier`.
pub fn generate(name: &str, tier: &str, limits: KeyLimits) -> Result<NewKey, KeyFieldError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME_LEN || name.chars().any(char::is_control)
    {
        return Err(KeyFieldError::Name);
    }
    if !valid_tier(tier) {
        return Err(KeyFieldError::Tier(tier.to_owned()));
    }
    let key = format!(
        "{KEY_PREFIX}{}{}",
        Uuid::new_v4().simple(),
        Uuid::new_v4().simple()
    );
    let hash = KeyHash::of(&key);
    Ok(NewKey {
        key,
        record: KeyRecord {
            id: Uuid::new_v4(),
            hash,
            name: name.to_owned(),
            tier: tier.to_owned(),
            limits,
            created_at: Timestamp::now(),
            revoked_at: None,
        },
    })
}

/// Where keys are kept, shared by every gateway of a deployment.
#[async_trait]
pub trait KeyStore: Send + Sync + 'static {
    /// Stores a new key.
    async fn insert(&self, key: &KeyRecord) -> Result<(), BackendError>;

    /// The key with this hash, revoked or not.
    async fn find(&self, hash: &KeyHash) -> Result<Option<KeyRecord>, BackendError>;

    /// Every key, revoked ones included, oldest first.
    async fn list(&self) -> Result<Vec<KeyRecord>, BackendError>;

    /// Marks key `id` revoked at `at` unless it is already (then its first
    /// revocation time stays). Returns the key as it now is, or `None` if
    /// no key has this id.
    async fn revoke(&self, id: Uuid, at: Timestamp) -> Result<Option<KeyRecord>, BackendError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_key_is_stored_only_as_its_hash() {
        let new = generate("alice", "standard", KeyLimits::default()).unwrap();
        assert_eq!(new.key.len(), KEY_LEN);
        assert_eq!(parse_presented(&new.key).unwrap(), new.record.hash);
        assert_ne!(new.record.hash.as_str(), new.key);
        assert!(!new
            .record
            .hash
            .as_str()
            .contains(&new.key[KEY_PREFIX.len()..]));
        let stored = serde_json::to_string(&new.record).unwrap();
        assert!(!stored.contains(&new.key[KEY_PREFIX.len()..]));
        assert!(!format!("{new:?}").contains(&new.key[KEY_PREFIX.len()..]));
        let other = generate("alice", "standard", KeyLimits::default()).unwrap();
        assert_ne!(other.key, new.key);
        assert_ne!(other.record.id, new.record.id);
    }

    #[test]
    fn presented_keys_are_checked_before_lookup() {
        assert_eq!(parse_presented(""), Err(KeyFormatError::Empty));
        assert_eq!(parse_presented("  "), Err(KeyFormatError::Empty));
        assert_eq!(
            parse_presented(&"x".repeat(10_000)),
            Err(KeyFormatError::Length { len: 10_000 })
        );
        let upper = format!("{KEY_PREFIX}{}", "A".repeat(64));
        assert_eq!(parse_presented(&upper), Err(KeyFormatError::Shape));
        let wrong_prefix = format!("abcd_{}", "a".repeat(64));
        assert_eq!(parse_presented(&wrong_prefix), Err(KeyFormatError::Shape));
        let ok = format!("{KEY_PREFIX}{}", "0".repeat(64));
        assert!(parse_presented(&format!(" {ok} ")).is_ok());
        // The error says what is wrong, never what was sent.
        let e = parse_presented("airq_secret").unwrap_err().to_string();
        assert!(!e.contains("secret"), "{e}");
    }

    #[test]
    fn budgets_parse_and_print() {
        let min = Duration::from_secs(60);
        for (text, want) in [
            ("60/min", Budget::rate(60, min)),
            ("60/1min", Budget::rate(60, min)),
            (" 1000 / 10s ", Budget::rate(1000, Duration::from_secs(10))),
            ("2000/h", Budget::rate(2000, Duration::from_secs(3600))),
            ("OFF", Some(Budget::Off)),
        ] {
            assert_eq!(text.parse::<Budget>().ok(), want, "{text}");
        }
        for bad in [
            "",
            "60",
            "0/min",
            "60/0s",
            "x/min",
            "60/fortnight",
            "-1/s",
            "1/30days",
        ] {
            let e = bad.parse::<Budget>().unwrap_err().to_string();
            assert!(e.contains("60/min"), "{bad}: {e}");
        }
        for text in [
            "60/min", "1000/10s", "2000/h", "5/s", "off", "3/250ms", "9/day",
        ] {
            let b: Budget = text.parse().unwrap();
            assert_eq!(b.to_string(), text);
            assert_eq!(b.to_string().parse::<Budget>().unwrap(), b);
        }
    }

    #[test]
    fn names_and_tiers_are_checked() {
        assert_eq!(
            generate(" ", "standard", KeyLimits::default()).unwrap_err(),
            KeyFieldError::Name
        );
        assert_eq!(
            generate("a\nb", "standard", KeyLimits::default()).unwrap_err(),
            KeyFieldError::Name
        );
        assert!(generate("ok", "Gold tier", KeyLimits::default()).is_err());
        assert!(generate(&"n".repeat(101), "standard", KeyLimits::default()).is_err());
        assert!(generate("team-α", "unlimited", KeyLimits::default()).is_ok());
    }

    #[test]
    fn records_round_trip_with_their_limits() {
        let limits = KeyLimits {
            submits: Some("5/s".parse().unwrap()),
            polls: None,
            max_queued: Some(3),
        };
        let new = generate("bot", "standard", limits).unwrap();
        let json = serde_json::to_string(&new.record).unwrap();
        assert!(
            json.contains(r#""limits":{"submits":"5/s","maxQueued":3}"#),
            "{json}"
        );
        let back: KeyRecord = serde_json::from_str(&json).unwrap();
        assert_eq!(back, new.record);
    }
}
