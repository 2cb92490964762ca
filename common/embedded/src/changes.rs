//! The data version: how a reader in another process (a gateway's live
//! stream) learns which sensors' latest readings changed, without the
//! writer telling it anything.
//!
//! `data_version` holds one number, `n`, that grows by one with each write
//! transaction that changes any row of `latest`; each row of `latest` keeps
//! the `version` of the write that last changed it. Triggers set it, so
//! that every path that writes `latest` (the daily writer, the live tier,
//! migrations) is covered by one definition: after an insert, and after an
//! update that changed a column (a repeated feed rewrites rows with the
//! same values, which is no change), the row takes `n + 1`; the writer
//! then calls [`commit_version`] before it commits, which moves `n` to
//! `n + 1` when a row took it. Both land in one commit, so a reader that
//! reads `n` and the rows in one transaction sees a version and exactly
//! the changes up to it ([`crate::readings::latest_changes`]).
//!
//! The update trigger compares every column of `latest` but `version`, as
//! the table has them when it is created ([`create`]): a migration that
//! adds a column to `latest` calls [`create_triggers`] again.

use crate::db::DbError;
use rusqlite::Transaction;

/// Migration 7: the version row, each latest row's version (0 for rows
/// written before: older than any version a reader can name), the index a
/// reader of changes walks, and the triggers.
pub(crate) fn create(tx: &Transaction<'_>) -> Result<(), DbError> {
    tx.execute_batch(
        "CREATE TABLE data_version (
             one INTEGER PRIMARY KEY CHECK (one = 1),
             n   INTEGER NOT NULL
         );
         INSERT INTO data_version (one, n) VALUES (1, 0);
         ALTER TABLE latest ADD COLUMN version INTEGER NOT NULL DEFAULT 0;
         CREATE INDEX latest_by_version ON latest (version);",
    )?;
    create_triggers(tx)
}

/// (Re)creates the triggers that stamp a changed row of `latest` with the
/// version its write will commit.
pub(crate) fn create_triggers(tx: &Transaction<'_>) -> Result<(), DbError> {
    let columns: Vec<String> = {
        let mut stmt = tx.prepare("SELECT name FROM pragma_table_info('latest')")?;
        let names = stmt.query_map([], |r| r.get::<_, String>(0))?;
        names
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .filter(|c| c != "version")
            .collect()
    };
    let changed = columns
        .iter()
        .map(|c| format!("OLD.{c} IS NOT NEW.{c}"))
        .collect::<Vec<_>>()
        .join(" OR ");
    tx.execute_batch(&format!(
        "DROP TRIGGER IF EXISTS latest_inserted;
         DROP TRIGGER IF EXISTS latest_changed;
         CREATE TRIGGER latest_inserted AFTER INSERT ON latest BEGIN
             UPDATE latest SET version = (SELECT n + 1 FROM data_version)
             WHERE sensor_id = NEW.sensor_id;
         END;
         CREATE TRIGGER latest_changed AFTER UPDATE ON latest WHEN {changed} BEGIN
             UPDATE latest SET version = (SELECT n + 1 FROM data_version)
             WHERE sensor_id = NEW.sensor_id;
         END;"
    ))?;
    Ok(())
}

/// Moves the data version on when this transaction changed a latest row;
/// called by each writer of `latest` just before it commits.
pub(crate) fn commit_version(tx: &Transaction<'_>) -> Result<(), DbError> {
    tx.execute(
        "UPDATE data_version SET n = n + 1
         WHERE EXISTS (SELECT 1 FROM latest INDEXED BY latest_by_version WHERE version = n + 1)",
        [],
    )?;
    Ok(())
}
