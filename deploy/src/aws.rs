//! `airq-deploy provision` and `airq-deploy destroy`: everything the AWS
//! backend needs, created idempotently or removed after confirmation.
//! Credentials and region come from the standard AWS configuration chain.

use airq_aws::{AwsArgs, AwsClients, ResourceNames};
use airq_deploy::provision::{self, Billing, ProvisionSpec};
use anyhow::{bail, Context};
use std::io::{BufRead, IsTerminal, Write};

#[derive(Debug, clap::Args)]
pub struct ProvisionArgs {
    #[command(flatten)]
    pub aws: AwsArgs,

    /// Receives after which a request that keeps failing moves to its
    /// dead-letter queue (the queues' redrive policy).
    #[arg(long, env = "AIRQ_MAX_RECEIVES", default_value_t = 3)]
    pub max_receives: u32,

    /// Provisioned capacity `READ,WRITE` (units per second, for each table
    /// and each index) instead of on-demand billing.
    #[arg(long, env = "AIRQ_PROVISIONED_CAPACITY", value_parser = parse_capacity)]
    pub provisioned: Option<(i64, i64)>,

    /// Days after which the bucket deletes result objects that no gateway
    /// purged (keep it above the gateways' --result-ttl).
    #[arg(long, env = "AIRQ_RESULT_OBJECT_DAYS", default_value_t = 8,
          value_parser = clap::value_parser!(i32).range(1..=3650))]
    pub result_object_days: i32,
}

#[derive(Debug, clap::Args)]
pub struct DestroyArgs {
    #[command(flatten)]
    pub aws: AwsArgs,

    /// Do not ask for confirmation.
    #[arg(long)]
    pub yes: bool,
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
    let defaults = AwsArgs::default_names();
    for (var, value, default) in [
        ("AIRQ_READINGS_TABLE", &aws.readings_table, defaults[0]),
        ("AIRQ_RESULTS_TABLE", &aws.results_table, defaults[1]),
        ("AIRQ_RECEIPTS_TABLE", &aws.receipts_table, defaults[2]),
        ("AIRQ_KEYS_TABLE", &aws.keys_table, defaults[3]),
    ] {
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
    let (clients, names) = connect(&args.aws).await?;
    let spec = ProvisionSpec {
        names: names.clone(),
        max_receives: args.max_receives,
        billing: match args.provisioned {
            None => Billing::OnDemand,
            Some((read, write)) => Billing::Provisioned { read, write },
        },
        result_object_days: args.result_object_days,
    };
    eprintln!("provisioning airq on {}", clients.location());
    let report = provision::provision(&clients, &spec)
        .await
        .context("provisioning")?;
    print!("{report}");
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

pub async fn destroy(args: DestroyArgs) -> anyhow::Result<()> {
    let (clients, names) = connect(&args.aws).await?;
    if !args.yes {
        let stdin = std::io::stdin();
        if !stdin.is_terminal() {
            bail!("refusing to delete without confirmation: pass --yes");
        }
        eprintln!(
            "This deletes, on {}, every reading, result, API key and queued message:",
            clients.location()
        );
        for t in [
            &names.readings_table,
            &names.results_table,
            &names.receipts_table,
            &names.keys_table,
        ] {
            eprintln!("  table  {t}");
        }
        for (q, dlq) in names.queues() {
            eprintln!("  queue  {q}, {dlq}");
        }
        eprintln!("  bucket {} (and its contents)", names.bucket);
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
    }
    let report = provision::destroy(&clients, &names)
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
