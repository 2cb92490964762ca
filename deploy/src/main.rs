//! `airq-deploy`: runs airq on one machine (`up`) and provisions its AWS
//! resources (`provision`, `destroy`).

#[cfg(feature = "aws")]
mod aws;
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
    }
}
