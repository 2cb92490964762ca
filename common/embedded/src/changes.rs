//! The data version: how a reader in another process (a gateway's live
//! stream) learns which sensors' latest readings changed, without the
//! writer telling it anything.
//!
//! `data_version` holds one number, `n`, that grows by one with each write
//! transaction that changes any row of `latest`; each row of `latest` keeps
//! the `version` of the write that last changed it. A writer of `latest`
//! takes [`next_version`] (`n + 1`; it holds the write lock, so no other
//! writer takes the same) and its statements stamp a row with it only when
//! they change a column (a repeated feed rewrites rows with the same
//! values, which is no change: see `readings::latest_changed`), so a
//! statement that wrote a row changed it; before it commits,
//! [`commit_version`] moves `n` on when a row took it. Both land in one
//! commit, so a reader that reads `n` and the rows in one transaction sees
//! a version and exactly the changes up to it
//! ([`crate::readings::latest_changes`]).
//!
//! Triggers did the stamping at first (migration 7), and an index on
//! `version` served the readers: a second write of every changed row and
//! an index update, which made a daily ingestion of a million readings
//! 50 % slower (BENCHMARKS.md). Migration 9 drops both; a reader scans
//! `latest` (one row per sensor) once per change instead.

use crate::db::DbError;
use rusqlite::Transaction;

/// Migration 7: the version row and each latest row's version (0 for rows
/// written before: older than any version a reader can name). (It created
/// stamping triggers and an index on `version` too, which migration 9,
/// [`drop_triggers`], removes from files made meanwhile.)
pub(crate) fn create(tx: &Transaction<'_>) -> Result<(), DbError> {
    tx.execute_batch(
        "CREATE TABLE data_version (
             one INTEGER PRIMARY KEY CHECK (one = 1),
             n   INTEGER NOT NULL
         );
         INSERT INTO data_version (one, n) VALUES (1, 0);
         ALTER TABLE latest ADD COLUMN version INTEGER NOT NULL DEFAULT 0;",
    )?;
    Ok(())
}

/// Migration 9: the writers stamp versions themselves, and no index is
/// kept on them.
pub(crate) fn drop_triggers(tx: &Transaction<'_>) -> Result<(), DbError> {
    tx.execute_batch(
        "DROP TRIGGER IF EXISTS latest_inserted;
         DROP TRIGGER IF EXISTS latest_changed;
         DROP INDEX IF EXISTS latest_by_version;",
    )?;
    Ok(())
}

/// The version this write transaction stamps the latest rows it changes
/// with.
pub(crate) fn next_version(tx: &Transaction<'_>) -> Result<i64, DbError> {
    Ok(tx.query_row("SELECT n + 1 FROM data_version", [], |r| r.get(0))?)
}

/// Moves the data version on to `version` when this transaction `changed`
/// a latest row (stamped it with `version`); called by each writer of
/// `latest` before it commits.
pub(crate) fn commit_version(
    tx: &Transaction<'_>,
    version: i64,
    changed: bool,
) -> Result<(), DbError> {
    if changed {
        tx.execute("UPDATE data_version SET n = ?1", [version])?;
    }
    Ok(())
}
