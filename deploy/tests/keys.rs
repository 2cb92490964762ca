//! `airq-deploy keys` as an operator runs it: the built binary against a
//! temporary SQLite file. A key is printed once, alone on stdout; it is
//! listed and revoked by id; and it is stored nowhere, only its hash.

use airq_core::keys::parse_presented;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// Runs `airq-deploy keys ARGS --backend embedded --db DB`, with no
/// `AIRQ_*` variable from the environment.
fn keys(db: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_airq-deploy"));
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("AIRQ_") {
            cmd.env_remove(&k);
        }
    }
    cmd.arg("keys")
        .args(args)
        .args(["--backend", "embedded", "--db"])
        .arg(db)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .expect("running airq-deploy keys")
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).expect("stdout is UTF-8")
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).expect("stderr is UTF-8")
}

/// Runs and expects success.
fn ok(db: &Path, args: &[&str]) -> Output {
    let o = keys(db, args);
    assert!(
        o.status.success(),
        "keys {args:?} failed ({}): {}",
        o.status,
        stderr(&o)
    );
    o
}

/// Runs and expects failure; returns stderr.
fn fails(db: &Path, args: &[&str]) -> String {
    let o = keys(db, args);
    assert!(
        !o.status.success(),
        "keys {args:?} succeeded: {}",
        stdout(&o)
    );
    assert!(o.stdout.is_empty(), "nothing on stdout: {}", stdout(&o));
    stderr(&o)
}

fn is_key(s: &str) -> bool {
    s.len() == 69
        && s.starts_with("airq_")
        && s[5..]
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn list_json(db: &Path) -> Vec<Value> {
    let o = ok(db, &["list", "--json"]);
    let v: Value = serde_json::from_str(&stdout(&o)).expect("list --json is JSON");
    v.as_array().expect("an array").clone()
}

fn by_name<'a>(records: &'a [Value], name: &str) -> &'a Value {
    records
        .iter()
        .find(|r| r["name"] == name)
        .unwrap_or_else(|| panic!("{name} in {records:?}"))
}

/// Every file under `dir`, recursively.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("reading the directory") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            out.extend(files(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[test]
fn keys_are_created_listed_and_revoked_and_stored_only_as_hashes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("airq.db");

    // The key alone on stdout; details and the warning on stderr.
    let o = ok(&db, &["create", "--name", "alice"]);
    let out = stdout(&o);
    let alice = out.trim_end_matches('\n');
    assert_eq!(out.lines().count(), 1, "one line: {out:?}");
    assert!(is_key(alice), "stdout is one key: {out:?}");
    let err = stderr(&o);
    assert!(
        err.contains("shown once; it cannot be recovered, only revoked"),
        "{err}"
    );
    assert!(err.contains("alice") && err.contains("standard"), "{err}");
    assert!(
        !err.contains(&alice[5..]),
        "the key is not on stderr: {err}"
    );
    assert!(!err.contains("warning"), "{err}");

    // --json: one object with the key, no hash.
    let o = ok(
        &db,
        &[
            "create",
            "--name",
            "bench",
            "--tier",
            "unlimited",
            "--submits",
            "5/s",
            "--polls",
            "off",
            "--max-queued",
            "3",
            "--json",
        ],
    );
    let out = stdout(&o);
    assert_eq!(out.lines().count(), 1, "one line: {out:?}");
    let created: Value = serde_json::from_str(&out).expect("create --json is JSON");
    let bench = created["key"].as_str().expect("key").to_owned();
    assert!(is_key(&bench), "{created}");
    assert_ne!(bench, alice);
    assert_eq!(created["name"], "bench");
    assert_eq!(created["tier"], "unlimited");
    assert_eq!(created["limits"]["submits"], "5/s");
    assert_eq!(created["limits"]["polls"], "off");
    assert_eq!(created["limits"]["maxQueued"], 3);
    assert!(created.get("hash").is_none(), "{created}");
    let bench_id = created["id"].as_str().expect("id").to_owned();
    assert!(!stderr(&o).contains("warning"), "{}", stderr(&o));

    // A tier no gateway knows without --tier: created, with a warning.
    let o = ok(&db, &["create", "--name", "partner", "--tier", "gold"]);
    assert!(is_key(stdout(&o).trim()));
    let err = stderr(&o);
    assert!(
        err.contains("warning") && err.contains("make sure every gateway defines it with --tier"),
        "{err}"
    );

    // The table: names, tiers and limits; never a key or a hash.
    let hashes: Vec<String> = [alice, bench.as_str()]
        .iter()
        .map(|k| parse_presented(k).expect("a key").as_str().to_owned())
        .collect();
    let table = stdout(&ok(&db, &["list"]));
    assert_eq!(table.lines().count(), 4, "a header and 3 keys: {table}");
    for want in [
        "ID",
        "NAME",
        "TIER",
        "REVOKED",
        "alice",
        "standard",
        "bench",
        "unlimited",
        "partner",
        "gold",
        "submits=5/s polls=off queued=3",
        &bench_id,
    ] {
        assert!(table.contains(want), "{want} in {table}");
    }
    for secret in [&alice[5..], &bench[5..], &hashes[0], &hashes[1]] {
        assert!(!table.contains(secret), "no key or hash in {table}");
    }
    let records = list_json(&db);
    assert_eq!(records.len(), 3);
    let text = serde_json::to_string(&records).expect("JSON");
    for secret in [&alice[5..], &bench[5..], &hashes[0], &hashes[1]] {
        assert!(!text.contains(secret), "no key or hash in {text}");
    }
    assert!(records.iter().all(|r| r.get("hash").is_none()), "{text}");
    let alice_id = by_name(&records, "alice")["id"]
        .as_str()
        .expect("id")
        .to_owned();
    assert!(by_name(&records, "alice").get("revokedAt").is_none());

    // Revoke, then again.
    let out = stdout(&ok(&db, &["revoke", &alice_id]));
    assert!(
        out.starts_with("revoked key") && out.contains(&alice_id) && out.contains("UTC"),
        "{out}"
    );
    let records = list_json(&db);
    assert!(
        by_name(&records, "alice")["revokedAt"].is_i64(),
        "{records:?}"
    );
    assert!(by_name(&records, "bench").get("revokedAt").is_none());
    let table = stdout(&ok(&db, &["list"]));
    let alice_row = table
        .lines()
        .find(|l| l.contains("alice"))
        .expect("alice's row");
    assert!(
        !alice_row.trim_end().ends_with('-'),
        "a revocation time: {table}"
    );
    let bench_row = table
        .lines()
        .find(|l| l.contains("bench"))
        .expect("bench's row");
    assert!(bench_row.trim_end().ends_with('-'), "not revoked: {table}");
    let out = stdout(&ok(&db, &["revoke", &alice_id]));
    assert!(out.contains("already revoked at"), "{out}");

    // Unknown and malformed ids.
    let err = fails(&db, &["revoke", "00000000-0000-4000-8000-000000000000"]);
    assert!(err.contains("no key has the id"), "{err}");
    let err = fails(&db, &["revoke", "alice"]);
    assert!(err.contains("is not a key id"), "{err}");
    let err = fails(&db, &["revoke", &bench]);
    assert!(err.contains("not a key id"), "{err}");
    assert!(!err.contains(&bench[5..]), "the key is not repeated: {err}");

    // Nothing on disk holds a key: the database, its WAL and anything
    // beside it.
    let all = files(dir.path());
    assert!(all.iter().any(|f| f == &db), "{all:?}");
    for file in &all {
        let bytes = std::fs::read(file).expect("reading a file");
        for key in [alice, bench.as_str()] {
            for needle in [key, &key[5..]] {
                assert!(
                    !bytes.windows(needle.len()).any(|w| w == needle.as_bytes()),
                    "{} holds a key",
                    file.display()
                );
            }
        }
    }
}

#[test]
fn bad_input_is_refused_naming_the_problem() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("airq.db");

    let err = fails(&db, &["create"]);
    assert!(err.contains("--name"), "{err}");
    let err = fails(&db, &["create", "--name", " "]);
    assert!(err.contains("name must be"), "{err}");
    let long = "n".repeat(101);
    let err = fails(&db, &["create", "--name", &long]);
    assert!(err.contains("name must be"), "{err}");
    let err = fails(&db, &["create", "--name", "x", "--tier", "Gold Tier"]);
    assert!(err.contains("not a tier name"), "{err}");
    let err = fails(&db, &["create", "--name", "x", "--tier", "anonymous"]);
    assert!(err.contains("without a key"), "{err}");
    let err = fails(&db, &["create", "--name", "x", "--submits", "60"]);
    assert!(
        err.contains("--submits") && err.contains("not a budget"),
        "{err}"
    );
    let err = fails(&db, &["create", "--name", "x", "--polls", "0/min"]);
    assert!(
        err.contains("--polls") && err.contains("not a budget"),
        "{err}"
    );
    let err = fails(&db, &["create", "--name", "x", "--max-queued", "0"]);
    assert!(err.contains("--max-queued"), "{err}");
    let err = fails(&db, &["revoke"]);
    assert!(err.contains("ID"), "{err}");
    // Nothing was created by any of them.
    assert!(!db.exists(), "refused input creates no database");

    // Reading or revoking in a database that does not exist is a wrong
    // --db, not an empty list.
    let err = fails(&db, &["list"]);
    assert!(err.contains("no database at"), "{err}");
    let err = fails(&db, &["revoke", "00000000-0000-4000-8000-000000000000"]);
    assert!(err.contains("no database at"), "{err}");
    assert!(!db.exists());
}
