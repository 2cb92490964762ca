//! Log set-up shared by every binary: human-readable by default, JSON lines
//! with `--log-format json`; the level comes from `RUST_LOG` (default info).

use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Human,
    Json,
}

#[derive(Debug, Clone, clap::Args)]
pub struct LogArgs {
    /// Log line format.
    #[arg(
        long,
        env = "AIRQ_LOG_FORMAT",
        value_enum,
        default_value = "human",
        global = true
    )]
    pub log_format: LogFormat,
}

impl LogArgs {
    /// Installs the global subscriber, writing to stderr, at level info
    /// unless `RUST_LOG` says otherwise.
    pub fn init(&self) {
        self.init_at("info")
    }

    /// [`LogArgs::init`] with another default level (a tool whose output is
    /// its report logs only warnings by default).
    pub fn init_at(&self, default_level: &str) {
        let filter =
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
        let builder = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr);
        let _ = match self.log_format {
            // Colours only for a terminal: no escape codes in log files.
            LogFormat::Human => builder
                .with_ansi(std::io::stderr().is_terminal())
                .try_init(),
            LogFormat::Json => builder.json().try_init(),
        };
    }
}
