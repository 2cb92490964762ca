//! Which days a backfill has finished, so that the next run skips them.
//!
//! A day is recorded once every file of it was read and every reading of it
//! is durable in the store: the writer records it when it reaches the day's
//! end marker, which follows the day's last batch in the one queue of
//! writes. The record is a small JSON file, by default beside the database
//! (`<db>.backfill.json`), rewritten whole after each finished day through a
//! temporary file, `fsync` and `rename`, so that a crash leaves the old
//! record or the new one, never half of one.
//!
//! A day is finished for a resolution and a set of types: a day done for
//! `sds011` is still to do for `sps30`, and a day done as daily means is
//! still to do as raw rows. `*` stands for every type (`--types all`).
//! Deleting the file (or `--force`) makes every day count as not done;
//! storing is idempotent, so doing a day again rewrites the same readings.

use super::{Resolution, TypeFilter};
use anyhow::Context as _;
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::path::{Path, PathBuf};

/// The file's format version.
const VERSION: u32 = 1;

/// Stands for every type in a day's record.
const EVERY_TYPE: &str = "*";

#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Record {
    about: String,
    version: u32,
    /// Resolution (`daily`, `raw`) → day → the types done.
    done: BTreeMap<String, BTreeMap<NaiveDate, BTreeSet<String>>>,
}

/// The finished days, in memory and on disk.
#[derive(Debug)]
pub struct State {
    path: PathBuf,
    record: Record,
}

impl State {
    /// Reads the record at `path`; a missing file is an empty record.
    pub fn load(path: &Path) -> anyhow::Result<State> {
        let record = match std::fs::read(path) {
            Ok(bytes) => {
                let record: Record = serde_json::from_slice(&bytes).with_context(|| {
                    format!(
                        "the backfill state {} is not a state file; \
                         move it away (or pass --force) to start afresh",
                        path.display()
                    )
                })?;
                if record.version != VERSION {
                    anyhow::bail!(
                        "the backfill state {} has version {}; this airq-master reads {VERSION}",
                        path.display(),
                        record.version
                    );
                }
                record
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Record::default(),
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("cannot read the backfill state {}", path.display()))
            }
        };
        Ok(State {
            path: path.to_owned(),
            record,
        })
    }

    /// An empty record, to be written at `path` (over whatever is there).
    pub fn empty(path: &Path) -> State {
        State {
            path: path.to_owned(),
            record: Record::default(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Days recorded, for any resolution.
    pub fn days_recorded(&self) -> usize {
        self.record.done.values().map(BTreeMap::len).sum()
    }

    /// `day` was finished at `resolution` for every type of `types`.
    pub fn is_done(&self, day: NaiveDate, resolution: Resolution, types: &TypeFilter) -> bool {
        let Some(done) = self
            .record
            .done
            .get(resolution.name())
            .and_then(|days| days.get(&day))
        else {
            return false;
        };
        if done.contains(EVERY_TYPE) {
            return true;
        }
        match types {
            TypeFilter::All => false,
            TypeFilter::Only(wanted) => wanted.iter().all(|t| done.contains(t)),
        }
    }

    /// Records `day` as finished and writes the record through.
    pub fn mark_done(
        &mut self,
        day: NaiveDate,
        resolution: Resolution,
        types: &TypeFilter,
    ) -> anyhow::Result<()> {
        let done = self
            .record
            .done
            .entry(resolution.name().to_owned())
            .or_default()
            .entry(day)
            .or_default();
        match types {
            TypeFilter::All => {
                done.clear();
                done.insert(EVERY_TYPE.to_owned());
            }
            TypeFilter::Only(wanted) if !done.contains(EVERY_TYPE) => {
                done.extend(wanted.iter().cloned());
            }
            TypeFilter::Only(_) => {}
        }
        self.save()
    }

    /// Writes the record atomically: a temporary file beside it, synced,
    /// renamed over it, and the directory synced so the rename lasts.
    fn save(&mut self) -> anyhow::Result<()> {
        self.record.version = VERSION;
        self.record.about = "Days airq-master backfill has stored completely, per resolution \
                             and sensor type; they are skipped by the next run. Delete a day \
                             (or pass --force) to do it again."
            .to_owned();
        let text = serde_json::to_vec_pretty(&self.record).context("encoding the state")?;
        let dir = match self.path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
            _ => PathBuf::from("."),
        };
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let mut tmp_name = self.path.file_name().unwrap_or_default().to_owned();
        tmp_name.push(".tmp");
        let tmp = dir.join(tmp_name);
        let written = (|| {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&text)?;
            f.write_all(b"\n")?;
            f.sync_all()?;
            std::fs::rename(&tmp, &self.path)?;
            // Not every platform can open a directory to sync it; the
            // rename is then as durable as that platform makes it.
            if let Ok(d) = std::fs::File::open(&dir) {
                let _ = d.sync_all();
            }
            std::io::Result::Ok(())
        })();
        written.with_context(|| format!("cannot write the backfill state {}", self.path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        s.parse().expect("a date")
    }

    #[test]
    fn days_are_done_per_resolution_and_types_and_survive_a_reload() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("sub/airq.db.backfill.json");
        let mut s = State::load(&path).expect("missing is empty");
        let sds = TypeFilter::parse("sds011").expect("types");
        let both = TypeFilter::parse("sds011,sps30").expect("types");
        assert!(!s.is_done(d("2025-10-15"), Resolution::Daily, &sds));
        s.mark_done(d("2025-10-15"), Resolution::Daily, &sds)
            .expect("saved");
        let s = State::load(&path).expect("reloads");
        assert!(s.is_done(d("2025-10-15"), Resolution::Daily, &sds));
        assert!(!s.is_done(d("2025-10-15"), Resolution::Daily, &both));
        assert!(!s.is_done(d("2025-10-15"), Resolution::Raw, &sds));
        assert!(!s.is_done(d("2025-10-15"), Resolution::Daily, &TypeFilter::All));
        assert!(!s.is_done(d("2025-10-16"), Resolution::Daily, &sds));

        let mut s = s;
        s.mark_done(d("2025-10-15"), Resolution::Daily, &TypeFilter::All)
            .expect("saved");
        let s = State::load(&path).expect("reloads");
        assert!(s.is_done(d("2025-10-15"), Resolution::Daily, &both));
        assert!(s.is_done(d("2025-10-15"), Resolution::Daily, &TypeFilter::All));
        assert_eq!(s.days_recorded(), 1);
        assert!(!dir.path().join("sub/airq.db.backfill.json.tmp").exists());
    }

    #[test]
    fn a_broken_state_file_is_an_error_not_a_fresh_start() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("state.json");
        std::fs::write(&path, "{ not json").expect("written");
        let e = State::load(&path).expect_err("refused");
        assert!(format!("{e:#}").contains("--force"), "{e:#}");
    }
}
