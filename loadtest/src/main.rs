//! `airq-loadtest`: see the crate documentation and `--help`.

use airq_loadtest::cli::{Cli, Command};
use airq_loadtest::{app, bench};
use clap::Parser;
use std::process::ExitCode;

/// Exit status when a threshold (or a benchmark target) failed.
const THRESHOLD_FAILED: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    cli.log.init_at("warn");
    let threads = match &cli.command {
        Some(Command::Run(a)) => a.threads,
        Some(Command::Bench(_)) => None,
        None => cli.run.threads,
    };
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    rt.enable_all();
    if let Some(n) = threads.filter(|n| *n > 0) {
        rt.worker_threads(n);
    }
    let rt = match rt.build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async {
        match cli.command {
            Some(Command::Run(args)) => app::run_command(&args).await,
            Some(Command::Bench(args)) => bench::bench(*args).await,
            None => app::run_command(&cli.run).await,
        }
    });
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(THRESHOLD_FAILED),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
