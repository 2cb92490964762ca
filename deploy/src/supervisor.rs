//! Supervised child processes: started, restarted with backoff when they
//! crash, and stopped with SIGTERM (then SIGKILL after a grace period).

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;

/// A child that ran this long before exiting is restarted at once; one that
/// exits sooner waits an increasing backoff, so a crash loop cannot spin.
const HEALTHY_RUN: Duration = Duration::from_secs(30);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
pub struct ChildSpec {
    /// Name in logs, e.g. `worker-2`.
    pub name: String,
    pub program: PathBuf,
    pub args: Vec<String>,
}

impl ChildSpec {
    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        cmd
    }
}

/// Each line a child prints on stdout, tagged with the child's name.
pub type Lines = tokio::sync::mpsc::UnboundedSender<(String, String)>;

/// Runs `spec` until `stop` is cancelled, restarting it whenever it exits.
pub async fn supervise(spec: ChildSpec, stop: CancellationToken, lines: Lines, grace: Duration) {
    let mut backoff = Duration::from_millis(500);
    loop {
        let started = Instant::now();
        let mut child = match spec.command().spawn() {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(child = %spec.name, program = %spec.program.display(), error = %e, "cannot start");
                if wait_or_stop(&stop, backoff).await {
                    return;
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        tracing::info!(child = %spec.name, pid = child.id(), "started");
        forward_stdout(&spec.name, &mut child, lines.clone());
        tokio::select! {
            status = child.wait() => {
                let status = status.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string());
                if stop.is_cancelled() {
                    return;
                }
                if started.elapsed() >= HEALTHY_RUN {
                    backoff = Duration::from_millis(500);
                }
                tracing::warn!(child = %spec.name, %status, restart_in = ?backoff, "exited; restarting");
                if wait_or_stop(&stop, backoff).await {
                    return;
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
            _ = stop.cancelled() => {
                terminate(&spec.name, &mut child, grace).await;
                return;
            }
        }
    }
}

/// Sleeps for `d`; returns true if `stop` was cancelled meanwhile.
async fn wait_or_stop(stop: &CancellationToken, d: Duration) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => false,
        _ = stop.cancelled() => true,
    }
}

fn forward_stdout(name: &str, child: &mut Child, lines: Lines) {
    if let Some(out) = child.stdout.take() {
        let name = name.to_owned();
        tokio::spawn(async move {
            let mut reader = BufReader::new(out).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                if lines.send((name.clone(), line)).is_err() {
                    break;
                }
            }
        });
    }
}

/// SIGTERM, then SIGKILL if the child is still running after `grace`.
pub async fn terminate(name: &str, child: &mut Child, grace: Duration) {
    let Some(pid) = child.id() else { return };
    if let Err(e) = kill(Pid::from_raw(pid as i32), Signal::SIGTERM) {
        tracing::warn!(child = %name, error = %e, "SIGTERM failed");
    }
    match tokio::time::timeout(grace, child.wait()).await {
        Ok(Ok(status)) => tracing::info!(child = %name, %status, "stopped"),
        _ => {
            tracing::warn!(child = %name, ?grace, "did not stop in time; killing");
            let _ = child.kill().await;
        }
    }
}
