//! Flags and environment variables that were renamed, kept working for one
//! release with a warning, so a script or unit file written for the old
//! name does not break on upgrade.
//!
//! [`apply`] rewrites the old names into the new ones before clap parses
//! the command line; it must run first thing in `main`, before any thread
//! is started (it sets environment variables).

use std::ffi::OsString;

/// One renamed setting. An old value that was a bare number in `unit`
/// (`1000` milliseconds) is passed on as a duration (`1000ms`).
#[derive(Debug, Clone, Copy)]
pub struct Renamed {
    pub old_flag: &'static str,
    pub old_env: Option<&'static str>,
    pub new_flag: &'static str,
    pub new_env: Option<&'static str>,
    pub unit: &'static str,
}

/// The worker's `--shutdown-timeout`: the gateway's name for the same idea
/// is `--shutdown-grace`.
pub const SHUTDOWN_TIMEOUT: Renamed = Renamed {
    old_flag: "--shutdown-timeout",
    old_env: Some("AIRQ_SHUTDOWN_TIMEOUT"),
    new_flag: "--shutdown-grace",
    new_env: Some("AIRQ_SHUTDOWN_GRACE"),
    unit: "",
};

/// `airq-deploy up --grace`.
pub const GRACE: Renamed = Renamed {
    old_flag: "--grace",
    old_env: None,
    new_flag: "--shutdown-grace",
    new_env: None,
    unit: "",
};

/// The master's `--retry-base-ms` (an integer of milliseconds).
pub const RETRY_BASE_MS: Renamed = Renamed {
    old_flag: "--retry-base-ms",
    old_env: Some("AIRQ_FETCH_RETRY_BASE_MS"),
    new_flag: "--retry-base",
    new_env: Some("AIRQ_FETCH_RETRY_BASE"),
    unit: "ms",
};

/// The master's `--timeout-secs` (an integer of seconds).
pub const TIMEOUT_SECS: Renamed = Renamed {
    old_flag: "--timeout-secs",
    old_env: Some("AIRQ_FETCH_TIMEOUT_SECS"),
    new_flag: "--fetch-timeout",
    new_env: Some("AIRQ_FETCH_TIMEOUT"),
    unit: "s",
};

/// Warnings about old names in use, to log once logging is set up.
#[derive(Debug, Default)]
#[must_use = "log the warnings with Notes::warn once logging is set up"]
pub struct Notes(Vec<String>);

impl Notes {
    pub fn warn(self) {
        for note in self.0 {
            tracing::warn!("{note}");
        }
    }

    pub fn as_slice(&self) -> &[String] {
        &self.0
    }
}

fn with_unit(value: &str, unit: &str) -> String {
    if !unit.is_empty() && !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        format!("{value}{unit}")
    } else {
        value.to_owned()
    }
}

/// The command line `args` with every old flag of `renamed` replaced by
/// its new name.
pub fn rewrite_args(
    args: impl IntoIterator<Item = OsString>,
    renamed: &[Renamed],
    notes: &mut Notes,
) -> Vec<OsString> {
    let mut out = Vec::new();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let text = arg.to_string_lossy();
        if text == "--" {
            out.push(arg);
            out.extend(args);
            break;
        }
        let found = renamed.iter().find_map(|r| {
            if text == r.old_flag {
                Some((r, None))
            } else {
                text.strip_prefix(r.old_flag)
                    .and_then(|rest| rest.strip_prefix('='))
                    .map(|v| (r, Some(v.to_owned())))
            }
        });
        match found {
            None => out.push(arg),
            Some((r, inline)) => {
                notes.0.push(format!(
                    "{} is deprecated and will be removed in the next release; use {}",
                    r.old_flag, r.new_flag
                ));
                out.push(r.new_flag.into());
                let value = match inline {
                    Some(v) => Some(v),
                    None => args.next().map(|v| v.to_string_lossy().into_owned()),
                };
                if let Some(v) = value {
                    out.push(with_unit(&v, r.unit).into());
                }
            }
        }
    }
    out
}

/// Rewrites old flags on this process's command line and copies old
/// environment variables to their new names (unless the new one is set,
/// which wins). Returns the command line to parse and the warnings.
///
/// Call it before starting any thread: it sets environment variables.
pub fn apply(renamed: &[Renamed]) -> (Vec<OsString>, Notes) {
    let mut notes = Notes::default();
    let args = rewrite_args(std::env::args_os(), renamed, &mut notes);
    for r in renamed {
        let (Some(old), Some(new)) = (r.old_env, r.new_env) else {
            continue;
        };
        let Some(value) = std::env::var_os(old) else {
            continue;
        };
        if std::env::var_os(new).is_some() {
            notes.0.push(format!(
                "{old} is deprecated and ignored because {new} is set; remove {old}"
            ));
            continue;
        }
        notes.0.push(format!(
            "{old} is deprecated and will be removed in the next release; use {new}"
        ));
        // Sound: no other thread exists yet (see above).
        std::env::set_var(new, with_unit(&value.to_string_lossy(), r.unit));
    }
    (args, notes)
}

/// [`apply`], then clap: the binary's settings and the warnings to log.
pub fn parse<T: clap::Parser>(renamed: &[Renamed]) -> (T, Notes) {
    let (args, notes) = apply(renamed);
    (T::parse_from(args), notes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewrite(args: &[&str]) -> (Vec<String>, usize) {
        let mut notes = Notes::default();
        let out = rewrite_args(
            args.iter().map(OsString::from),
            &[SHUTDOWN_TIMEOUT, RETRY_BASE_MS, TIMEOUT_SECS],
            &mut notes,
        );
        (
            out.into_iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect(),
            notes.0.len(),
        )
    }

    #[test]
    fn old_flags_become_new_ones_with_their_unit() {
        let (out, notes) = rewrite(&[
            "bin",
            "--retry-base-ms",
            "20",
            "--timeout-secs=5",
            "--shutdown-timeout",
            "30s",
        ]);
        assert_eq!(
            out,
            [
                "bin",
                "--retry-base",
                "20ms",
                "--fetch-timeout",
                "5s",
                "--shutdown-grace",
                "30s"
            ]
        );
        assert_eq!(notes, 3);
    }

    #[test]
    fn other_arguments_are_untouched() {
        let (out, notes) = rewrite(&["bin", "--retry-base", "2s", "--", "--timeout-secs"]);
        assert_eq!(out, ["bin", "--retry-base", "2s", "--", "--timeout-secs"]);
        assert_eq!(notes, 0);
        // A value that is not a bare number keeps its own unit.
        let (out, _) = rewrite(&["bin", "--retry-base-ms", "1s"]);
        assert_eq!(out, ["bin", "--retry-base", "1s"]);
    }
}
