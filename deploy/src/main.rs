//! `airq-deploy`: runs airq on one machine (`up`), provisions its AWS
//! resources (`provision`, `destroy`) and manages API keys (`keys`).

#[cfg(feature = "aws")]
mod aws;
#[cfg(feature = "aws")]
mod cloudformation;
mod key_commands;
mod local;
#[cfg(feature = "aws")]
mod release;
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
    /// Run airq on AWS with `--stack NAME` (its CloudFormation stack, and
    /// with `--upload-release DIR` the binaries); without --stack, create
    /// only the data plane, for emulators and development.
    ///
    /// `provision --stack NAME` creates or updates airq's CloudFormation
    /// stack from the template built into this binary: the DynamoDB tables,
    /// SQS queues and S3 bucket, one least-privilege role per binary, and
    /// (unless `--compute false`) the instances, load balancer, worker
    /// scaling and alarms. It waits, printing the stack's events, then
    /// prints its outputs and the settings.
    ///
    /// Shipping binaries (`--upload-release DIR`) goes in three steps, in
    /// this order: the stack first (it owns the bucket), then the upload to
    /// s3://BUCKET/releases/VERSION/ARCH/, then an update of the stack with
    /// Release=VERSION, which its instances download at boot.
    ///
    /// Without --stack, provision creates (idempotently) only the data plane
    /// by direct API calls, without the template (DynamoDB tables, SQS
    /// queues with dead-letter queues, the S3 bucket): for emulators such as
    /// moto and for development. Both print the settings the other binaries
    /// need as `export` lines.
    Provision(Box<aws::ProvisionArgs>),
    #[cfg(feature = "aws")]
    /// Bring a readings table made by an earlier airq up to date, on a live
    /// deployment: the place index (`by_cell`) and, on every reading
    /// written before them, the US EPA AQI, the EAQI and the grid cell;
    /// then each sensor's latest reading.
    ///
    /// Without --stack the index is added here when missing (as `provision`
    /// does); with `--stack NAME` the stack's template adds it (update the
    /// stack first), and the stack's MigrateRole has every permission this
    /// needs. Safe to run again at any time (it only fills in what is
    /// missing and never moves a latest reading back), so an interrupted
    /// run is resumed by running it again. Progress goes to stderr, the
    /// report to stdout.
    Migrate(aws::MigrateArgs),
    #[cfg(feature = "aws")]
    /// Delete what `provision` created, data included, after confirmation:
    /// with `--stack NAME` the whole stack, else the data plane.
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
        Command::Provision(args) => aws::provision(*args).await,
        #[cfg(feature = "aws")]
        Command::Migrate(args) => aws::migrate(args).await,
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

    #[cfg(feature = "aws")]
    #[test]
    fn stack_flags_need_a_stack() {
        let cli = Cli::try_parse_from([
            "airq-deploy",
            "provision",
            "--stack",
            "airq",
            "--compute",
            "false",
            "--workers",
            "1:8",
            "--parameter",
            "OldestMessageAgeSeconds=600",
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        let Command::Provision(p) = cli.command else {
            panic!("provision")
        };
        assert_eq!(p.stack.compute, Some(false));
        assert_eq!(p.stack.workers.map(|w| w.max), Some(8));
        assert_eq!(p.stack.parameters.len(), 1);
        for without_stack in [
            &["provision", "--compute", "false"][..],
            &["provision", "--upload-release", "target/release"],
            &["provision", "--stack", "a", "--provisioned", "5,5"],
            &["provision", "--stack", "a", "--workers", "3:2:1"],
        ] {
            let args = std::iter::once("airq-deploy").chain(without_stack.iter().copied());
            assert!(Cli::try_parse_from(args).is_err(), "{without_stack:?}");
        }
        let cli = Cli::try_parse_from([
            "airq-deploy",
            "migrate",
            "--stack",
            "airq",
            "--aws-prefix",
            "prod-",
            "--segments",
            "8",
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        let Command::Migrate(m) = cli.command else {
            panic!("migrate")
        };
        assert_eq!(m.stack.as_deref(), Some("airq"));
        assert_eq!(m.aws.readings_table_name(), "prod-QualityAirTable");
        assert_eq!((m.segments, m.concurrency), (8, 16));
        assert!(Cli::try_parse_from(["airq-deploy", "migrate", "--segments", "0"]).is_err());
        let cli = Cli::try_parse_from(["airq-deploy", "destroy", "--stack", "airq", "--yes"])
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(cli.command, Command::Destroy(d) if d.stack.as_deref() == Some("airq")));
    }
}
