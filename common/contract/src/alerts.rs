//! The alert store's contract ([`AlertStore`]): caps counted with the
//! insert, transitions that only one evaluation wins, leased claims, and
//! deliveries kept per alert.

use airq_core::alert::{
    Alert, AlertSpec, AlertState, AlertStore, Delivery, DeliveryState, Refused,
};
use airq_core::reading::Timestamp;
use uuid::Uuid;

fn alert(owner: Uuid) -> Alert {
    Alert {
        id: Uuid::new_v4(),
        owner,
        spec: AlertSpec::from_json(
            br#"{"place":{"country":"DE"},"index":"us-epa","threshold":{"band":"Unhealthy"},"webhookUrl":"https://example.org/h","cooldown":"10m"}"#,
        )
        .expect("a valid spec"),
        secret: "whsec_c2VjcmV0".into(),
        created_at: Timestamp(1_000),
    }
}

fn delivery(alert: Uuid, created_ms: i64) -> Delivery {
    Delivery {
        id: Uuid::new_v4(),
        alert,
        event: "alert.entered".into(),
        body: r#"{"type":"alert.entered"}"#.into(),
        created_ms,
        attempts: 0,
        next_ms: created_ms,
        state: DeliveryState::Pending,
        last_status: None,
        last_error: None,
        finished_ms: None,
    }
}

/// Every check, on an empty store.
pub async fn run_all(store: &dyn AlertStore) {
    let (ann, bob) = (Uuid::new_v4(), Uuid::new_v4());
    let a1 = alert(ann);
    let a2 = alert(ann);
    assert_eq!(store.create(&a1, 2, 3).await.expect("create"), Ok(()));
    assert_eq!(store.create(&a2, 2, 3).await.expect("create"), Ok(()));
    assert_eq!(
        store.create(&alert(ann), 2, 3).await.expect("create"),
        Err(Refused::OwnerFull { max: 2 })
    );
    let b1 = alert(bob);
    assert_eq!(store.create(&b1, 2, 3).await.expect("create"), Ok(()));
    assert_eq!(
        store.create(&alert(bob), 2, 3).await.expect("create"),
        Err(Refused::StoreFull { max: 3 })
    );
    let (read, state) = store.get(a1.id).await.expect("get").expect("stored");
    assert_eq!(read, a1, "read back as stored");
    assert_eq!(state, AlertState::default());
    assert_eq!(store.all().await.expect("all").len(), 3);

    // One of two evaluations of version 5 wins; its delivery is stored.
    let entered = AlertState {
        inside: true,
        entered_at: Some(Timestamp(2_000)),
        version: 5,
        value: Some(160),
        suppressed: 0,
    };
    let d = delivery(a1.id, 10_000);
    assert!(store
        .transition(a1.id, 0, &entered, Some(&d))
        .await
        .expect("transition"));
    assert!(
        !store
            .transition(a1.id, 0, &entered, Some(&delivery(a1.id, 10_001)))
            .await
            .expect("again"),
        "the second evaluation of the same state loses"
    );
    assert_eq!(
        store.get(a1.id).await.expect("get").expect("stored").1,
        entered
    );
    assert_eq!(
        store.deliveries(a1.id, 10).await.expect("deliveries"),
        vec![d.clone()]
    );

    // Due deliveries are claimed once until their lease ends.
    assert!(
        store
            .claim(9_999, 20_000, 10)
            .await
            .expect("claim")
            .is_empty(),
        "not due yet"
    );
    let due = store.claim(10_000, 20_000, 10).await.expect("claim");
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].url, "https://example.org/h");
    assert_eq!(due[0].secret, "whsec_c2VjcmV0");
    assert!(
        store
            .claim(15_000, 25_000, 10)
            .await
            .expect("claim")
            .is_empty(),
        "leased"
    );
    let retry = Delivery {
        attempts: 1,
        next_ms: 12_000,
        last_status: Some(500),
        last_error: Some("HTTP 500".into()),
        ..d.clone()
    };
    assert!(
        !store.record(&retry, 19_999).await.expect("record"),
        "another claim's lease records nothing"
    );
    assert!(store.record(&retry, 20_000).await.expect("record"));
    // Recorded: the lease is given back, due at its next time.
    let due = store.claim(12_000, 30_000, 10).await.expect("claim");
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].delivery, retry);
    let done = Delivery {
        attempts: 2,
        state: DeliveryState::Delivered,
        last_status: Some(204),
        last_error: None,
        finished_ms: Some(12_500),
        ..retry.clone()
    };
    assert!(store.record(&done, 30_000).await.expect("record"));
    assert!(
        !store.record(&retry, 30_000).await.expect("record"),
        "a late attempt does not undo a delivered one"
    );
    assert!(
        store
            .claim(99_000, 100_000, 10)
            .await
            .expect("claim")
            .is_empty(),
        "finished"
    );
    assert_eq!(
        store.deliveries(a1.id, 10).await.expect("deliveries"),
        vec![done]
    );

    // Only the newest finished deliveries are kept.
    for k in 0..60u64 {
        let mut d = delivery(a1.id, 20_000 + k as i64);
        d.state = DeliveryState::Dead;
        let next = AlertState {
            version: 6 + k,
            ..entered
        };
        assert!(store
            .transition(a1.id, 5 + k, &next, Some(&d))
            .await
            .expect("transition"));
    }
    let kept = store.deliveries(a1.id, 100).await.expect("deliveries");
    assert_eq!(kept.len(), 50);
    assert_eq!(kept[0].created_ms, 20_059, "newest first");

    // Deliveries of one millisecond come by id.
    let (mut x, mut y) = (delivery(a2.id, 30_000), delivery(a2.id, 30_000));
    if x.id > y.id {
        std::mem::swap(&mut x, &mut y);
    }
    for (from, d) in [(0, &y), (1, &x)] {
        let next = AlertState {
            version: from + 1,
            ..AlertState::default()
        };
        assert!(store
            .transition(a2.id, from, &next, Some(d))
            .await
            .expect("transition"));
    }
    let ids: Vec<Uuid> = store
        .deliveries(a2.id, 10)
        .await
        .expect("deliveries")
        .iter()
        .map(|d| d.id)
        .collect();
    assert_eq!(ids, [x.id, y.id], "created alike: by id");

    // Deleted by its owner only, with its deliveries.
    assert!(
        !store.delete(a1.id, bob).await.expect("delete"),
        "not bob's"
    );
    assert!(store.delete(a1.id, ann).await.expect("delete"));
    assert!(store.get(a1.id).await.expect("get").is_none());
    assert!(store
        .deliveries(a1.id, 10)
        .await
        .expect("deliveries")
        .is_empty());
    assert!(!store.delete(a1.id, ann).await.expect("delete"), "gone");
}
