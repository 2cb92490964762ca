//! The SQLite file: connection pool, pragmas and schema.

use crate::bells::Bells;
use crate::bodies::{Bodies, Kind};
use airq_core::error::BackendError;
use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::{Connection, Transaction};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// How long a connection waits for another process's write lock before
/// failing. Writers hold it for one batch (milliseconds), so this is generous.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// How much of the database file each connection reads through a memory
/// map (SQLite's `mmap_size`); reads beyond it use `pread`.
pub const MMAP_BYTES: u64 = 256 * 1024 * 1024;

/// Pause between two tries for a lock another connection holds.
const BUSY_PAUSE: Duration = Duration::from_micros(500);

/// Waits for a lock held by another connection (or process) in short,
/// even pauses, giving up after about [`BUSY_TIMEOUT`].
///
/// SQLite's own `busy_timeout` handler backs off up to 100 ms per try,
/// which is right for rare contention but not for ours: gateways, workers
/// and the master all commit small transactions (queue messages, results)
/// many times a second, each holding the lock for well under a
/// millisecond, so a waiter that sleeps 50–100 ms after losing a race adds
/// that to a user's query for nothing.
fn wait_for_lock(tries: i32) -> bool {
    let max_tries = BUSY_TIMEOUT.as_micros() / BUSY_PAUSE.as_micros();
    if u128::try_from(tries).unwrap_or(u128::MAX) >= max_tries {
        return false;
    }
    std::thread::sleep(BUSY_PAUSE);
    true
}

const SCHEMA: &str = "
-- Migration 4 adds the US EPA AQI, EAQI and grid cell columns, the index
-- by cell and the `latest` table (see `readings::migrate_to_indices_and_latest`).
CREATE TABLE IF NOT EXISTS readings (
    ts          INTEGER NOT NULL,
    sensor_id   INTEGER NOT NULL,
    id          INTEGER,
    sensor_type TEXT    NOT NULL,
    loc_id      INTEGER,
    loc_country TEXT    NOT NULL,
    loc_lat     TEXT    NOT NULL,
    loc_long    TEXT    NOT NULL,
    loc_alt     TEXT    NOT NULL,
    p1          TEXT,
    p2          TEXT,
    aqi         INTEGER NOT NULL,
    PRIMARY KEY (ts, sensor_id)
) WITHOUT ROWID;
-- A query with a country walks this index; one without walks the primary key.
-- Both are in (time, sensor) order, the order results are returned in.
CREATE INDEX IF NOT EXISTS readings_by_country ON readings (loc_country, ts, sensor_id);

-- Every queue's messages. Times are Unix milliseconds.
CREATE TABLE IF NOT EXISTS queue_messages (
    seq           INTEGER PRIMARY KEY,
    queue         TEXT    NOT NULL,
    id            TEXT    NOT NULL UNIQUE,
    body          TEXT    NOT NULL,
    sent_at       INTEGER NOT NULL,
    visible_at    INTEGER NOT NULL,
    receive_count INTEGER NOT NULL DEFAULT 0,
    receipt       TEXT    UNIQUE
);
CREATE INDEX IF NOT EXISTS queue_messages_ready ON queue_messages (queue, visible_at, seq);

CREATE TABLE IF NOT EXISTS results (
    id         TEXT    PRIMARY KEY,
    state      TEXT    NOT NULL,
    query      TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    rows       INTEGER,
    csv        TEXT,
    error      TEXT
);
CREATE INDEX IF NOT EXISTS results_by_expiry ON results (expires_at);
";

/// One change of the schema, for files made before it.
enum Migration {
    /// Statements run as one batch.
    Sql(&'static str),
    /// Rust code, for changes SQL alone cannot make (values only the domain
    /// computes, such as a reading's indices). It runs in the migration's
    /// transaction, so a file is migrated entirely or not at all.
    Rust(fn(&Transaction<'_>) -> Result<(), DbError>),
}

/// Changes to [`SCHEMA`] for files made before them, in order; the file's
/// `user_version` counts how many it has. A new file is made by [`SCHEMA`]
/// and every step, so old and new files end in the same schema.
const MIGRATIONS: &[Migration] = &[
    // 1: payloads larger than `bodies::INLINE_MAX` live in files (see
    // `bodies`): a message row says whether its body is in one, a result
    // row names its CSV file.
    Migration::Sql(
        "ALTER TABLE queue_messages ADD COLUMN body_file INTEGER NOT NULL DEFAULT 0;
     ALTER TABLE results ADD COLUMN csv_file TEXT;",
    ),
    // 2: API keys (only their SHA-256, see `airq_core::keys`), and who
    // submitted each result, with the index that counts a client's
    // pending results (the cap on queued work) without reading the rest.
    // Results made before have no client and are never counted.
    Migration::Sql(
        "CREATE TABLE IF NOT EXISTS api_keys (
         hash       TEXT    PRIMARY KEY,
         id         TEXT    NOT NULL UNIQUE,
         name       TEXT    NOT NULL,
         tier       TEXT    NOT NULL,
         limits     TEXT,
         created_at INTEGER NOT NULL,
         revoked_at INTEGER
     ) WITHOUT ROWID;
     ALTER TABLE results ADD COLUMN client TEXT;
     -- `state` is in the columns too, so that the count reads only the
     -- index (SQLite checks the partial index's WHERE again otherwise).
     CREATE INDEX IF NOT EXISTS results_pending_by_client ON results (client, expires_at, state)
         WHERE state IN ('queued', 'running');",
    ),
    // 3: the request id (`X-Request-Id`) of each result's submit, so that
    // one id follows a query from submit to download. Results made before
    // have none.
    Migration::Sql("ALTER TABLE results ADD COLUMN request_id TEXT;"),
    // 4: the US EPA AQI and the EAQI beside the DAQI, each reading's grid
    // cell with an index for place filters, and the latest reading of each
    // sensor (see `readings::migrate_to_indices_and_latest`).
    Migration::Rust(crate::readings::migrate_to_indices_and_latest),
    // 5: how many measurements a reading averages, for the daily means of
    // the archive backfill; NULL for a reading as the feed sent it.
    Migration::Sql(
        "ALTER TABLE readings ADD COLUMN samples INTEGER;
         ALTER TABLE latest ADD COLUMN samples INTEGER;",
    ),
    // 6: the live tier: the 5-minute readings and the hourly series (see
    // `live`).
    Migration::Rust(crate::live::create_tables),
    // 7: the data version, which tells readers in other processes which
    // latest readings changed (see `changes`).
    Migration::Rust(crate::changes::create),
    // 8: alerts and their webhook deliveries (see `alerts`).
    Migration::Rust(crate::alerts::create_tables),
    // 9: the writers of `latest` stamp its versions themselves (see
    // `changes`): the triggers and index migration 7 made go.
    Migration::Rust(crate::changes::drop_triggers),
    // 10: the versions of the days and of their answer segments (see
    // `segments`).
    Migration::Rust(crate::segments::create_tables),
    // 11: each reading's quality flags and its station's humidity and
    // temperature (see `airq_core::quality`, `airq_core::air`), in every
    // table of readings; readings stored before have none.
    Migration::Rust(crate::readings::add_quality_columns),
    // 12: what each hour's 5-minute readings say of its quality, from which
    // its flags and air are assessed, filled from the 5-minute readings
    // kept (see `live::add_quality_sums`).
    Migration::Rust(crate::live::add_quality_sums),
];

/// Brings the schema up to date, in one write transaction so that two
/// processes opening a new file at once do not both migrate it.
fn migrate(conn: &mut Connection) -> Result<(), DbError> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let done = usize::try_from(version).unwrap_or(0);
    // A file a newer airq migrated may lack what this one expects (an
    // index a later migration dropped, say): refuse it rather than fail
    // later, half-way through a write.
    if done > MIGRATIONS.len() {
        return Err(DbError(BackendError::Schema(format!(
            "this database file has schema {done}, newer than this airq's {}: \
             it was opened by a newer airq; run that one (migrations only go forward)",
            MIGRATIONS.len()
        ))));
    }
    for step in MIGRATIONS.iter().skip(done) {
        match step {
            Migration::Sql(sql) => tx.execute_batch(sql)?,
            Migration::Rust(run) => run(&tx)?,
        }
    }
    if done < MIGRATIONS.len() {
        tx.pragma_update(None, "user_version", MIGRATIONS.len() as i64)?;
    }
    tx.commit()?;
    Ok(())
}

/// An error inside this backend. `?` turns rusqlite's and r2d2's errors
/// into it (they cannot convert into the port's [`BackendError`] directly:
/// neither type is this crate's), and `?` at a port turns it into the
/// [`BackendError`] it carries.
#[derive(Debug)]
pub struct DbError(pub BackendError);

impl From<rusqlite::Error> for DbError {
    fn from(e: rusqlite::Error) -> Self {
        use rusqlite::ErrorCode::{CannotOpen, DiskFull, PermissionDenied, ReadOnly};
        // Retrying will not help these soon: say so (see BackendError::Refused).
        if let rusqlite::Error::SqliteFailure(f, _) = &e {
            if matches!(f.code, DiskFull | ReadOnly | PermissionDenied | CannotOpen) {
                return DbError(BackendError::Refused {
                    what: "SQLite".into(),
                    reason: e.to_string(),
                });
            }
        }
        DbError(BackendError::Local {
            what: "SQLite",
            source: Box::new(e),
        })
    }
}

impl From<r2d2::Error> for DbError {
    fn from(e: r2d2::Error) -> Self {
        DbError(BackendError::Local {
            what: "SQLite connection pool",
            source: Box::new(e),
        })
    }
}

impl From<tokio::task::JoinError> for DbError {
    fn from(e: tokio::task::JoinError) -> Self {
        DbError(BackendError::Local {
            what: "background task failed",
            source: Box::new(e),
        })
    }
}

impl From<BackendError> for DbError {
    fn from(e: BackendError) -> Self {
        DbError(e)
    }
}

impl From<DbError> for BackendError {
    fn from(e: DbError) -> Self {
        e.0
    }
}

/// A shared handle on the database file. Cheap to clone.
#[derive(Clone)]
pub struct Db {
    pool: r2d2::Pool<SqliteConnectionManager>,
    path: PathBuf,
    bodies: Bodies,
    bells: Arc<Bells>,
}

impl Db {
    /// Opens (creating if needed) the database at `path` and its schema.
    pub fn open(path: impl AsRef<Path>) -> Result<Db, BackendError> {
        Ok(Self::open_inner(path.as_ref())?)
    }

    fn open_inner(path: &Path) -> Result<Db, DbError> {
        let path = path.to_path_buf();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| BackendError::Remote {
                context: format!("creating directory {}", dir.display()),
                message: e.to_string(),
            })?;
        }
        // WAL mode is a property of the file; set it once before pooling.
        let mut conn = Connection::open(&path)?;
        conn.busy_handler(Some(wait_for_lock))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.execute_batch(SCHEMA)?;
        migrate(&mut conn)?;
        drop(conn);
        let bodies = Bodies::beside(&path)?;

        let manager = SqliteConnectionManager::file(&path).with_init(|c| {
            c.busy_handler(Some(wait_for_lock))?;
            // NORMAL is durable across process crashes in WAL mode; only a
            // power loss can drop the last commits. Reads go through a
            // memory map of the file's first MMAP_BYTES rather than a
            // `pread` copy per page: under the random query mix the copies
            // and SQLite's page lookups were a fifth of the machine, and
            // the map took the sustained rate at p99 < 250 ms from about
            // 1,030 to 1,190 queries/s (BENCHMARKS.md). The mapped pages
            // are the OS's page cache, shared and reclaimable, but count
            // in a process's resident size.
            c.execute_batch(&format!(
                "PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; PRAGMA mmap_size = {MMAP_BYTES};"
            ))
        });
        let pool = r2d2::Pool::builder()
            .max_size(16)
            .min_idle(Some(1))
            .connection_timeout(BUSY_TIMEOUT)
            .build(manager)?;
        let bells = Arc::new(Bells::within(bodies.root()));
        Ok(Db {
            pool,
            path,
            bodies,
            bells,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Deletes the database at `path` with everything beside it (`-wal`,
    /// `-shm`, `-bodies/`); what does not exist is skipped. For tools that
    /// make throw-away stores. No process may have it open.
    pub fn remove_files(path: &Path) -> std::io::Result<()> {
        let beside = |suffix: &str| {
            let mut p = path.as_os_str().to_owned();
            p.push(suffix);
            PathBuf::from(p)
        };
        let gone = |r: std::io::Result<()>| match r {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        };
        for file in [path.to_path_buf(), beside("-wal"), beside("-shm")] {
            gone(std::fs::remove_file(file))?;
        }
        gone(std::fs::remove_dir_all(beside("-bodies")))?;
        gone(std::fs::remove_dir_all(crate::segments::folder(path)))
    }

    /// Where payloads too large for a row are kept.
    pub fn bodies(&self) -> &Bodies {
        &self.bodies
    }

    /// The queues' cross-process wake-ups.
    pub fn bells(&self) -> &Bells {
        &self.bells
    }

    /// Deletes the payload files no row refers to (left by a process that
    /// died between writing a file and its row, or a failed delete).
    /// Returns how many it deleted.
    pub fn sweep_bodies(&self, conn: &Connection) -> Result<u64, DbError> {
        let mut message = conn.prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM queue_messages WHERE id = ?1 AND body_file)",
        )?;
        let messages = self.bodies.sweep(Kind::Message, |name| {
            Ok(message.query_row([name], |r| r.get::<_, bool>(0))?)
        })?;
        let mut result = conn.prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM results WHERE id = ?1 AND csv_file = ?2)",
        )?;
        let results = self.bodies.sweep(Kind::Result, |name| {
            let id = name.split('.').next().unwrap_or_default();
            Ok(result.query_row([id, name], |r| r.get::<_, bool>(0))?)
        })?;
        Ok(messages + results)
    }

    /// Runs blocking database work on the blocking thread pool with a pooled
    /// connection, so async callers never block their executor.
    pub async fn run<T, F>(&self, f: F) -> Result<T, BackendError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, DbError> + Send + 'static,
    {
        let pool = self.pool.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = pool.get().map_err(DbError::from)?;
            Ok(f(&mut conn)?)
        })
        .await
        .map_err(DbError::from)?
    }

    /// A pooled connection for a caller already on a blocking thread.
    pub fn conn(&self) -> Result<r2d2::PooledConnection<SqliteConnectionManager>, BackendError> {
        Ok(self.pool.get().map_err(DbError::from)?)
    }
}
