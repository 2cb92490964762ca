//! Large payloads (queue message bodies, result CSVs) as files beside the
//! SQLite file, in `<db>-bodies/`: the embedded twin of the S3 bucket the
//! AWS backend offloads to.
//!
//! Why not in the database: every byte written to SQLite goes through its
//! write-ahead log under the one write lock, and while readers keep scanning
//! the log cannot be reset, so it grows. A queued CSV used to be written
//! twice (as a RequestReceive message, then as the result), and under a
//! sustained load of random queries the log grew by about 60 MB/s. A file
//! is written once, outside the lock, and deleted when its row is.
//!
//! Names are built only from UUIDs this backend made (and parsed back as
//! UUIDs before use), so no outside input ever reaches a path. A file is
//! written under a temporary name and renamed, so a reader sees all of it or
//! none. Like the database in `synchronous = NORMAL`, files are not synced:
//! they survive a process crash, not a power loss.

use crate::db::DbError;
use airq_core::error::BackendError;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};
use uuid::Uuid;

/// Payloads up to this size stay in their database row: a file costs more
/// than a few pages of log.
pub const INLINE_MAX: usize = 16 * 1024;

/// A file no row refers to is deleted once it is this old. A writer
/// creates the file a moment before the row that names it, so a young file
/// without a row is normal.
pub const ORPHAN_AGE: Duration = Duration::from_secs(600);

/// The two kinds of payload, each in its own folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A queue message body; the file is named after the message id.
    Message,
    /// A result CSV; the file is `<result id>.<attempt id>.csv`, so two
    /// deliveries of one result never write the same file.
    Result,
}

impl Kind {
    fn folder(self) -> &'static str {
        match self {
            Kind::Message => "messages",
            Kind::Result => "results",
        }
    }
}

/// The folder of payload files. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Bodies {
    root: PathBuf,
}

/// The file name of a result CSV.
pub fn result_file(result: Uuid, attempt: Uuid) -> String {
    format!("{result}.{attempt}.csv")
}

/// Checks that a name read back from the database is one this module made:
/// a UUID, or two UUIDs and `.csv`. Anything else is refused rather than
/// joined to a path.
fn checked(kind: Kind, name: &str) -> Result<&str, BackendError> {
    let ok = match kind {
        Kind::Message => Uuid::parse_str(name).is_ok(),
        Kind::Result => name
            .strip_suffix(".csv")
            .and_then(|s| s.split_once('.'))
            .is_some_and(|(a, b)| Uuid::parse_str(a).is_ok() && Uuid::parse_str(b).is_ok()),
    };
    if ok {
        Ok(name)
    } else {
        Err(BackendError::Corrupt(format!(
            "{name:?} is not a {} file name this backend made",
            kind.folder()
        )))
    }
}

fn io_error(context: String, e: std::io::Error) -> BackendError {
    BackendError::Remote {
        context,
        message: e.to_string(),
    }
}

impl Bodies {
    /// The folder for the database at `db`, created if missing.
    pub fn beside(db: &Path) -> Result<Bodies, BackendError> {
        let mut root = db.as_os_str().to_owned();
        root.push("-bodies");
        let bodies = Bodies { root: root.into() };
        for kind in [Kind::Message, Kind::Result] {
            let dir = bodies.root.join(kind.folder());
            std::fs::create_dir_all(&dir)
                .map_err(|e| io_error(format!("creating {}", dir.display()), e))?;
        }
        Ok(bodies)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, kind: Kind, name: &str) -> Result<PathBuf, BackendError> {
        Ok(self.root.join(kind.folder()).join(checked(kind, name)?))
    }

    /// Writes a payload whole: to a temporary name, then renamed.
    pub fn write(&self, kind: Kind, name: &str, data: &[u8]) -> Result<(), BackendError> {
        let path = self.path(kind, name)?;
        let tmp = self
            .root
            .join(kind.folder())
            .join(format!(".{}.tmp", Uuid::new_v4()));
        std::fs::write(&tmp, data)
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(|e| {
                let _ = std::fs::remove_file(&tmp);
                io_error(format!("writing {}", path.display()), e)
            })
    }

    /// The payload as text; `None` if the file does not exist.
    pub fn read(&self, kind: Kind, name: &str) -> Result<Option<String>, BackendError> {
        let path = self.path(kind, name)?;
        match std::fs::read(&path) {
            Ok(bytes) => String::from_utf8(bytes).map(Some).map_err(|_| {
                BackendError::Corrupt(format!("{} is not UTF-8 text", path.display()))
            }),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_error(format!("reading {}", path.display()), e)),
        }
    }

    /// Deletes a payload; a missing file is not an error. Failures are
    /// logged, not returned: the orphan sweep retries them.
    pub fn remove(&self, kind: Kind, name: &str) {
        let path = match self.path(kind, name) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "not deleting a payload file");
                return;
            }
        };
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "could not delete a payload file; the orphan sweep will")
            }
        }
    }

    /// Deletes the files of `kind` older than [`ORPHAN_AGE`] for which
    /// `wanted(name)` says no row refers to them, and leftover temporary
    /// files. Returns how many it deleted.
    pub fn sweep(
        &self,
        kind: Kind,
        mut wanted: impl FnMut(&str) -> Result<bool, DbError>,
    ) -> Result<u64, DbError> {
        let dir = self.root.join(kind.folder());
        let entries = std::fs::read_dir(&dir)
            .map_err(|e| io_error(format!("listing {}", dir.display()), e))?;
        let now = SystemTime::now();
        let mut deleted = 0;
        for entry in entries.flatten() {
            let old = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| now.duration_since(t).ok())
                .is_some_and(|age| age >= ORPHAN_AGE);
            if !old {
                continue;
            }
            let name = entry.file_name();
            let name = name.to_string_lossy();
            // A temporary file this old belongs to a writer that died; a
            // name that is not ours was never written by this backend.
            let orphan = name.starts_with('.') || checked(kind, &name).is_err() || !wanted(&name)?;
            if orphan && std::fs::remove_file(entry.path()).is_ok() {
                deleted += 1;
            }
        }
        Ok(deleted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_names_this_backend_made_reach_a_path() {
        let id = Uuid::new_v4();
        assert!(checked(Kind::Message, &id.to_string()).is_ok());
        assert!(checked(Kind::Result, &result_file(id, Uuid::new_v4())).is_ok());
        for bad in [
            "../etc/passwd",
            "",
            "x.csv",
            &format!("{id}/../{id}"),
            &format!("{id}.csv"),
            &format!("../{id}.{id}.csv"),
        ] {
            assert!(checked(Kind::Message, bad).is_err(), "{bad:?}");
            assert!(checked(Kind::Result, bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn write_read_remove() {
        let dir = tempfile::tempdir().unwrap();
        let bodies = Bodies::beside(&dir.path().join("a.db")).unwrap();
        assert!(bodies.root().ends_with("a.db-bodies"));
        let name = Uuid::new_v4().to_string();
        assert_eq!(bodies.read(Kind::Message, &name).unwrap(), None);
        bodies
            .write(Kind::Message, &name, "héllo".as_bytes())
            .unwrap();
        assert_eq!(
            bodies.read(Kind::Message, &name).unwrap().as_deref(),
            Some("héllo")
        );
        bodies.remove(Kind::Message, &name);
        bodies.remove(Kind::Message, &name);
        assert_eq!(bodies.read(Kind::Message, &name).unwrap(), None);
        let left: Vec<_> = std::fs::read_dir(bodies.root().join("messages"))
            .unwrap()
            .collect();
        assert!(left.is_empty(), "no temporary file is left behind");
    }
}
