//! Progress bars on stderr, only for a person watching: hidden whenever
//! stderr is not an interactive terminal (tests, cron, pipes, log files).

use indicatif::{ProgressBar, ProgressState, ProgressStyle};
use std::io::IsTerminal;
use std::time::Duration;

fn interactive() -> bool {
    std::io::stderr().is_terminal()
}

/// Items per second as a whole number (indicatif's `{per_sec}` shows four
/// decimals).
fn rate(state: &ProgressState, w: &mut dyn std::fmt::Write) {
    let _ = write!(w, "{:.0}/s", state.per_sec());
}

fn styled(pb: ProgressBar, template: &str) -> ProgressBar {
    if let Ok(style) = ProgressStyle::with_template(template) {
        pb.set_style(style.with_key("rate", rate));
    }
    pb.enable_steady_tick(Duration::from_millis(120));
    pb
}

/// Bytes downloaded: a bar when the length is known, a counter otherwise.
pub fn download(total: Option<u64>) -> ProgressBar {
    if !interactive() {
        return ProgressBar::hidden();
    }
    match total {
        Some(len) => styled(
            ProgressBar::new(len),
            "{spinner} download [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        ),
        None => styled(
            ProgressBar::new_spinner(),
            "{spinner} download {bytes} {bytes_per_sec}",
        ),
    }
}

/// A count of items with their rate, total unknown.
pub fn counter(what: &str) -> ProgressBar {
    if !interactive() {
        return ProgressBar::hidden();
    }
    styled(
        ProgressBar::new_spinner(),
        &format!("{{spinner}} {{human_pos}} {what} ({{rate}}) {{elapsed}}"),
    )
}

/// A count of items towards a known total.
pub fn bar(what: &str, total: u64) -> ProgressBar {
    if !interactive() {
        return ProgressBar::hidden();
    }
    styled(
        ProgressBar::new(total),
        &format!(
            "{{spinner}} [{{bar:30}}] {{human_pos}}/{{human_len}} {what} ({{rate}}) eta {{eta}}"
        ),
    )
}

/// Progress towards `total` in units finer than the work shown (the
/// backfill counts thousandths of a day, so its ETA moves file by file);
/// the message says what is done.
pub fn per_mille(what: &str, total: u64) -> ProgressBar {
    if !interactive() {
        return ProgressBar::hidden();
    }
    styled(
        ProgressBar::new(total),
        &format!("{{spinner}} {what} [{{bar:30}}] {{percent}}% {{msg}} ({{elapsed}}, eta {{eta}})"),
    )
}
