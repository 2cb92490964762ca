//! Doorbells: a process that sends to a queue wakes the processes waiting
//! on it, at once, instead of leaving them to find the message at their next
//! poll.
//!
//! Why: a queued answer crosses two queues between processes (the request
//! to a worker, its outcome back to a gateway). With polling alone each hop
//! waited half a poll on average, and a short poll cost every idle process
//! a steady share of a core (10 ms: about 2 % of a core for a gateway and a
//! worker; BENCHMARKS.md). A file change is the one cross-process signal
//! every platform watches for us: after its commit a sender writes a byte to
//! the queue's bell, `<db>-bodies/bells/<queue>`; each process watches that
//! folder (inotify on Linux, through the `notify` crate: one thread and one
//! inotify instance per store a process has open, started by its first
//! waiting consumer) and wakes its consumers of that queue, all of them: a
//! message goes to the first to claim it, the others look and go back to
//! sleep.
//!
//! Polling stays, slower, as the safety net for what rings no bell: a
//! message whose visibility timeout runs out (a crashed worker's, a retry's
//! pause), a sender of an older version. An overflowed event queue wakes
//! every queue. Where the watch cannot start (inotify limits, a platform
//! whose only watcher polls) or stops (its folder deleted) a consumer polls
//! at the old, short interval.
//!
//! Bell names are queue names, which this process configures; one that is
//! not a plain name (`A-Z a-z 0-9 _ -`) never becomes a path, and its
//! consumers poll.

use notify::{EventKindMask, RecommendedWatcher, RecursiveMode, Watcher, WatcherKind};
use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use tokio::sync::Notify;

/// Each queue's in-process wake-up, by queue name.
type Waiters = Arc<Mutex<HashMap<String, Arc<Notify>>>>;

pub struct Bells {
    folder: PathBuf,
    waiters: Waiters,
    /// The folder's watch, started by the first waiting consumer; `None`
    /// when it could not start (then consumers poll at the short interval).
    watch: OnceLock<Option<RecommendedWatcher>>,
    /// False once the watched folder is gone (its watch with it).
    alive: Arc<AtomicBool>,
}

/// A consumer's wake-up for one queue, and whether sends from other
/// processes ring it too (else only this process's sends do).
pub struct Waiter {
    pub notify: Arc<Notify>,
    pub watched: bool,
}

impl Bells {
    /// The bells of the store whose payload folder is `bodies_root`; the
    /// folder is made when first rung or watched.
    pub fn within(bodies_root: &Path) -> Bells {
        Bells {
            folder: bodies_root.join("bells"),
            waiters: Arc::default(),
            watch: OnceLock::new(),
            alive: Arc::new(AtomicBool::new(true)),
        }
    }

    /// The wake-up of `queue`'s consumers in this process, starting the
    /// folder's watch if it is not yet started.
    pub fn waiter(&self, queue: &str) -> Waiter {
        let notify = notify_of(&self.waiters, queue);
        let started = self.watch.get_or_init(|| self.start_watch()).is_some();
        Waiter {
            notify,
            watched: started && self.alive.load(Ordering::Relaxed) && plain(queue),
        }
    }

    /// Wakes `queue`'s consumers: this process's directly, the others'
    /// through the bell. Call after the commit that made a message visible.
    /// A bell that cannot be rung is logged and left: consumers still poll.
    pub fn ring(&self, queue: &str) {
        if let Some(n) = self.waiters.lock().ok().and_then(|w| w.get(queue).cloned()) {
            n.notify_waiters();
        }
        if !plain(queue) {
            return;
        }
        // Written at offset 0 every time: the file stays one byte, and the
        // write is the change a watcher sees (inotify's IN_MODIFY).
        let bell = self.folder.join(queue);
        let open = || {
            std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .open(&bell)
        };
        // The folder is made once, when a ring first finds it missing, not
        // looked for at every send.
        let rung = match open() {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(&self.folder).and_then(|()| open())
            }
            other => other,
        }
        .and_then(|mut file| file.write_all(b"\n"));
        if let Err(e) = rung {
            tracing::debug!(queue, error = %e, folder = %self.folder.display(),
                "could not ring a queue's bell; its consumers in other processes find the message at their next poll");
        }
    }

    fn start_watch(&self) -> Option<RecommendedWatcher> {
        if RecommendedWatcher::kind() == WatcherKind::PollWatcher {
            // Scanning the folder would be a slower poll than the queue's.
            tracing::info!(
                "no file events on this platform; waiting consumers poll every few milliseconds"
            );
            return None;
        }
        let (waiters, alive) = (self.waiters.clone(), self.alive.clone());
        let started = std::fs::create_dir_all(&self.folder)
            .and_then(|()| std::fs::canonicalize(&self.folder))
            .map_err(notify::Error::io)
            .and_then(|folder| {
                // Events name the folder by its absolute path.
                let (watched, folder) = (folder.clone(), folder);
                // A write to a bell, a bell made, and the folder's removal.
                let config = notify::Config::default().with_event_kinds(
                    EventKindMask::MODIFY_DATA | EventKindMask::CREATE | EventKindMask::REMOVE,
                );
                let mut watcher = RecommendedWatcher::new(
                    move |event: notify::Result<notify::Event>| {
                        wake(&waiters, &alive, &folder, event)
                    },
                    config,
                )?;
                watcher.watch(&watched, RecursiveMode::NonRecursive)?;
                Ok(watcher)
            });
        match started {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!(folder = %self.folder.display(), error = %e,
                    "cannot watch the queues' bells; waiting consumers poll every few milliseconds instead");
                None
            }
        }
    }
}

fn notify_of(waiters: &Waiters, queue: &str) -> Arc<Notify> {
    match waiters.lock() {
        Ok(mut w) => w.entry(queue.to_owned()).or_default().clone(),
        // A thread panicked holding the map: this consumer gets a wake-up
        // nothing rings, and finds its messages by polling.
        Err(_) => Arc::new(Notify::new()),
    }
}

/// The watch's handler (on its thread): wakes the consumers of the queue
/// whose bell changed, or of every queue when events may have been lost or
/// the folder is gone (then consumers go back to the short poll).
fn wake(
    waiters: &Waiters,
    alive: &AtomicBool,
    folder: &Path,
    event: notify::Result<notify::Event>,
) {
    if let Ok(e) = &event {
        if e.kind.is_remove() && e.paths.iter().any(|p| p == folder) {
            alive.store(false, Ordering::Relaxed);
            tracing::warn!(folder = %folder.display(),
                "the queues' bells folder was removed; waiting consumers poll every few milliseconds until restarted");
        }
    }
    let Ok(w) = waiters.lock() else { return };
    match event {
        Ok(event) if !event.need_rescan() && alive.load(Ordering::Relaxed) => {
            for path in &event.paths {
                let queue = path.file_name().and_then(|n| n.to_str());
                if let Some(n) = queue.and_then(|q| w.get(q)) {
                    n.notify_waiters();
                }
            }
        }
        // An overflow or an error: a spurious wake-up costs one look.
        _ => w.values().for_each(|n| n.notify_waiters()),
    }
}

/// Whether a queue name can name its bell file as it is.
fn plain(queue: &str) -> bool {
    (1..=80).contains(&queue.len())
        && queue
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn only_plain_names_become_files() {
        assert!(plain("RequestSend") && plain("RequestSend-dlq") && plain("a_b"));
        for name in ["", "../x", "a/b", "a.b", ".", "..", "é", &"x".repeat(81)] {
            assert!(!plain(name), "{name:?}");
        }
    }

    /// Two `Bells` on one folder stand for two processes: a ring on one
    /// wakes a waiter on the other, through the file system alone.
    #[tokio::test]
    async fn a_ring_wakes_a_waiter_of_another_store_handle() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (consumer, sender) = (Bells::within(dir.path()), Bells::within(dir.path()));
        let waiter = consumer.waiter("RequestSend");
        assert!(waiter.watched, "the watch starts on this machine");
        let other = consumer.waiter("RequestReceive");
        let woken = waiter.notify.notified();
        let not_woken = other.notify.notified();
        sender.ring("RequestSend");
        tokio::time::timeout(Duration::from_secs(10), woken)
            .await
            .expect("the ring in the other handle wakes the waiter");
        // The other queue's consumers sleep on: a bounded wait sees nothing.
        assert!(
            tokio::time::timeout(Duration::from_millis(300), not_woken)
                .await
                .is_err(),
            "a bell wakes its own queue only"
        );
        // A name that is not plain rings nothing outside the process.
        sender.ring("../RequestSend");
        assert!(!dir.path().join("RequestSend").exists());
        assert_eq!(
            std::fs::read(dir.path().join("bells/RequestSend")).expect("bell"),
            b"\n",
            "the bell stays one byte"
        );
        // The folder deleted under a running process: its consumers are
        // woken and go back to the short poll (bounded wait for the event).
        let woken = waiter.notify.notified();
        std::fs::remove_dir_all(dir.path().join("bells")).expect("remove");
        tokio::time::timeout(Duration::from_secs(10), woken)
            .await
            .expect("the removal wakes the consumers");
        assert!(!consumer.waiter("RequestSend").watched);
    }
}
