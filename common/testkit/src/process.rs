//! The binaries a test starts: killed when dropped (a failing test leaves
//! no process behind), their stdout read line by line by a thread (a
//! child never blocks on a full pipe), a line waited for with a bound,
//! and a graceful stop.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A child process, killed (and reaped) when dropped if it still runs.
pub struct Running(pub Child);

impl Running {
    pub fn child(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

/// The lines of `child`'s piped stdout, read by a thread for as long as
/// the child writes.
///
/// # Panics
/// When stdout is not piped: a mistake in the test.
pub fn stdout_lines(child: &mut Child) -> mpsc::Receiver<String> {
    let out = child.stdout.take().expect("stdout is piped");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Reads `lines` until `found` returns something for one, at most
/// `limit`; on timeout (or the child closing its stdout first) the lines
/// seen, for the test's message.
pub fn wait_for_line<T>(
    lines: &mpsc::Receiver<String>,
    limit: Duration,
    mut found: impl FnMut(&str) -> Option<T>,
) -> Result<T, Vec<String>> {
    let deadline = Instant::now() + limit;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(line) = lines.recv_timeout(left) else {
            return Err(seen);
        };
        if let Some(t) = found(&line) {
            return Ok(t);
        }
        seen.push(line);
    }
}

/// SIGTERM, then up to 30 s for `child` to stop by itself, then SIGKILL.
pub fn stop_gracefully(child: &mut Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
}
