//! `airq-deploy provision` and `airq-deploy destroy`: everything the AWS
//! backend needs, created idempotently or removed after confirmation.
//! Credentials and region come from the standard AWS configuration chain.
//!
//! With `--stack NAME` both work on airq's CloudFormation stack
//! (`cloudformation.rs`), the way to run airq on AWS; without it they
//! create or delete only the data plane (tables, queues, bucket) by direct
//! API calls (`airq_deploy::provision`), for emulators and development.

use crate::cloudformation::{self, DataPlane, StackArgs};
use airq_aws::{AwsArgs, AwsClients, ResourceNames};
use airq_aws::{MigrateOptions, MigrateProgress};
use airq_deploy::provision::{self, Billing, ProvisionSpec};
use anyhow::{bail, Context};
use std::io::{BufRead, IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The receives before dead-lettering, and the days result objects are
/// kept, when not given.
const DEFAULT_MAX_RECEIVES: u32 = 3;
const DEFAULT_RESULT_OBJECT_DAYS: i32 = 8;

#[derive(Debug, clap::Args)]
pub struct ProvisionArgs {
    #[command(flatten)]
    pub aws: AwsArgs,

    /// Receives after which a request that keeps failing moves to its
    /// dead-letter queue (the queues' redrive policy) [default: 3; with
    /// --stack, the stack's current value].
    #[arg(long, env = "AIRQ_MAX_RECEIVES")]
    pub max_receives: Option<u32>,

    /// Provisioned capacity `READ,WRITE` (units per second, for each table
    /// and each index) instead of on-demand billing (not with --stack: the
    /// template's tables are on demand).
    #[arg(long, env = "AIRQ_PROVISIONED_CAPACITY", value_parser = parse_capacity,
          conflicts_with = "stack")]
    pub provisioned: Option<(i64, i64)>,

    /// Days after which the bucket deletes result objects that no gateway
    /// purged (keep it above the gateways' --result-ttl) [default: 8; with
    /// --stack, the stack's current value].
    #[arg(long, env = "AIRQ_RESULT_OBJECT_DAYS",
          value_parser = clap::value_parser!(i32).range(1..=3650))]
    pub result_object_days: Option<i32>,

    #[command(flatten)]
    pub stack: StackArgs,
}

#[derive(Debug, clap::Args)]
pub struct DestroyArgs {
    #[command(flatten)]
    pub aws: AwsArgs,

    /// Do not ask for confirmation.
    #[arg(long)]
    pub yes: bool,

    /// Delete the CloudFormation stack NAME (made by `provision --stack
    /// NAME`) and everything it made, data included: empties its bucket
    /// (CloudFormation cannot delete one with objects in it), deletes the
    /// stack and waits until it is gone. Without --stack, destroy deletes
    /// the resources plain `provision` made, and refuses if a stack owns
    /// any of them.
    #[arg(long, value_name = "NAME", value_parser = cloudformation::parse_stack_name)]
    pub stack: Option<String>,

    /// Also delete the tables that outlive a stack (readings and API keys:
    /// `DeletionPolicy: Retain`, deletion protection on), turning their
    /// protection off first. Without it, `destroy --stack` keeps them and
    /// says so, and a plain `destroy` refuses a protected table.
    #[arg(long)]
    pub delete_data: bool,

    /// How long to wait for the stack's deletion.
    #[arg(long, value_name = "DURATION", default_value = "60m",
          value_parser = airq_cli::duration::parse)]
    pub stack_timeout: Duration,
}

#[derive(Debug, clap::Args)]
pub struct MigrateArgs {
    #[command(flatten)]
    pub aws: AwsArgs,

    /// The CloudFormation stack that owns the table (made by `provision
    /// --stack NAME`): its template adds the by_cell index, so migrate only
    /// checks that the stack update has done so. Without it, migrate adds
    /// the index itself, unless CloudFormation's tags say a stack owns the
    /// table.
    #[arg(long, value_name = "NAME", value_parser = cloudformation::parse_stack_name)]
    pub stack: Option<String>,

    /// Parallel scan segments (each reads its share of the table; more
    /// spread the writes over more day partitions, and go faster).
    #[arg(long, default_value_t = 4,
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub segments: u32,

    /// Item updates in flight per segment.
    #[arg(long, default_value_t = 16,
          value_parser = clap::value_parser!(u32).range(1..=256))]
    pub concurrency: u32,

    /// At the end of a complete run, mark the table so that readings are
    /// written packed from then on (smaller items, faster writes). Only
    /// once every gateway, worker and master of the deployment runs a
    /// release that reads packed items: an older one drops them from
    /// country answers and fails on them elsewhere.
    #[arg(long, env = "AIRQ_MIGRATE_PACK_READINGS")]
    pub pack_readings: bool,
}

/// One progress line.
fn progress_line(p: &MigrateProgress) -> String {
    format!(
        "scanned {} items: {} readings ({} upgraded, {} already current, {} rewritten by \
         others meanwhile, {} not upgradable), {} sensors",
        p.scanned, p.readings, p.upgraded, p.current, p.raced, p.problems, p.sensors
    )
}

pub async fn migrate(args: MigrateArgs) -> anyhow::Result<()> {
    let clients = args
        .aws
        .clients()
        .await
        .context("loading the AWS configuration")?;
    let table = args.aws.readings_table_name();
    eprintln!("migrating {table} on {}", clients.location());
    let options = MigrateOptions {
        segments: args.segments,
        concurrency: args.concurrency as usize,
        pack_readings: args.pack_readings,
    };
    // A line every few seconds: a large table takes a while, and the
    // operator should see it move. The end of the scan is always shown,
    // once.
    let last = Mutex::new((Instant::now(), String::new()));
    let progress = |p: &MigrateProgress| {
        let mut last = last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let line = format!(
            "{}{}",
            progress_line(p),
            if p.scan_done { " (scan done)" } else { "" }
        );
        if (p.scan_done || last.0.elapsed() >= Duration::from_secs(5)) && line != last.1 {
            eprintln!("{line}");
            *last = (Instant::now(), line);
        }
    };
    let report =
        airq_deploy::migrate::migrate(&clients, &table, args.stack.as_deref(), &options, &progress)
            .await
            .context("migrating")?;
    print!("{}", report.index);
    let i = &report.items;
    println!("{}", progress_line(i));
    println!(
        "latest readings: {} new, {} moved forward, {} already up to date; {} per-sensor latest items of an older airq deleted",
        i.latest.created, i.latest.replaced, i.latest.kept, i.old_latest_deleted
    );
    if i.packing {
        println!(
            "new readings are written packed from now on (releases before packing cannot read \
             them: going back to one means restoring the table)"
        );
    }
    if i.problems > 0 {
        println!(
            "{} readings could not be upgraded (queries that read them fail until they are \
             repaired or deleted); the first ones:",
            i.problems
        );
        for k in &i.problem_keys {
            println!("  {k}");
        }
        bail!("{} readings could not be upgraded", i.problems);
    }
    println!("migrated.");
    Ok(())
}

fn parse_capacity(s: &str) -> Result<(i64, i64), String> {
    let (r, w) = s
        .split_once(',')
        .ok_or_else(|| format!("{s:?}: expected READ,WRITE (e.g. 50,25)"))?;
    let unit = |v: &str| -> Result<i64, String> {
        v.trim()
            .parse::<i64>()
            .ok()
            .filter(|n| *n >= 1)
            .ok_or_else(|| format!("{v:?}: capacity units are whole numbers of at least 1"))
    };
    Ok((unit(r)?, unit(w)?))
}

/// The environment the other binaries need to use what was provisioned.
fn settings(aws: &AwsArgs, names: &ResourceNames, region: Option<&str>) -> String {
    let mut out = String::from("export AIRQ_BACKEND=aws\n");
    if let Some(r) = region {
        out += &format!("export AWS_REGION={r}\n");
    }
    if let Some(e) = aws.endpoint_url.as_deref().filter(|e| !e.is_empty()) {
        out += &format!("export AIRQ_AWS_ENDPOINT_URL={e}\n");
    }
    if !aws.aws_prefix.is_empty() {
        out += &format!("export AIRQ_AWS_PREFIX={}\n", aws.aws_prefix);
    }
    let vars = [
        "AIRQ_READINGS_TABLE",
        "AIRQ_RESULTS_TABLE",
        "AIRQ_RECEIPTS_TABLE",
        "AIRQ_KEYS_TABLE",
        "AIRQ_ALERTS_TABLE",
    ];
    for ((var, value), default) in vars
        .into_iter()
        .zip(aws.table_flags())
        .zip(AwsArgs::default_names())
    {
        if value != default {
            out += &format!("export {var}={value}\n");
        }
    }
    out += &format!("export AIRQ_BUCKET={}\n", names.bucket);
    out
}

/// The AWS clients and the names of the resources they work on.
async fn connect(aws: &AwsArgs) -> anyhow::Result<(AwsClients, ResourceNames)> {
    let clients = aws
        .clients()
        .await
        .context("loading the AWS configuration")?;
    let names = aws.names(&clients).await.context("naming the resources")?;
    Ok((clients, names))
}

pub async fn provision(args: ProvisionArgs) -> anyhow::Result<()> {
    if args.stack.stack.is_some() {
        let defaults = AwsArgs::default_names();
        let renamed = args
            .aws
            .table_flags()
            .into_iter()
            .zip(defaults)
            .any(|(name, default)| name != default);
        if renamed || args.aws.bucket.is_some() {
            eprintln!(
                "note: with --stack the template names the tables and the bucket (from \
                 --aws-prefix); the table flags and --bucket are not used"
            );
        }
        let data = DataPlane {
            max_receives: args.max_receives,
            result_object_days: args.result_object_days,
        };
        return cloudformation::provision(&args.aws, &args.stack, &data).await;
    }
    let (clients, names) = connect(&args.aws).await?;
    let spec = ProvisionSpec {
        names: names.clone(),
        max_receives: args.max_receives.unwrap_or(DEFAULT_MAX_RECEIVES),
        billing: match args.provisioned {
            None => Billing::OnDemand,
            Some((read, write)) => Billing::Provisioned { read, write },
        },
        result_object_days: args
            .result_object_days
            .unwrap_or(DEFAULT_RESULT_OBJECT_DAYS),
    };
    eprintln!("provisioning airq on {}", clients.location());
    let report = provision::provision(&clients, &spec)
        .await
        .context("provisioning")?;
    print!("{report}");
    // An existing readings table that just got the place index still holds
    // readings of the old shape, which this version refuses until they are
    // migrated.
    let indexed = report.steps.iter().any(|s| {
        s.kind == "index"
            && s.action == provision::Action::Created
            && s.name.ends_with(airq_aws::schema::BY_CELL_INDEX)
    });
    if indexed {
        println!(
            "note: {} existed before place queries: run `airq-deploy migrate` to fill in its \
             readings and build the latest readings",
            names.readings_table
        );
    }
    println!(
        "{}",
        if report.changed() {
            "provisioned."
        } else {
            "everything was already there; nothing changed."
        }
    );
    println!("\n# settings for airq-master, airq-gateway and airq-worker:");
    print!("{}", settings(&args.aws, &names, clients.region()));
    Ok(())
}

/// Asks for "yes" on the terminal after showing `intro` and `items`;
/// refuses without a terminal.
fn confirm(intro: &str, items: &[String]) -> anyhow::Result<()> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        bail!("refusing to delete without confirmation: pass --yes");
    }
    eprintln!("{intro}");
    for item in items {
        eprintln!("  {item}");
    }
    eprint!("Type 'yes' to delete: ");
    std::io::stderr().flush().ok();
    let mut answer = String::new();
    stdin
        .lock()
        .read_line(&mut answer)
        .context("reading the confirmation")?;
    if answer.trim() != "yes" {
        bail!("not confirmed; nothing deleted");
    }
    Ok(())
}

pub async fn destroy(args: DestroyArgs) -> anyhow::Result<()> {
    if let Some(stack) = &args.stack {
        let yes = args.yes;
        return cloudformation::destroy(
            &args.aws,
            stack,
            args.stack_timeout,
            args.delete_data,
            |intro, items| {
                if yes {
                    Ok(())
                } else {
                    confirm(intro, items)
                }
            },
        )
        .await;
    }
    let (clients, names) = connect(&args.aws).await?;
    let mut all: Vec<String> = names.tables().into_iter().cloned().collect();
    all.push(names.bucket.clone());
    for (q, dlq) in names.queues() {
        all.extend([q, dlq]);
    }
    let cfn = cloudformation::client(&clients).await;
    let owner = cloudformation::owner_of(&cfn, &all).await.context(
        "checking that no CloudFormation stack owns these resources (a plain destroy \
         deletes only resources no stack owns; it needs cloudformation:ListStacks and \
         ListStackResources)",
    )?;
    if let Some((stack, resource)) = owner {
        bail!(
            "{resource} belongs to the CloudFormation stack {stack}; deleting it here would \
             leave the stack saying it still has it. Destroy the stack instead: \
             airq-deploy destroy --stack {stack}"
        );
    }
    if !args.yes {
        let mut items: Vec<String> = names
            .tables()
            .into_iter()
            .map(|t| format!("table  {t}"))
            .collect();
        for (q, dlq) in names.queues() {
            items.push(format!("queue  {q}, {dlq}"));
        }
        items.push(format!("bucket {} (and its contents)", names.bucket));
        confirm(
            &format!(
                "This deletes, on {}, every reading, result, API key and queued message:",
                clients.location()
            ),
            &items,
        )?;
    }
    let report = provision::destroy(&clients, &names, args.delete_data)
        .await
        .context("destroying")?;
    print!("{report}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capacity() {
        assert_eq!(parse_capacity("50,25"), Ok((50, 25)));
        assert_eq!(parse_capacity(" 5 , 1 "), Ok((5, 1)));
        assert!(parse_capacity("5").is_err());
        assert!(parse_capacity("0,1").is_err());
        assert!(parse_capacity("a,b").is_err());
    }
}
