//! What the worker's tests share: a temporary SQLite file holding the
//! sample, and the gateway's side of the queues and result store, played
//! in-process.

#![allow(dead_code)]

use airq_contract::sample::sample;
use airq_core::job::{Job, JobResult, REQUEST_RECEIVE, REQUEST_SEND};
use airq_core::queue::Queue;
use airq_core::results::{ResultStore, Submission, DEFAULT_MAX_RESULT_ROWS};
use airq_core::{ClientId, Query, Reading};
use airq_embedded::{Db, Redrive, SqliteQueue, SqliteReadingStore, SqliteResultStore};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// Receives after which the test's queues dead-letter a message.
pub const MAX_RECEIVES: u32 = 2;

pub struct Env {
    pub dir: tempfile::TempDir,
    pub db_path: PathBuf,
    pub db: Db,
    pub readings: Vec<Reading>,
}

impl Env {
    pub fn new() -> Env {
        let dir = tempfile::tempdir().expect("tempdir");
        let db_path = dir.path().join("airq.db");
        let db = Db::open(&db_path).expect("db");
        let readings = sample();
        SqliteReadingStore::new(db.clone())
            .put_batch_blocking(&readings)
            .expect("load");
        Env {
            dir,
            db_path,
            db,
            readings,
        }
    }

    pub fn queue(&self, name: &str) -> SqliteQueue {
        SqliteQueue::new(
            self.db.clone(),
            name,
            Some(Redrive {
                dead_letter: format!("{name}-dlq"),
                max_receives: MAX_RECEIVES,
            }),
        )
    }

    pub fn results(&self) -> SqliteResultStore {
        SqliteResultStore::new(self.db.clone())
    }

    /// Creates a result record and enqueues its job, as a gateway would.
    pub async fn submit(&self, query: &Query, request_id: Option<&str>) -> Uuid {
        let id = Uuid::new_v4();
        let submission = Submission {
            client: ClientId::address("127.0.0.1".parse().expect("address")),
            request_id: request_id.map(str::to_owned),
        };
        self.results()
            .create(id, query, Duration::from_secs(3600), &submission)
            .await
            .expect("create");
        let job = Job::new(
            id,
            query,
            DEFAULT_MAX_RESULT_ROWS,
            request_id.map(str::to_owned),
        );
        self.queue(REQUEST_SEND)
            .send(&job.to_json())
            .await
            .expect("send");
        id
    }

    /// Every result posted to RequestReceive within `limit`, stopping
    /// early once `want` have arrived.
    pub async fn collect(&self, want: usize, limit: Duration) -> Vec<JobResult> {
        let q = self.queue(REQUEST_RECEIVE);
        let start = Instant::now();
        let mut out = Vec::new();
        while out.len() < want && start.elapsed() < limit {
            for m in q
                .receive(10, Duration::from_secs(30), Duration::from_millis(500))
                .await
                .expect("receive")
            {
                out.push(JobResult::parse(&m.body).expect("a JobResult"));
                q.delete(&m.receipt).await.expect("delete");
            }
        }
        out
    }
}
