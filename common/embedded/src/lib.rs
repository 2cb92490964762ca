//! The embedded backend: every port on one SQLite file (WAL mode), so a
//! fresh machine needs no server and the master, gateways and workers of one
//! machine can share it as separate processes.

mod alerts;
mod bells;
pub mod bodies;
mod changes;
mod db;
mod keys;
mod live;
mod queue;
mod readings;
mod results;
pub mod segments;

pub use alerts::{SqliteAlertStore, KEPT_DELIVERIES};
pub use db::{Db, DbError};
pub use keys::SqliteKeyStore;
pub use queue::{Redrive, SqliteQueue};
pub use readings::{SqliteReadingStore, PRUNE_BATCH};
pub use results::SqliteResultStore;
