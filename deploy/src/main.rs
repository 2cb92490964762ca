//! `airq-deploy`: runs and provisions airq.

mod local;
mod supervisor;

use airq_common::logging::LogArgs;
use clap::{Parser, Subcommand};

/// Runs the airq stack.
#[derive(Debug, Parser)]
#[command(name = "airq-deploy", version)]
struct Cli {
    #[command(flatten)]
    log: LogArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start master, gateway and workers on this machine (embedded backend)
    /// as supervised processes; Ctrl-C stops them all.
    Up(local::UpArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    cli.log.init();
    match cli.command {
        Command::Up(args) => local::up(args).await,
    }
}
