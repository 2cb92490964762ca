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
//!
//! Results hold users' queries' answers: files are created `0600` and
//! folders `0700` (on Unix), readable by the service's own user only.

use crate::db::DbError;
use airq_core::error::BackendError;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};
use uuid::Uuid;

/// Payloads up to this size stay in their database row: a file costs more
/// than a few pages of log.
pub const INLINE_MAX: usize = 16 * 1024;

/// A message file no row refers to is deleted once it is this old. A
/// writer creates the file a moment before the row that names it, so a
/// young file without a row is normal.
pub const ORPHAN_AGE: Duration = Duration::from_secs(600);

/// The same for result files, which wait longer for their row: a worker
/// writes a result's file, then its message waits in RequestReceive until a
/// gateway records it, which is as long as every gateway is down.
pub const RESULT_ORPHAN_AGE: Duration = Duration::from_secs(24 * 3600);

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
    fn orphan_age(self) -> Duration {
        match self {
            Kind::Message => ORPHAN_AGE,
            Kind::Result => RESULT_ORPHAN_AGE,
        }
    }

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

/// An I/O failure as the port's error: one a retry will not fix soon (no
/// space, no permission, a read-only file system) is
/// [`BackendError::Refused`], so a worker names it to its user instead of
/// retrying until the request is dead-lettered.
pub(crate) fn io_error(context: String, e: std::io::Error) -> BackendError {
    if is_permanent(&e) {
        return BackendError::Refused {
            what: context,
            reason: e.to_string(),
        };
    }
    BackendError::Remote {
        context,
        message: e.to_string(),
    }
}

fn is_permanent(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::StorageFull
            | ErrorKind::QuotaExceeded
            | ErrorKind::PermissionDenied
            | ErrorKind::ReadOnlyFilesystem
    )
}

/// A new file open for writing, readable by this user only.
fn create_private(path: &Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

/// A folder (and its parents), accessible to this user only.
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

impl Bodies {
    /// The folder for the database at `db`, created if missing.
    pub fn beside(db: &Path) -> Result<Bodies, BackendError> {
        let mut root = db.as_os_str().to_owned();
        root.push("-bodies");
        let bodies = Bodies { root: root.into() };
        for kind in [Kind::Message, Kind::Result] {
            let dir = bodies.root.join(kind.folder());
            create_private_dir(&dir)
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

    fn temporary(&self, kind: Kind) -> PathBuf {
        self.root
            .join(kind.folder())
            .join(format!(".{}.tmp", Uuid::new_v4()))
    }

    /// Writes a payload whole: to a temporary name, then renamed.
    pub fn write(&self, kind: Kind, name: &str, data: &[u8]) -> Result<(), BackendError> {
        let path = self.path(kind, name)?;
        let tmp = self.temporary(kind);
        create_private(&tmp)
            .and_then(|mut f| std::io::Write::write_all(&mut f, data))
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(|e| {
                let _ = std::fs::remove_file(&tmp);
                io_error(format!("writing {}", path.display()), e)
            })
    }

    /// Starts a payload written piece by piece ([`PayloadWriter`]); it is
    /// readable under `name` only once finished.
    pub fn create(&self, kind: Kind, name: &str) -> Result<PayloadWriter, BackendError> {
        let path = self.path(kind, name)?;
        let tmp = self.temporary(kind);
        let file =
            create_private(&tmp).map_err(|e| io_error(format!("creating {}", tmp.display()), e))?;
        Ok(PayloadWriter {
            file: std::io::BufWriter::with_capacity(64 * 1024, file),
            tmp,
            path,
            bytes: 0,
        })
    }

    /// A payload's size; `None` if the file does not exist.
    pub fn size(&self, kind: Kind, name: &str) -> Result<Option<u64>, BackendError> {
        let path = self.path(kind, name)?;
        match std::fs::metadata(&path) {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_error(format!("reading {}", path.display()), e)),
        }
    }

    /// Opens a payload for reading at `offset`; `None` if it does not exist.
    pub fn open_at(
        &self,
        kind: Kind,
        name: &str,
        offset: u64,
    ) -> Result<Option<std::fs::File>, BackendError> {
        use std::io::{Seek, SeekFrom};
        let path = self.path(kind, name)?;
        match std::fs::File::open(&path) {
            Ok(mut f) => {
                f.seek(SeekFrom::Start(offset))
                    .map_err(|e| io_error(format!("reading {}", path.display()), e))?;
                Ok(Some(f))
            }
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_error(format!("reading {}", path.display()), e)),
        }
    }

    /// Checks that a payload can be written now: creates and deletes a
    /// small file (a full disk or a read-only folder fails it).
    pub fn check_writable(&self) -> Result<(), BackendError> {
        let tmp = self.temporary(Kind::Result);
        // Not synced: a full disk refuses the write itself (the space is
        // reserved when written), and a probe must stay cheap.
        let written = create_private(&tmp)
            .and_then(|mut f| std::io::Write::write_all(&mut f, &[0u8; 4096]))
            .map_err(|e| io_error(format!("writing {}", tmp.display()), e));
        let _ = std::fs::remove_file(&tmp);
        written
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

    /// Deletes the files of `kind` older than its orphan age ([`ORPHAN_AGE`],
    /// [`RESULT_ORPHAN_AGE`]) for which
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
                .is_some_and(|age| age >= kind.orphan_age());
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

/// A payload being written: to a temporary file, renamed to its name by
/// [`PayloadWriter::finish`]; dropped unfinished, the temporary file is
/// deleted. Blocking: call it from a blocking thread.
pub struct PayloadWriter {
    file: std::io::BufWriter<std::fs::File>,
    tmp: PathBuf,
    path: PathBuf,
    bytes: u64,
}

impl PayloadWriter {
    pub fn write(&mut self, data: &[u8]) -> Result<(), BackendError> {
        std::io::Write::write_all(&mut self.file, data)
            .map_err(|e| io_error(format!("writing {}", self.path.display()), e))?;
        self.bytes += data.len() as u64;
        Ok(())
    }

    /// Makes the payload readable under its name; returns its size.
    pub fn finish(mut self) -> Result<u64, BackendError> {
        let flushed = std::io::Write::flush(&mut self.file)
            .and_then(|()| std::fs::rename(&self.tmp, &self.path));
        match flushed {
            Ok(()) => {
                // Renamed: nothing for Drop to delete.
                self.tmp = PathBuf::new();
                Ok(self.bytes)
            }
            Err(e) => Err(io_error(format!("writing {}", self.path.display()), e)),
        }
    }
}

impl Drop for PayloadWriter {
    fn drop(&mut self) {
        if !self.tmp.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&self.tmp);
        }
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

    #[cfg(unix)]
    #[test]
    fn payloads_are_private_to_this_user() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let bodies = Bodies::beside(&dir.path().join("a.db")).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&bodies.root().join("results")), 0o700);
        let name = result_file(Uuid::new_v4(), Uuid::new_v4());
        let mut w = bodies.create(Kind::Result, &name).unwrap();
        w.write(b"a,b\n").unwrap();
        assert_eq!(
            bodies.size(Kind::Result, &name).unwrap(),
            None,
            "invisible until finished"
        );
        assert_eq!(w.finish().unwrap(), 4);
        let path = bodies.root().join("results").join(&name);
        assert_eq!(mode(&path), 0o600);
        assert_eq!(bodies.size(Kind::Result, &name).unwrap(), Some(4));
        let other = Uuid::new_v4().to_string();
        bodies.write(Kind::Message, &other, b"x").unwrap();
        assert_eq!(mode(&bodies.root().join("messages").join(&other)), 0o600);
    }

    #[test]
    fn an_unfinished_payload_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let bodies = Bodies::beside(&dir.path().join("a.db")).unwrap();
        let name = result_file(Uuid::new_v4(), Uuid::new_v4());
        let mut w = bodies.create(Kind::Result, &name).unwrap();
        w.write(b"half").unwrap();
        drop(w);
        let left: Vec<_> = std::fs::read_dir(bodies.root().join("results"))
            .unwrap()
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }

    #[test]
    fn full_disks_and_denied_writes_are_refusals() {
        for kind in [ErrorKind::StorageFull, ErrorKind::PermissionDenied] {
            let e = io_error("writing x".into(), std::io::Error::from(kind));
            assert!(matches!(e, BackendError::Refused { .. }), "{e:?}");
        }
        let e = io_error(
            "writing x".into(),
            std::io::Error::from(ErrorKind::Interrupted),
        );
        assert!(matches!(e, BackendError::Remote { .. }), "{e:?}");
    }
}
