//! The key store contract.
//!
//! Every check makes its own keys and looks only at them, so a store that
//! already holds others (another check's) passes the same.

use airq_core::keys::{generate, parse_presented, KeyLimits, KeyRecord, KeyStore, NewKey};
use airq_core::reading::Timestamp;
use async_trait::async_trait;
use uuid::Uuid;

/// A key store, and a look at what it keeps underneath.
#[async_trait]
pub trait KeyHarness: Sync {
    fn store(&self) -> &dyn KeyStore;

    /// Everything the backend holds for its keys, as raw as it comes (the
    /// database files' bytes, every item the service returns), to search
    /// for what must not be there.
    async fn raw(&self) -> Vec<u8>;
}

/// Runs every check in turn.
pub async fn run_all(h: &dyn KeyHarness) {
    insert_then_find(h.store()).await;
    unknown_is_none(h.store()).await;
    list_is_oldest_first_revoked_included(h.store()).await;
    revoke_keeps_the_first_time(h.store()).await;
    no_trace_of_the_key(h).await;
}

fn key(name: &str, limits: KeyLimits) -> NewKey {
    generate(name, "standard", limits).expect("generate a key")
}

/// A key's secret part (what follows `airq_`).
fn secret(new: &NewKey) -> &str {
    &new.key[airq_core::keys::KEY_PREFIX.len()..]
}

pub async fn insert_then_find(store: &dyn KeyStore) {
    let plain = key("plain", KeyLimits::default());
    let limited = key(
        "limited",
        KeyLimits {
            submits: Some("5/s".parse().expect("budget")),
            polls: Some("off".parse().expect("budget")),
            max_queued: Some(3),
        },
    );
    for new in [&plain, &limited] {
        store.insert(&new.record).await.expect("insert");
    }
    for new in [&plain, &limited] {
        let hash = parse_presented(&new.key).expect("a generated key parses");
        let found = store.find(&hash).await.expect("find").expect("the key");
        assert_eq!(
            found, new.record,
            "a key is found, as inserted, by its hash"
        );
        assert!(!found.is_revoked());
    }
}

pub async fn unknown_is_none(store: &dyn KeyStore) {
    let never = key("never stored", KeyLimits::default());
    assert!(
        store
            .find(&never.record.hash)
            .await
            .expect("find")
            .is_none(),
        "an unknown hash finds nothing"
    );
    assert!(
        store
            .revoke(Uuid::new_v4(), Timestamp::now())
            .await
            .expect("revoke")
            .is_none(),
        "revoking an unknown id finds nothing"
    );
    assert!(
        store
            .find(&never.record.hash)
            .await
            .expect("find")
            .is_none(),
        "and stores nothing"
    );
}

pub async fn list_is_oldest_first_revoked_included(store: &dyn KeyStore) {
    let now = Timestamp::now().0;
    // Inserted in neither age order.
    let mut keys = Vec::new();
    for (name, age) in [("middle", 200), ("oldest", 300), ("newest", 100)] {
        let mut new = key(name, KeyLimits::default());
        new.record.created_at = Timestamp(now - age);
        keys.push(new.record);
    }
    for k in &keys {
        store.insert(k).await.expect("insert");
    }
    let revoked = store
        .revoke(keys[1].id, Timestamp(now))
        .await
        .expect("revoke")
        .expect("the key");
    let ours: Vec<KeyRecord> = store
        .list()
        .await
        .expect("list")
        .into_iter()
        .filter(|k| keys.iter().any(|mine| mine.id == k.id))
        .collect();
    let names: Vec<&str> = ours.iter().map(|k| k.name.as_str()).collect();
    assert_eq!(names, ["oldest", "middle", "newest"], "oldest first");
    assert_eq!(ours[0], revoked, "revoked keys are listed too");
    assert_eq!(ours[1], keys[0]);
    assert_eq!(ours[2], keys[2]);
}

pub async fn revoke_keeps_the_first_time(store: &dyn KeyStore) {
    let new = key("revoked", KeyLimits::default());
    store.insert(&new.record).await.expect("insert");
    let first = Timestamp(Timestamp::now().0 - 60);
    let r = store
        .revoke(new.record.id, first)
        .await
        .expect("revoke")
        .expect("the key");
    assert_eq!(r.revoked_at, Some(first));
    assert_eq!(
        r,
        KeyRecord {
            revoked_at: Some(first),
            ..new.record.clone()
        },
        "revoking changes nothing else"
    );
    let again = store
        .revoke(new.record.id, Timestamp::now())
        .await
        .expect("revoke again")
        .expect("the key");
    assert_eq!(again.revoked_at, Some(first), "the first revocation stays");
    let found = store
        .find(&new.record.hash)
        .await
        .expect("find")
        .expect("a revoked key is still found");
    assert!(found.is_revoked());
    assert_eq!(found.revoked_at, Some(first));
}

pub async fn no_trace_of_the_key(h: &dyn KeyHarness) {
    let new = key("secret-keeper", KeyLimits::default());
    h.store().insert(&new.record).await.expect("insert");
    h.store()
        .revoke(new.record.id, Timestamp::now())
        .await
        .expect("revoke");
    let raw = h.raw().await;
    let contains = |needle: &str| raw.windows(needle.len()).any(|w| w == needle.as_bytes());
    assert!(
        contains(new.record.hash.as_str()),
        "the harness's raw view holds the stored keys (their hashes)"
    );
    assert!(
        !contains(secret(&new)),
        "the store keeps no trace of the key itself"
    );
    for record in [
        h.store().find(&new.record.hash).await.expect("find"),
        h.store()
            .list()
            .await
            .expect("list")
            .into_iter()
            .find(|k| k.id == new.record.id),
    ] {
        let record = record.expect("the key");
        for text in [
            format!("{record:?}"),
            serde_json::to_string(&record).expect("json"),
        ] {
            assert!(!text.contains(secret(&new)), "a record never holds the key");
        }
    }
}
