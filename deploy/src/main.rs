//! `airq-deploy`: runs airq on one machine (`up`), provisions its AWS
//! resources (`provision`, `destroy`) and manages API keys (`keys`).

#[cfg(feature = "aws")]
mod aws;
mod key_commands;
mod local;
mod supervisor;

use airq_cli::logging::LogArgs;
use anyhow::Context;
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
    #[cfg(feature = "aws")]
    /// Create (idempotently) the AWS resources of the aws backend:
    /// DynamoDB tables, SQS queues with dead-letter queues, the S3 bucket.
    /// Prints the settings the other binaries need.
    Provision(aws::ProvisionArgs),
    #[cfg(feature = "aws")]
    /// Delete the AWS resources `provision` created, data included, after
    /// confirmation.
    Destroy(aws::DestroyArgs),
    /// API keys: `create` (shows the key once), `list`, `revoke`; stored
    /// as hashes in the backend (`--backend embedded --db PATH` or
    /// `--backend aws`), where every gateway finds them.
    Keys(key_commands::KeysArgs),
}

fn main() -> anyhow::Result<()> {
    // First, before any thread: it may set environment variables.
    let (cli, renamed) = airq_cli::renamed::parse::<Cli>(local::RENAMED);
    cli.log.init();
    renamed.warn();
    tokio::runtime::Runtime::new()
        .context("starting the async runtime")?
        .block_on(run(cli))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Up(args) => local::up(args).await,
        #[cfg(feature = "aws")]
        Command::Provision(args) => aws::provision(args).await,
        #[cfg(feature = "aws")]
        Command::Destroy(args) => aws::destroy(args).await,
        Command::Keys(args) => key_commands::run(args).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from([
            "airq-deploy",
            "keys",
            "create",
            "--name",
            "ci",
            "--tier",
            "unlimited",
            "--db",
            "x.db",
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(cli.command, Command::Keys(_)));
    }
}
