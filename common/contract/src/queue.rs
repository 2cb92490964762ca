//! The queue contract: SQS standard-queue semantics.

use airq_core::error::BackendError;
use airq_core::queue::Queue;
use async_trait::async_trait;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Makes fresh, empty queues for one check.
#[async_trait]
pub trait QueueHarness: Sync {
    /// A new queue whose messages move to the returned dead-letter queue
    /// after `max_receives` receives.
    async fn fresh(&self, max_receives: u32) -> (Arc<dyn Queue>, Arc<dyn Queue>);
}

/// A visibility timeout that passes within a test, yet outlasts the gap
/// between two calls on a busy machine (1 s did not, on moto with the
/// whole suite running: a message came back between a receive and the
/// next).
const SHORT: Duration = Duration::from_secs(3);
const LONG: Duration = Duration::from_secs(30);
const NO_WAIT: Duration = Duration::ZERO;

/// Runs every check in turn.
pub async fn run_all(h: &dyn QueueHarness) {
    send_receive_delete(h).await;
    in_flight_is_invisible_then_returns(h).await;
    only_the_latest_receipt_counts(h).await;
    change_visibility(h).await;
    dead_letter_after_max_receives(h).await;
    large_bodies_survive_dead_lettering(h).await;
    batches_deliver_each_message_once(h).await;
    long_poll_wakes_on_send(h).await;
}

/// Receives until one message arrives or `limit` passes.
async fn receive_one(
    q: &dyn Queue,
    visibility: Duration,
    limit: Duration,
) -> Option<airq_core::queue::Message> {
    let start = Instant::now();
    while start.elapsed() < limit {
        let got = q
            .receive(1, visibility, Duration::from_secs(1))
            .await
            .expect("receive");
        if let Some(m) = got.into_iter().next() {
            return Some(m);
        }
    }
    None
}

pub async fn send_receive_delete(h: &dyn QueueHarness) {
    let (q, _) = h.fresh(5).await;
    let id = q.send("hello, queue").await.expect("send");
    let m = receive_one(&*q, LONG, Duration::from_secs(10))
        .await
        .expect("a sent message is received");
    assert_eq!(m.body, "hello, queue", "body round-trips");
    assert_eq!(m.id, id, "message id is the one send returned");
    assert_eq!(m.receive_count, 1, "first receive counts 1");
    let d = q.depth().await.expect("depth");
    assert_eq!(d.visible, 0, "a received message is not visible: {d:?}");
    q.delete(&m.receipt)
        .await
        .expect("delete with the latest receipt");
    let again = q.receive(10, LONG, NO_WAIT).await.expect("receive");
    assert!(again.is_empty(), "a deleted message never comes back");
}

pub async fn in_flight_is_invisible_then_returns(h: &dyn QueueHarness) {
    let (q, _) = h.fresh(5).await;
    q.send("m").await.expect("send");
    let first = receive_one(&*q, SHORT, Duration::from_secs(10))
        .await
        .expect("received");
    let during = q.receive(10, SHORT, NO_WAIT).await.expect("receive");
    assert!(during.is_empty(), "invisible during its visibility timeout");
    // Comes back once the timeout passes, with a new receipt and count.
    let second = receive_one(&*q, LONG, Duration::from_secs(15))
        .await
        .expect("returns after the visibility timeout");
    assert_eq!(second.id, first.id);
    assert_eq!(second.receive_count, 2, "receives are counted");
    assert_ne!(
        second.receipt, first.receipt,
        "each receive has its own receipt"
    );
    q.delete(&second.receipt).await.expect("delete");
}

pub async fn only_the_latest_receipt_counts(h: &dyn QueueHarness) {
    let (q, _) = h.fresh(5).await;
    q.send("m").await.expect("send");
    let first = receive_one(&*q, SHORT, Duration::from_secs(10))
        .await
        .expect("received");
    let second = receive_one(&*q, LONG, Duration::from_secs(15))
        .await
        .expect("returns");
    match q.delete(&first.receipt).await {
        Err(BackendError::StaleReceipt) => {}
        other => panic!("deleting with a stale receipt must fail with StaleReceipt, got {other:?}"),
    }
    q.delete(&second.receipt)
        .await
        .expect("latest receipt deletes");
    let d = q.depth().await.expect("depth");
    assert_eq!((d.visible, d.in_flight), (0, 0), "queue empty after delete");
}

pub async fn change_visibility(h: &dyn QueueHarness) {
    let (q, _) = h.fresh(5).await;
    q.send("m").await.expect("send");
    let m = receive_one(&*q, LONG, Duration::from_secs(10))
        .await
        .expect("received");
    // Zero makes it visible again at once.
    q.change_visibility(&m.receipt, Duration::ZERO)
        .await
        .expect("change visibility");
    let back = receive_one(&*q, SHORT, Duration::from_secs(10))
        .await
        .expect("visible again after visibility 0");
    assert_eq!(back.id, m.id);
    // Extending keeps it hidden past its original timeout (a heartbeat).
    q.change_visibility(&back.receipt, LONG)
        .await
        .expect("extend");
    // Past the visibility it was received with.
    tokio::time::sleep(SHORT + Duration::from_millis(1500)).await;
    let hidden = q.receive(10, LONG, NO_WAIT).await.expect("receive");
    assert!(hidden.is_empty(), "an extended message stays invisible");
    let d = q.depth().await.expect("depth");
    assert_eq!(d.in_flight, 1, "it is in flight: {d:?}");
    q.delete(&back.receipt).await.expect("delete");
}

pub async fn dead_letter_after_max_receives(h: &dyn QueueHarness) {
    dead_letter_keeps(h, "poison").await;
}

/// A body larger than an SQS message (256 KiB), with quotes, newlines and
/// non-ASCII text: backends keep such bodies outside the queue proper.
pub fn large_body() -> String {
    let mut body = String::from("{\"csv\":\"id,place\\n");
    let mut i = 0;
    while body.len() < 300 * 1024 {
        body.push_str(&format!("{i},Zürich \\\"Bahnhof\\\"\\n"));
        i += 1;
    }
    body.push_str("\"}");
    body
}

/// A large body is delivered whole, and still whole after it has been
/// dead-lettered.
pub async fn large_bodies_survive_dead_lettering(h: &dyn QueueHarness) {
    let body = large_body();
    let (q, _) = h.fresh(5).await;
    q.send(&body).await.expect("send a large body");
    let m = receive_one(&*q, LONG, Duration::from_secs(10))
        .await
        .expect("a large message is received");
    assert!(m.body == body, "a large body round-trips intact");
    q.delete(&m.receipt).await.expect("delete a large message");
    dead_letter_keeps(h, &body).await;
}

async fn dead_letter_keeps(h: &dyn QueueHarness, body: &str) {
    let (q, dlq) = h.fresh(2).await;
    q.send(body).await.expect("send");
    for n in 1..=2 {
        let m = receive_one(&*q, LONG, Duration::from_secs(10))
            .await
            .expect("received");
        assert_eq!(m.receive_count, n);
        q.change_visibility(&m.receipt, Duration::ZERO)
            .await
            .expect("return it");
    }
    // The third receive finds it over the limit: it goes to the DLQ.
    let start = Instant::now();
    let mut moved = None;
    while start.elapsed() < Duration::from_secs(20) && moved.is_none() {
        let got = q
            .receive(10, LONG, Duration::from_secs(1))
            .await
            .expect("receive");
        assert!(
            got.is_empty(),
            "a message over its receive limit is not delivered again"
        );
        moved = dlq
            .receive(1, LONG, Duration::from_secs(1))
            .await
            .expect("dlq receive")
            .into_iter()
            .next();
    }
    let moved = moved.expect("the message reaches the dead-letter queue");
    assert!(moved.body == body, "the dead letter keeps its body");
    dlq.delete(&moved.receipt).await.expect("delete from DLQ");
}

pub async fn batches_deliver_each_message_once(h: &dyn QueueHarness) {
    let (q, _) = h.fresh(5).await;
    for i in 0..15 {
        q.send(&format!("m{i}")).await.expect("send");
    }
    let mut seen = HashSet::new();
    let start = Instant::now();
    while seen.len() < 15 && start.elapsed() < Duration::from_secs(30) {
        let got = q
            .receive(10, LONG, Duration::from_secs(1))
            .await
            .expect("receive");
        assert!(got.len() <= 10, "at most the asked-for batch");
        for m in got {
            assert!(
                seen.insert(m.body.clone()),
                "{} delivered twice while in flight",
                m.body
            );
            q.delete(&m.receipt).await.expect("delete");
        }
    }
    assert_eq!(seen.len(), 15, "every message delivered");
}

pub async fn long_poll_wakes_on_send(h: &dyn QueueHarness) {
    let (q, _) = h.fresh(5).await;
    let sender = q.clone();
    let send = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        sender.send("late").await.expect("send");
    });
    let got = q
        .receive(1, LONG, Duration::from_secs(10))
        .await
        .expect("receive");
    send.await.expect("sender task");
    let m = got
        .into_iter()
        .next()
        .expect("a long poll returns a message sent while it waits");
    assert_eq!(m.body, "late");
    q.delete(&m.receipt).await.expect("delete");
}
