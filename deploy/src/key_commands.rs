//! `airq-deploy keys`: API keys created, listed and revoked in the backend
//! every gateway reads them from (the `KeyStore` port of `airq-core`), on
//! SQLite (`--backend embedded --db PATH`) or DynamoDB (`--backend aws`).
//!
//! A key is shown once, by `create`, on stdout alone (so that
//! `KEY=$(airq-deploy keys create --name x)` captures it); the store keeps
//! only its SHA-256, and neither `list` nor anything else prints the key or
//! its hash. Everything meant for a person (details, warnings) goes to
//! stderr.
//!
//! Only the connection flags have environment fallbacks (`AIRQ_BACKEND`,
//! `AIRQ_DB`, the AWS ones): a key's name, tier and limits are chosen for
//! each key, and a variable left in the environment would silently give
//! every later key the same ones.

use airq_cli::connect::{BackendArgs, BackendKind};
use airq_core::keys::{self, Budget, KeyLimits, KeyRecord, KeyStore, KEY_PREFIX};
use airq_core::Timestamp;
use anyhow::{bail, Context};
use std::io::Write;
use std::sync::Arc;
use uuid::Uuid;

/// The tier of a key created without `--tier`.
pub const DEFAULT_TIER: &str = "standard";
/// The tiers every gateway knows without a `--tier` flag, besides
/// [`ANONYMOUS`].
pub const BUILT_IN_TIERS: &[&str] = &["standard", "unlimited"];
/// The tier of clients without a key: never a key's.
pub const ANONYMOUS: &str = "anonymous";

#[derive(Debug, clap::Args)]
pub struct KeysArgs {
    #[command(flatten)]
    pub backend: BackendArgs,

    #[command(subcommand)]
    pub command: KeysCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum KeysCommand {
    /// Make a new key and store it (as a hash). Prints the key alone on
    /// stdout, once; details go to stderr.
    Create(CreateArgs),
    /// Every key, revoked ones included (never the keys themselves).
    List(ListArgs),
    /// Revoke a key by its id (as `keys list` shows it). Gateways refuse it
    /// from then on; revoking it again changes nothing.
    Revoke(RevokeArgs),
}

#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    /// Who or what the key is for (1 to 100 characters), shown by `list`.
    #[arg(long)]
    pub name: String,

    /// Which limits apply: `standard`, `unlimited` (no rate limit and no
    /// cap on queued work: benchmarks, trusted internal callers) or a tier
    /// the gateways define with `--tier NAME:…`.
    #[arg(long, default_value = DEFAULT_TIER)]
    pub tier: String,

    /// This key's submit budget, overriding its tier's: `60/min`,
    /// `1000/10s`, `2000/h`, or `off` for none.
    #[arg(long, value_name = "BUDGET")]
    pub submits: Option<Budget>,

    /// This key's budget of polls and downloads, overriding its tier's
    /// (same syntax as --submits).
    #[arg(long, value_name = "BUDGET")]
    pub polls: Option<Budget>,

    /// Most jobs this key may have queued or running at once, overriding
    /// its tier's.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_queued: Option<u32>,

    /// Print one JSON object (the key and its record) instead of the key
    /// alone.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// Print a JSON array of the records (without their hashes) instead of
    /// a table; times are Unix seconds.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct RevokeArgs {
    /// The key's id (a UUID, from `keys list` or `keys create`), not the
    /// key.
    #[arg(value_name = "ID")]
    pub id: String,
}

pub async fn run(args: KeysArgs) -> anyhow::Result<()> {
    match args.command {
        KeysCommand::Create(c) => create(&args.backend, c).await,
        KeysCommand::List(l) => list(&args.backend, l).await,
        KeysCommand::Revoke(r) => revoke(&args.backend, r).await,
    }
}

/// Where the keys are, for messages.
fn location(backend: &BackendArgs) -> String {
    match backend.backend {
        BackendKind::Embedded => backend.db.display().to_string(),
        BackendKind::Aws => "the AWS backend".to_owned(),
    }
}

/// The key store of `backend`. Reading or revoking keys in an embedded
/// database that does not exist is a mistaken `--db`: refused rather than
/// answered from a new, empty file.
async fn connect(backend: &BackendArgs, must_exist: bool) -> anyhow::Result<Arc<dyn KeyStore>> {
    if backend.backend == BackendKind::Embedded && !backend.db.exists() {
        if must_exist {
            bail!(
                "there is no database at {} (set --db or AIRQ_DB to the stack's SQLite file)",
                backend.db.display()
            );
        }
        eprintln!(
            "note: {} did not exist; creating it (is --db the stack's database?)",
            backend.db.display()
        );
    }
    let connected = backend
        .connect()
        .await
        .with_context(|| format!("opening the backend at {}", location(backend)))?;
    Ok(connected.keys)
}

/// Writes `text` to stdout and flushes it.
fn out(text: &str) -> std::io::Result<()> {
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(text.as_bytes())?;
    stdout.flush()
}

/// A record as shown in JSON: everything but its hash.
fn public_json(record: &KeyRecord) -> anyhow::Result<serde_json::Map<String, serde_json::Value>> {
    match serde_json::to_value(record).context("encoding a key record")? {
        serde_json::Value::Object(mut map) => {
            map.remove("hash");
            Ok(map)
        }
        other => bail!("a key record encoded as {other}, not an object"),
    }
}

/// `submits=60/min polls=off queued=10`, or `tier defaults`.
fn describe_limits(limits: &KeyLimits) -> String {
    let mut parts = Vec::new();
    if let Some(b) = limits.submits {
        parts.push(format!("submits={b}"));
    }
    if let Some(b) = limits.polls {
        parts.push(format!("polls={b}"));
    }
    if let Some(n) = limits.max_queued {
        parts.push(format!("queued={n}"));
    }
    if parts.is_empty() {
        "tier defaults".to_owned()
    } else {
        parts.join(" ")
    }
}

fn when(t: Timestamp) -> String {
    format!("{t} UTC")
}

/// Text from the store, safe to put in a terminal table.
fn printable(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

async fn create(backend: &BackendArgs, args: CreateArgs) -> anyhow::Result<()> {
    let tier = args.tier.trim();
    if tier == ANONYMOUS {
        bail!(
            "--tier {ANONYMOUS}: that is the tier of clients without a key; give the key \
             another tier ({}, or one the gateways define with --tier)",
            BUILT_IN_TIERS.join(", ")
        );
    }
    let limits = KeyLimits {
        submits: args.submits,
        polls: args.polls,
        max_queued: args.max_queued,
    };
    let new = keys::generate(&args.name, tier, limits).context("invalid key settings")?;
    if !BUILT_IN_TIERS.contains(&tier) {
        eprintln!(
            "warning: `{tier}` is not a built-in tier ({}); make sure every gateway defines it \
             with --tier {tier}:submits=…,polls=…,queued=…",
            BUILT_IN_TIERS.join(", ")
        );
    }
    let store = connect(backend, false).await?;
    store
        .insert(&new.record)
        .await
        .with_context(|| format!("storing the new key in {}", location(backend)))?;

    let r = &new.record;
    let shown = if args.json {
        let mut map = public_json(r)?;
        map.insert("key".into(), serde_json::Value::String(new.key.clone()));
        let mut line = serde_json::Value::Object(map).to_string();
        line.push('\n');
        out(&line)
    } else {
        out(&format!("{}\n", new.key))
    };
    // The key is stored: if it cannot be shown, nobody can use it, and it
    // should not stay valid.
    shown.with_context(|| {
        format!(
            "key {} was stored but could not be written to stdout; revoke it with \
             `airq-deploy keys revoke {}`",
            r.id, r.id
        )
    })?;
    eprintln!(
        "created key {id}\n  name:    {name}\n  tier:    {tier}\n  limits:  {limits}\n  \
         created: {created}\nThe key is on stdout: it is shown once; it cannot be recovered, \
         only revoked (airq-deploy keys revoke {id}).",
        id = r.id,
        name = printable(&r.name),
        tier = r.tier,
        limits = describe_limits(&r.limits),
        created = when(r.created_at),
    );
    Ok(())
}

async fn list(backend: &BackendArgs, args: ListArgs) -> anyhow::Result<()> {
    let store = connect(backend, true).await?;
    let records = store
        .list()
        .await
        .with_context(|| format!("listing the keys in {}", location(backend)))?;
    let text = if args.json {
        let array = records
            .iter()
            .map(|r| public_json(r).map(serde_json::Value::Object))
            .collect::<anyhow::Result<Vec<_>>>()?;
        format!("{}\n", serde_json::Value::Array(array))
    } else {
        if records.is_empty() {
            eprintln!(
                "no keys in {} (create one with `airq-deploy keys create --name NAME`)",
                location(backend)
            );
            return Ok(());
        }
        table(&records)
    };
    out(&text).context("writing to stdout")
}

/// The keys as an aligned text table.
fn table(records: &[KeyRecord]) -> String {
    let header = [
        "ID",
        "NAME",
        "TIER",
        "LIMITS",
        "CREATED (UTC)",
        "REVOKED (UTC)",
    ];
    let rows: Vec<[String; 6]> = records
        .iter()
        .map(|r| {
            [
                r.id.to_string(),
                printable(&r.name),
                printable(&r.tier),
                describe_limits(&r.limits),
                r.created_at.to_string(),
                r.revoked_at
                    .map_or_else(|| "-".to_owned(), |t| t.to_string()),
            ]
        })
        .collect();
    let mut widths = header.map(|h| h.chars().count());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut text = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut l = String::new();
        for (i, cell) in cells.enumerate() {
            if i > 0 {
                l.push_str("  ");
            }
            l.push_str(cell);
            let pad = widths[i].saturating_sub(cell.chars().count());
            l.extend(std::iter::repeat_n(' ', pad));
        }
        text.push_str(l.trim_end());
        text.push('\n');
    };
    line(&mut header.iter().copied());
    for row in &rows {
        line(&mut row.iter().map(String::as_str));
    }
    text
}

/// A key id from the command line. A key given by mistake is refused
/// without being repeated.
fn parse_id(input: &str) -> anyhow::Result<Uuid> {
    let input = input.trim();
    if input.starts_with(KEY_PREFIX) {
        bail!(
            "that is a key, not a key id: revoke a key by its id, which \
             `airq-deploy keys list` shows beside its name"
        );
    }
    Uuid::parse_str(input).map_err(|_| {
        let shown: String = input.chars().take(80).collect();
        anyhow::anyhow!(
            "{shown:?} is not a key id (a UUID such as 6f1c1b9e-3a4d-4f43-9d57-2b8a0c1e5f70, \
             as `airq-deploy keys list` shows)"
        )
    })
}

async fn revoke(backend: &BackendArgs, args: RevokeArgs) -> anyhow::Result<()> {
    let id = parse_id(&args.id)?;
    let store = connect(backend, true).await?;
    let unknown = || {
        anyhow::anyhow!(
            "no key has the id {id} in {} (see `airq-deploy keys list`)",
            location(backend)
        )
    };
    // Looked up first: a revocation time alone cannot tell an earlier
    // revocation in the same second from this one.
    let before = store
        .list()
        .await
        .with_context(|| format!("listing the keys in {}", location(backend)))?
        .into_iter()
        .find(|r| r.id == id)
        .ok_or_else(unknown)?;
    let text = if let Some(at) = before.revoked_at {
        already(&before, at)
    } else {
        let now = Timestamp::now();
        let after = store
            .revoke(id, now)
            .await
            .with_context(|| format!("revoking key {id} in {}", location(backend)))?
            .ok_or_else(unknown)?;
        match after.revoked_at {
            Some(at) if at == now => format!(
                "revoked key {id} ({}) at {}\n",
                printable(&after.name),
                when(at)
            ),
            // Revoked by someone else in between.
            Some(at) => already(&after, at),
            None => bail!("the store did not revoke key {id}; try again"),
        }
    };
    out(&text).context("writing to stdout")
}

fn already(record: &KeyRecord, at: Timestamp) -> String {
    format!(
        "key {} ({}): already revoked at {}\n",
        record.id,
        printable(&record.name),
        when(at)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_checked_and_keys_never_repeated() {
        let id = Uuid::new_v4();
        assert_eq!(parse_id(&format!(" {id} ")).unwrap(), id);
        let key = format!("{KEY_PREFIX}{}", "ab".repeat(32));
        let e = parse_id(&key).unwrap_err().to_string();
        assert!(e.contains("not a key id"), "{e}");
        assert!(!e.contains(&key[KEY_PREFIX.len()..]), "{e}");
        let e = parse_id("nope").unwrap_err().to_string();
        assert!(e.contains("\"nope\" is not a key id"), "{e}");
    }

    #[test]
    fn limits_and_tables_read_well() {
        assert_eq!(describe_limits(&KeyLimits::default()), "tier defaults");
        let limits = KeyLimits {
            submits: "5/s".parse().ok(),
            polls: Some(Budget::Off),
            max_queued: Some(3),
        };
        assert_eq!(describe_limits(&limits), "submits=5/s polls=off queued=3");
        let mut new = keys::generate("bot", "standard", KeyLimits::default())
            .map(|n| n.record)
            .unwrap_or_else(|e| panic!("{e}"));
        new.name = "bot\u{7}".into();
        let t = table(&[new.clone()]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].starts_with("ID  "), "{t}");
        assert!(lines[1].contains("bot?"), "{t}");
        assert!(!t.contains(new.hash.as_str()), "{t}");
        assert!(!public_json(&new).unwrap().contains_key("hash"));
    }
}
