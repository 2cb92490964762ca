//! `airq-deploy provision --stack NAME` and `airq-deploy destroy --stack
//! NAME`: airq on AWS as one CloudFormation stack, made from
//! `deploy/cloudformation/airq.yaml` (built into the binary, so an installed
//! `airq-deploy` needs no checkout).
//!
//! `provision` creates the stack or updates it (a flag not given keeps the
//! stack's value; on creation the template's default applies), waits while
//! printing the stack's events, and prints its outputs and the settings the
//! binaries need. With `--upload-release DIR` it also ships the binaries:
//! the stack first (it owns the bucket), then the upload to
//! `s3://BUCKET/releases/VERSION/ARCH/`, then an update with
//! `Release=VERSION`, which the instances download at boot. `destroy`
//! empties the stack's bucket (CloudFormation cannot delete a bucket with
//! objects in it) and deletes the stack, data included.

use crate::release::{self, Architecture};
use airq_aws::{error_code, AwsArgs, AwsClients};
use airq_deploy::provision;
use anyhow::{anyhow, bail, Context};
use aws_sdk_cloudformation::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_cloudformation::types::{Capability, Parameter, Stack, StackEvent};
use aws_sdk_cloudformation::Client;
use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// airq's CloudFormation template, the single source of its AWS resources.
pub const TEMPLATE: &str = include_str!("../cloudformation/airq.yaml");

/// The template as it is sent: the YAML's data as compact JSON, which
/// CloudFormation takes as well. Comments and indentation are a third of
/// the YAML, and the request's body is limited ([`TEMPLATE_BODY_LIMIT`]).
/// The YAML is written in long form (`Ref:`, `Fn::Sub:`, no `!` tags), so
/// a plain YAML parser reads all of it.
pub fn template_body() -> anyhow::Result<String> {
    let value: serde_json::Value =
        serde_norway::from_str(TEMPLATE).context("reading the built-in template")?;
    let body = serde_json::to_string(&value).context("writing the template as JSON")?;
    if body.len() > TEMPLATE_BODY_LIMIT {
        bail!(
            "the built-in template is {} bytes as compact JSON, over CloudFormation's \
             {TEMPLATE_BODY_LIMIT} for a template sent in the request",
            body.len()
        );
    }
    Ok(body)
}

/// CloudFormation's limit on a template passed in the request
/// (`TemplateBody`); a larger one would have to be staged in S3.
pub const TEMPLATE_BODY_LIMIT: usize = 51_200;

/// The longest pause between two polls of a stack.
const POLL_MAX: Duration = Duration::from_secs(5);
/// Pages of events read per poll (100 events each), newest first.
const EVENT_PAGES_PER_POLL: usize = 10;
/// Attempts at deleting a stack whose bucket filled up again meanwhile.
const DELETE_ATTEMPTS: u32 = 3;

/// The template's parameters that flags set.
pub mod param {
    pub const PREFIX: &str = "Prefix";
    pub const RELEASE: &str = "Release";
    pub const ARCHITECTURE: &str = "Architecture";
    pub const IMAGE_ID: &str = "ImageId";
    pub const VPC_ID: &str = "VpcId";
    pub const SUBNET_IDS: &str = "SubnetIds";
    pub const MASTER_INSTANCE_TYPE: &str = "MasterInstanceType";
    pub const GATEWAY_INSTANCE_TYPE: &str = "GatewayInstanceType";
    pub const WORKER_INSTANCE_TYPE: &str = "WorkerInstanceType";
    pub const WORKER_SIZES: [&str; 2] = ["WorkerMinSize", "WorkerMaxSize"];
    pub const GATEWAY_SIZES: [&str; 2] = ["GatewayMinSize", "GatewayMaxSize"];
    /// Each binary's SHA-256, set with [`RELEASE`]: instances refuse a
    /// download that does not match.
    pub const DIGESTS: [(&str, &str); 3] = [
        ("airq-master", "MasterSha256"),
        ("airq-gateway", "GatewaySha256"),
        ("airq-worker", "WorkerSha256"),
    ];
    pub const BACKLOG_PER_WORKER: &str = "BacklogPerWorkerTarget";
    pub const MAX_RECEIVES: &str = "MaxReceives";
    pub const RESULT_OBJECT_DAYS: &str = "ResultObjectDays";
    pub const COMPUTE: &str = "Compute";

    /// Every parameter a flag sets.
    #[cfg(test)]
    pub fn all() -> Vec<&'static str> {
        let mut v = vec![
            PREFIX,
            RELEASE,
            ARCHITECTURE,
            IMAGE_ID,
            VPC_ID,
            SUBNET_IDS,
            MASTER_INSTANCE_TYPE,
            GATEWAY_INSTANCE_TYPE,
            WORKER_INSTANCE_TYPE,
            BACKLOG_PER_WORKER,
            MAX_RECEIVES,
            RESULT_OBJECT_DAYS,
            COMPUTE,
        ];
        v.extend(WORKER_SIZES);
        v.extend(GATEWAY_SIZES);
        v.extend(DIGESTS.map(|(_, p)| p));
        v
    }
}

/// The template's outputs this command reads.
pub const BUCKET_OUTPUT: &str = "BucketName";
pub const SETTINGS_OUTPUT: &str = "Settings";

/// `provision`'s flags for the stack.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "On AWS: the CloudFormation stack (--stack)")]
pub struct StackArgs {
    /// Run airq on AWS: create, or update, the CloudFormation stack NAME
    /// from airq's template (built into this binary): the tables, queues
    /// and bucket, one least-privilege role per binary and, unless
    /// `--compute false`, the instances (Auto Scaling groups for master,
    /// gateways behind a load balancer, workers scaled on the queue's
    /// backlog) and alarms. Waits, printing the stack's events, then prints
    /// its outputs and the settings. On an update, a flag not given keeps
    /// the stack's current value (on creation, the template's default).
    /// Without --stack, provision creates only the data plane (tables,
    /// queues, bucket) by direct API calls, without the template: for
    /// emulators and development.
    #[arg(long, value_name = "NAME", value_parser = parse_stack_name)]
    pub stack: Option<String>,

    /// Ship the binaries too: check airq-master, airq-gateway and
    /// airq-worker in DIR (e.g. target/release, built for the instances'
    /// architecture), then, in this order: create or update the stack (it
    /// owns the bucket; if it is there, this step joins the last), upload
    /// them to
    /// s3://BUCKET/releases/VERSION/ARCH/, update the stack with
    /// Release=VERSION; its instances download that release when they boot
    /// (the Auto Scaling groups replace the running ones, a few at a time).
    /// Uploading the same build again changes nothing; a version is never
    /// overwritten with other binaries.
    #[arg(long, value_name = "DIR", requires = "stack")]
    pub upload_release: Option<PathBuf>,

    /// The release the instances run (the template's Release parameter).
    /// With --upload-release: the version to upload as (default
    /// v<airq version>-<first 12 hex digits of the binaries' SHA-256>).
    /// Without: a release uploaded earlier (to roll forward or back), or ''
    /// for none (every Auto Scaling group at 0 instances).
    #[arg(long, value_name = "VERSION", requires = "stack")]
    pub release: Option<String>,

    /// `true`: the whole deployment; `false`: the data plane only (tables,
    /// queues, bucket, roles), no instances (template default: true).
    #[arg(long, value_name = "BOOL", requires = "stack", action = clap::ArgAction::Set)]
    pub compute: Option<bool>,

    /// The instances' architecture; with --upload-release, it must be the
    /// binaries' (default: theirs on creation, else the stack's).
    #[arg(long, value_enum, requires = "stack")]
    pub architecture: Option<Architecture>,

    /// The instances' AMI, as the name of the SSM parameter holding its id
    /// (default: Amazon Linux 2023's public one for the architecture,
    /// /aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-ARCH,
    /// which follows --architecture).
    #[arg(long, value_name = "SSM_PARAMETER", requires = "stack")]
    pub image_id: Option<String>,

    /// The VPC the instances and the load balancer run in (the template asks
    /// for it when the stack is made).
    #[arg(long, value_name = "VPC", requires = "stack")]
    pub vpc_id: Option<String>,

    /// The subnets (comma-separated, in at least two availability zones for
    /// the load balancer).
    #[arg(long, value_name = "SUBNET,SUBNET", requires = "stack")]
    pub subnet_ids: Option<String>,

    /// The master's instance type.
    #[arg(long, value_name = "TYPE", requires = "stack")]
    pub master_instance_type: Option<String>,

    /// The gateways' instance type.
    #[arg(long, value_name = "TYPE", requires = "stack")]
    pub gateway_instance_type: Option<String>,

    /// The workers' instance type.
    #[arg(long, value_name = "TYPE", requires = "stack")]
    pub worker_instance_type: Option<String>,

    /// Worker instances: MIN:MAX (the scaling policy moves the count
    /// between them; MAX at least 2, for rolling updates).
    #[arg(long, value_name = "MIN:MAX", requires = "stack", value_parser = GroupSize::parse)]
    pub workers: Option<GroupSize>,

    /// Gateway instances: MIN:MAX (MAX at least 2).
    #[arg(long, value_name = "MIN:MAX", requires = "stack", value_parser = GroupSize::parse)]
    pub gateways: Option<GroupSize>,

    /// The workers' scaling target: queued requests per in-service worker
    /// (acceptable latency ÷ seconds per job; the template documents its
    /// default).
    #[arg(long, value_name = "N", requires = "stack", value_parser = parse_positive)]
    pub backlog_per_worker: Option<f64>,

    /// Any other template parameter, KEY=VALUE (repeatable), e.g.
    /// CertificateArn (HTTPS; port 80 then redirects), AlarmEmail,
    /// AlarmTopicArn, AssignPublicIp, LogRetentionDays,
    /// OldestMessageAlarmSeconds, Gateway5xxAlarmPercent,
    /// IngestAgeAlarmSeconds (the template describes them).
    #[arg(long = "parameter", value_name = "KEY=VALUE", requires = "stack", value_parser = parse_key_value)]
    pub parameters: Vec<(String, String)>,

    /// How long to wait for the stack before giving up (the operation goes
    /// on in CloudFormation).
    #[arg(long, value_name = "DURATION", default_value = "60m", value_parser = airq_cli::duration::parse)]
    pub stack_timeout: Duration,
}

/// An Auto Scaling group's bounds. No desired count: the scaling policy
/// owns it, and a stack update must not reset it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupSize {
    pub min: u32,
    pub max: u32,
}

impl GroupSize {
    pub fn parse(s: &str) -> Result<GroupSize, String> {
        let parts: Vec<&str> = s.split(':').map(str::trim).collect();
        let [min, max] = parts[..] else {
            let hint = if parts.len() == 3 {
                " (there is no DESIRED any more: the scaling policy decides)"
            } else {
                ""
            };
            return Err(format!("{s:?}: expected MIN:MAX, e.g. 1:10{hint}"));
        };
        let n = |v: &str| {
            v.parse::<u32>()
                .map_err(|_| format!("{s:?}: {v:?} is not a whole number of instances"))
        };
        let g = GroupSize {
            min: n(min)?,
            max: n(max)?,
        };
        if g.min > g.max {
            return Err(format!("{s:?}: expected MIN <= MAX"));
        }
        if g.max < 2 {
            return Err(format!(
                "{s:?}: MAX must be at least 2, so that a rolling update can keep one \
                 instance in service while it starts the next"
            ));
        }
        Ok(g)
    }
}

pub fn parse_stack_name(s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && s.len() <= 128
        && s.as_bytes()[0].is_ascii_alphabetic()
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if ok {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "{s:?}: a stack name is letters, digits and '-', starting with a letter (at most 128)"
        ))
    }
}

fn parse_positive(s: &str) -> Result<f64, String> {
    s.trim()
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v > 0.0)
        .ok_or_else(|| format!("{s:?}: expected a positive number"))
}

fn parse_key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_owned(), v.to_owned())),
        _ => Err(format!("{s:?}: expected KEY=VALUE")),
    }
}

/// A CloudFormation client configured as `aws`'s clients are
/// (`AwsClients::load`): the standard chain for credentials, the same
/// region and endpoint override, the same HTTP client (rustls on ring).
pub async fn client(aws: &AwsClients) -> Client {
    airq_deploy::provision::cloudformation_client(aws).await
}

/// A parameter the template declares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateParameter {
    pub name: String,
    /// Its `Type:` (e.g. `String`, `AWS::SSM::Parameter::Value<...>`).
    pub ty: String,
    /// Its `Default:`, if it has a one-line one.
    pub default: Option<String>,
}

impl TemplateParameter {
    /// Whether CloudFormation resolves it from an SSM parameter.
    fn resolved_from_ssm(&self) -> bool {
        self.ty.starts_with("AWS::SSM::Parameter::Value")
    }

    /// Whether it is a list (given as comma-separated values).
    fn is_list(&self) -> bool {
        self.ty.starts_with("List<") || self.ty == "CommaDelimitedList"
    }
}

/// The template's parameters, in order (read from its `Parameters:`
/// section: the keys at its first indentation, and each one's `Type:`).
pub fn template_parameters(template: &str) -> Vec<TemplateParameter> {
    let lines: Vec<&str> = template
        .lines()
        .skip_while(|l| l.trim_end() != "Parameters:")
        .skip(1)
        .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .take_while(|l| l.starts_with(' '))
        .collect();
    let indent_of = |l: &str| l.len() - l.trim_start_matches(' ').len();
    let Some(indent) = lines.first().map(|l| indent_of(l)) else {
        return Vec::new();
    };
    let mut out: Vec<TemplateParameter> = Vec::new();
    for l in lines {
        let depth = indent_of(l);
        if depth == indent {
            if let Some(name) = l.trim().strip_suffix(':') {
                out.push(TemplateParameter {
                    name: unquote(name),
                    ty: String::new(),
                    default: None,
                });
            }
            continue;
        }
        let Some(p) = out.last_mut() else { continue };
        if let Some(ty) = l.trim().strip_prefix("Type:") {
            p.ty = unquote(ty);
        } else if let Some(d) = l.trim().strip_prefix("Default:") {
            let d = d.trim();
            // A block scalar (`>-`, `|`) is not read.
            if !d.starts_with(['>', '|']) && !d.is_empty() {
                p.default = Some(unquote(d));
            }
        }
    }
    out
}

/// A YAML scalar without its quotes.
fn unquote(v: &str) -> String {
    let v = v.trim();
    for q in ['"', '\''] {
        if let Some(inner) = v.strip_prefix(q).and_then(|v| v.strip_suffix(q)) {
            return inner.to_owned();
        }
    }
    v.to_owned()
}

/// An SDK error as one line: the service's code and message if it
/// answered, else the whole chain.
fn aws_error<E, R>(context: impl fmt::Display, e: SdkError<E, R>) -> anyhow::Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: fmt::Debug + Send + Sync + 'static,
{
    match (e.code(), e.message()) {
        (Some(code), Some(message)) => anyhow!("{context}: {code}: {message}"),
        _ => anyhow!(
            "{context}: {}",
            aws_sdk_cloudformation::error::DisplayErrorContext(&e)
        ),
    }
}

/// Whether CloudFormation says the stack does not exist.
fn is_missing<E: ProvideErrorMetadata, R>(e: &SdkError<E, R>) -> bool {
    error_code(e) == Some("ValidationError")
        && e.message().is_some_and(|m| m.contains("does not exist"))
}

/// The stack named (or with the id) `name`, if it exists. A deleted stack
/// asked for by id is `DELETE_COMPLETE`; by name, absent.
pub async fn describe(cfn: &Client, name: &str) -> anyhow::Result<Option<Stack>> {
    match cfn.describe_stacks().stack_name(name).send().await {
        Ok(out) => Ok(out.stacks.unwrap_or_default().into_iter().next()),
        Err(e) if is_missing(&e) => Ok(None),
        Err(e) => Err(aws_error(
            format!("CloudFormation DescribeStacks {name}"),
            e,
        )),
    }
}

fn status(stack: &Stack) -> &str {
    stack
        .stack_status()
        .map(|s| s.as_str())
        .unwrap_or("UNKNOWN")
}

/// An output's value.
pub fn output<'a>(stack: &'a Stack, key: &str) -> Option<&'a str> {
    stack
        .outputs()
        .iter()
        .find(|o| o.output_key() == Some(key))
        .and_then(|o| o.output_value())
}

/// A parameter's current value.
pub fn parameter<'a>(stack: &'a Stack, key: &str) -> Option<&'a str> {
    stack
        .parameters()
        .iter()
        .find(|p| p.parameter_key() == Some(key))
        .and_then(|p| p.parameter_value())
}

/// What a stack operation waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Goal {
    Create,
    Update,
    Delete,
}

impl Goal {
    fn done(self) -> &'static str {
        match self {
            Goal::Create => "CREATE_COMPLETE",
            Goal::Update => "UPDATE_COMPLETE",
            Goal::Delete => "DELETE_COMPLETE",
        }
    }
}

/// The stack's events since an operation began, printed as they come.
struct EventLog {
    /// The newest event before the operation: where reading stops.
    marker: Option<String>,
    seen: HashSet<String>,
    /// Resources that failed during the operation.
    failed: Vec<StackEvent>,
}

impl EventLog {
    /// Starts after the stack's newest event (`None` for a new stack).
    async fn after_now(cfn: &Client, stack_id: Option<&str>) -> anyhow::Result<EventLog> {
        let marker = match stack_id {
            None => None,
            Some(id) => cfn
                .describe_stack_events()
                .stack_name(id)
                .send()
                .await
                .map_err(|e| aws_error("CloudFormation DescribeStackEvents", e))?
                .stack_events()
                .first()
                .and_then(|e| e.event_id())
                .map(str::to_owned),
        };
        Ok(EventLog {
            marker,
            seen: HashSet::new(),
            failed: Vec::new(),
        })
    }

    /// Prints (on stderr) the events not printed yet, oldest first.
    async fn poll(&mut self, cfn: &Client, stack_id: &str) -> anyhow::Result<()> {
        let mut fresh = Vec::new();
        let mut token = None;
        'pages: for _ in 0..EVENT_PAGES_PER_POLL {
            let page = match cfn
                .describe_stack_events()
                .stack_name(stack_id)
                .set_next_token(token.take())
                .send()
                .await
            {
                Ok(page) => page,
                // A stack deleted by name; by id its events stay readable.
                Err(e) if is_missing(&e) => break,
                Err(e) => return Err(aws_error("CloudFormation DescribeStackEvents", e)),
            };
            for e in page.stack_events() {
                let id = e.event_id().unwrap_or_default();
                if self.marker.as_deref() == Some(id) || self.seen.contains(id) {
                    break 'pages;
                }
                fresh.push(e.clone());
            }
            match page.next_token {
                Some(t) if !t.is_empty() => token = Some(t),
                _ => break,
            }
        }
        for e in fresh.into_iter().rev() {
            eprintln!("{}", event_line(&e));
            let status = e.resource_status().map(|s| s.as_str()).unwrap_or_default();
            if status.ends_with("_FAILED") {
                self.failed.push(e.clone());
            }
            self.seen
                .insert(e.event_id().unwrap_or_default().to_owned());
        }
        Ok(())
    }
}

/// One event as the AWS CLI and console show it: time, status, type,
/// logical id, reason.
fn event_line(e: &StackEvent) -> String {
    let time = e
        .timestamp()
        .filter(|t| t.secs() >= 0)
        .map(|t| {
            humantime::format_rfc3339_seconds(
                std::time::UNIX_EPOCH + Duration::from_secs(t.secs().unsigned_abs()),
            )
            .to_string()
        })
        .unwrap_or_default();
    let mut line = format!(
        "{time:<20} {:<36} {:<42} {}",
        e.resource_status().map(|s| s.as_str()).unwrap_or_default(),
        e.resource_type().unwrap_or_default(),
        e.logical_resource_id().unwrap_or_default(),
    );
    if let Some(r) = e.resource_status_reason().filter(|r| !r.is_empty()) {
        line += "  ";
        line += r;
    }
    line
}

/// Why a stack operation ended in `stack`'s (failed) state, naming the
/// resources that failed and what to do next.
fn failure(name: &str, stack: &Stack, failed: &[StackEvent]) -> anyhow::Error {
    let status = status(stack);
    let mut msg = format!("stack {name} ended in {status}");
    if let Some(r) = stack.stack_status_reason().filter(|r| !r.is_empty()) {
        msg += &format!(" ({r})");
    }
    // The causes first; resources cancelled because another failed last.
    let cancelled = |e: &&StackEvent| {
        e.resource_status_reason()
            .is_some_and(|r| r.to_ascii_lowercase().contains("cancelled"))
    };
    let causes: Vec<&StackEvent> = failed
        .iter()
        .filter(|e| !cancelled(e))
        .chain(failed.iter().filter(cancelled))
        .collect();
    if !causes.is_empty() {
        msg += "\nfailed resources:";
        for e in causes {
            msg += &format!(
                "\n  {} ({}): {}: {}",
                e.logical_resource_id().unwrap_or("?"),
                e.resource_type().unwrap_or("?"),
                e.resource_status().map(|s| s.as_str()).unwrap_or("?"),
                e.resource_status_reason().unwrap_or("no reason given"),
            );
        }
    }
    msg += match status {
        "ROLLBACK_COMPLETE" | "ROLLBACK_FAILED" => {
            "\nIts creation failed and was rolled back; a stack in this state cannot be \
             updated: delete it (airq-deploy destroy --stack NAME) and provision again."
        }
        "UPDATE_ROLLBACK_COMPLETE" => {
            "\nThe update was rolled back: the stack is as it was before, and can be updated again."
        }
        "UPDATE_ROLLBACK_FAILED" => {
            "\nThe rollback failed too: fix the resources named above, then continue the \
             rollback (aws cloudformation continue-update-rollback) before updating again."
        }
        "DELETE_FAILED" => {
            "\nThe resources above are still there: fix what stops their deletion and run \
             destroy again."
        }
        _ => "",
    };
    anyhow!(msg.replace("NAME", name))
}

/// Polls the stack `stack_id` until the operation reaches `goal`, printing
/// its events; fails on any other settled state, or after `timeout`.
/// Returns the stack (`None` once deleted by name).
async fn wait(
    cfn: &Client,
    name: &str,
    stack_id: &str,
    mut events: EventLog,
    goal: Goal,
    timeout: Duration,
) -> anyhow::Result<Option<Stack>> {
    let start = Instant::now();
    let mut pause = Duration::from_millis(500);
    loop {
        let stack = describe(cfn, stack_id).await?;
        events.poll(cfn, stack_id).await?;
        match stack {
            None if goal == Goal::Delete => return Ok(None),
            None => bail!("stack {name} disappeared while waiting for {}", goal.done()),
            Some(s) if status(&s) == goal.done() => return Ok(Some(s)),
            Some(s) if !status(&s).ends_with("_IN_PROGRESS") => {
                return Err(failure(name, &s, &events.failed))
            }
            Some(s) => {
                if start.elapsed() >= timeout {
                    bail!(
                        "stack {name} is still {} after {}: stopped waiting (CloudFormation \
                         carries on; watch it in the console or run this again)",
                        status(&s),
                        humantime::format_duration(timeout)
                    );
                }
            }
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(POLL_MAX);
    }
}

/// The parameters of a create or update: `given` values, the stack's
/// previous value for every other parameter it has, and the template's
/// default for the rest.
///
/// A value that is the template's default is left out: CloudFormation
/// then applies the default, the same value. A previous value is kept with
/// UsePreviousValue where CloudFormation shows no plain value (a NoEcho
/// one, or one resolved from SSM), and is sent back as a value otherwise.
/// Both spare moto (which tests run on) its gaps: its UsePreviousValue only
/// knows the values given when the stack was made, it counts any value
/// sent that was not given then as a change (and then updates resources
/// that the template's conditions left out), and it shows an SSM
/// parameter's resolved value in its place (sending that back would not
/// name a parameter), so there one of those takes its default, and a list
/// as a Python list (so lists are kept with UsePreviousValue).
fn stack_parameters(
    template: &[TemplateParameter],
    given: &BTreeMap<String, String>,
    existing: Option<&Stack>,
) -> anyhow::Result<Vec<Parameter>> {
    if let Some(unknown) = given
        .keys()
        .find(|k| !template.iter().any(|t| &t.name == *k))
    {
        bail!(
            "the template has no parameter {unknown}; its parameters are: {}",
            template
                .iter()
                .map(|t| t.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let mut out = Vec::new();
    for t in template {
        let p = Parameter::builder().parameter_key(&t.name);
        let previous = existing.and_then(|s| {
            s.parameters()
                .iter()
                .find(|p| p.parameter_key() == Some(t.name.as_str()))
        });
        let is_default = |v: &str| t.default.as_deref() == Some(v);
        if let Some(v) = given.get(&t.name) {
            if !is_default(v) {
                out.push(p.parameter_value(v).build());
            }
            continue;
        }
        let Some(previous) = previous else { continue };
        match previous.parameter_value() {
            _ if previous.resolved_value().is_some() => {
                if !previous.parameter_value().is_some_and(is_default) {
                    out.push(p.use_previous_value(true).build())
                }
            }
            None | Some("****") => out.push(p.use_previous_value(true).build()),
            Some(_) if t.is_list() => out.push(p.use_previous_value(true).build()),
            Some(_) if t.resolved_from_ssm() => {}
            Some(v) if is_default(v) => {}
            Some(v) => out.push(p.parameter_value(v).build()),
        }
    }
    Ok(out)
}

/// Creates the stack or updates it with `given`, and waits. An update that
/// changes nothing is no error.
async fn deploy(
    cfn: &Client,
    name: &str,
    existing: Option<&Stack>,
    given: &BTreeMap<String, String>,
    timeout: Duration,
) -> anyhow::Result<Stack> {
    let keys = template_parameters(TEMPLATE);
    let parameters = stack_parameters(&keys, given, existing)?;
    let body = template_body()?;
    for p in &parameters {
        tracing::debug!(
            key = p.parameter_key().unwrap_or_default(),
            value = p.parameter_value().unwrap_or_default(),
            use_previous = p.use_previous_value().unwrap_or_default(),
            "stack parameter"
        );
    }
    let capabilities = [Capability::CapabilityIam, Capability::CapabilityNamedIam];
    let Some(stack) = existing else {
        let events = EventLog::after_now(cfn, None).await?;
        let created = create_request(cfn, name, &body, parameters)
            .set_capabilities(Some(capabilities.to_vec()))
            .send()
            .await
            .map_err(|e| flag_hint(aws_error(format!("CloudFormation CreateStack {name}"), e)))?;
        let id = created.stack_id().unwrap_or(name).to_owned();
        eprintln!("creating stack {name} ({id})");
        return wait(cfn, name, &id, events, Goal::Create, timeout)
            .await?
            .ok_or_else(|| anyhow!("stack {name} vanished"));
    };
    let id = stack.stack_id().unwrap_or(name).to_owned();
    let events = EventLog::after_now(cfn, Some(&id)).await?;
    match cfn
        .update_stack()
        .stack_name(&id)
        .template_body(&body)
        .set_parameters(Some(parameters))
        .set_capabilities(Some(capabilities.to_vec()))
        .send()
        .await
    {
        Ok(_) => {
            eprintln!("updating stack {name}");
            wait(cfn, name, &id, events, Goal::Update, timeout)
                .await?
                .ok_or_else(|| anyhow!("stack {name} vanished"))
        }
        Err(e)
            if error_code(&e) == Some("ValidationError")
                && e.message()
                    .is_some_and(|m| m.contains("No updates are to be performed")) =>
        {
            eprintln!("stack {name} is up to date: nothing to update.");
            Ok(stack.clone())
        }
        Err(e) => Err(flag_hint(aws_error(
            format!("CloudFormation UpdateStack {name}"),
            e,
        ))),
    }
}

/// CreateStack for the stack: with termination protection, so that
/// deleting it takes `airq-deploy destroy --stack` (which lifts it after
/// asking) and not one click or one `aws cloudformation delete-stack`.
fn create_request(
    cfn: &Client,
    name: &str,
    body: &str,
    parameters: Vec<Parameter>,
) -> aws_sdk_cloudformation::operation::create_stack::builders::CreateStackFluentBuilder {
    cfn.create_stack()
        .stack_name(name)
        .template_body(body)
        .set_parameters(Some(parameters))
        .enable_termination_protection(true)
}

/// The flag that sets a template parameter.
fn flag_for(parameter: &str) -> String {
    let flag = match parameter {
        param::PREFIX => "--aws-prefix",
        param::RELEASE => "--release (or --upload-release)",
        p if param::DIGESTS.iter().any(|(_, d)| *d == p) => "--release (or --upload-release)",
        param::ARCHITECTURE => "--architecture",
        param::IMAGE_ID => "--image-id",
        param::VPC_ID => "--vpc-id",
        param::SUBNET_IDS => "--subnet-ids",
        param::MASTER_INSTANCE_TYPE => "--master-instance-type",
        param::GATEWAY_INSTANCE_TYPE => "--gateway-instance-type",
        param::WORKER_INSTANCE_TYPE => "--worker-instance-type",
        p if param::WORKER_SIZES.contains(&p) => "--workers",
        p if param::GATEWAY_SIZES.contains(&p) => "--gateways",
        param::BACKLOG_PER_WORKER => "--backlog-per-worker",
        param::MAX_RECEIVES => "--max-receives",
        param::RESULT_OBJECT_DAYS => "--result-object-days",
        param::COMPUTE => "--compute",
        other => return format!("--parameter {other}=VALUE"),
    };
    flag.to_owned()
}

/// CloudFormation's "Missing parameter X", completed with the flag for X.
fn flag_hint(e: anyhow::Error) -> anyhow::Error {
    let text = e.to_string();
    match text
        .split("Missing parameter ")
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_alphanumeric()).next())
        .filter(|p| !p.is_empty())
    {
        Some(p) => anyhow!("{text} (pass {})", flag_for(p)),
        None => e,
    }
}

/// Whether a stack in this state can be updated now.
fn check_updatable(name: &str, stack: &Stack) -> anyhow::Result<()> {
    match status(stack) {
        "CREATE_COMPLETE" | "UPDATE_COMPLETE" | "UPDATE_ROLLBACK_COMPLETE" => Ok(()),
        s if s.ends_with("_IN_PROGRESS") => {
            bail!("stack {name} is busy ({s}): wait until it settles, then run this again")
        }
        _ => Err(failure(name, stack, &[])),
    }
}

/// What `provision --stack` was given besides [`StackArgs`].
#[derive(Debug, Clone, Default)]
pub struct DataPlane {
    pub max_receives: Option<u32>,
    pub result_object_days: Option<i32>,
}

/// The parameter values the flags give (the release aside).
fn given_parameters(prefix: &str, args: &StackArgs, data: &DataPlane) -> BTreeMap<String, String> {
    let mut given = BTreeMap::new();
    let mut set = |k: &str, v: Option<String>| {
        if let Some(v) = v {
            given.insert(k.to_owned(), v);
        }
    };
    set(param::PREFIX, Some(prefix.to_owned()));
    set(param::COMPUTE, args.compute.map(|c| c.to_string()));
    set(
        param::ARCHITECTURE,
        args.architecture.map(|a| a.as_str().to_owned()),
    );
    set(param::IMAGE_ID, args.image_id.clone());
    set(param::VPC_ID, args.vpc_id.clone());
    set(param::SUBNET_IDS, args.subnet_ids.clone());
    set(
        param::MASTER_INSTANCE_TYPE,
        args.master_instance_type.clone(),
    );
    set(
        param::GATEWAY_INSTANCE_TYPE,
        args.gateway_instance_type.clone(),
    );
    set(
        param::WORKER_INSTANCE_TYPE,
        args.worker_instance_type.clone(),
    );
    for (keys, size) in [
        (param::WORKER_SIZES, args.workers),
        (param::GATEWAY_SIZES, args.gateways),
    ] {
        if let Some(g) = size {
            set(keys[0], Some(g.min.to_string()));
            set(keys[1], Some(g.max.to_string()));
        }
    }
    set(
        param::BACKLOG_PER_WORKER,
        args.backlog_per_worker.map(|b| b.to_string()),
    );
    set(
        param::MAX_RECEIVES,
        data.max_receives.map(|m| m.to_string()),
    );
    set(
        param::RESULT_OBJECT_DAYS,
        data.result_object_days.map(|d| d.to_string()),
    );
    for (k, v) in &args.parameters {
        given.insert(k.clone(), v.clone());
    }
    given
}

/// The digest parameters for a release's binaries (`[]`: no release, so
/// none).
fn set_digests(given: &mut BTreeMap<String, String>, digests: &[(&str, String)]) {
    for (binary, key) in param::DIGESTS {
        let sha = digests
            .iter()
            .find(|(name, _)| *name == binary)
            .map(|(_, sha)| sha.clone())
            .unwrap_or_default();
        given.insert(key.to_owned(), sha);
    }
}

/// The template's default AMI for `arch`: Amazon Linux 2023's public SSM
/// parameter.
pub fn default_image(arch: Architecture) -> String {
    format!("/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-{arch}")
}

/// Moves the AMI along with the architecture when it is one of the
/// defaults (Amazon Linux 2023 for either architecture) and no
/// `--image-id` is given; a custom AMI stays.
fn follow_architecture(given: &mut BTreeMap<String, String>, existing: Option<&Stack>) {
    let Some(arch) = given
        .get(param::ARCHITECTURE)
        .and_then(|a| Architecture::parse(a))
    else {
        return;
    };
    if given.contains_key(param::IMAGE_ID) {
        return;
    }
    let current = existing.and_then(|s| parameter(s, param::IMAGE_ID));
    let defaults = [Architecture::X86_64, Architecture::Arm64].map(default_image);
    if current.is_none_or(|c| defaults.iter().any(|d| d == c)) {
        given.insert(param::IMAGE_ID.into(), default_image(arch));
    }
}

/// `airq-deploy provision --stack NAME`.
pub async fn provision(aws: &AwsArgs, args: &StackArgs, data: &DataPlane) -> anyhow::Result<()> {
    let name = args.stack.as_deref().context("--stack NAME is needed")?;
    // Checked before anything changes.
    template_body()?;
    let mut given = given_parameters(&aws.aws_prefix, args, data);
    // Check everything that can be checked before changing anything.
    let release = match &args.upload_release {
        Some(dir) => Some(release::inspect(dir)?),
        None => None,
    };
    if let Some(v) = args.release.as_deref() {
        if !(v.is_empty() && release.is_none()) {
            release::check_version(v).map_err(|e| anyhow!(e))?;
        }
    }
    stack_parameters(&template_parameters(TEMPLATE), &given, None)?;

    let clients = aws
        .clients()
        .await
        .context("loading the AWS configuration")?;
    let cfn = client(&clients).await;
    eprintln!("stack {name} on {}", clients.location());
    let existing = describe(&cfn, name).await?;
    if let Some(stack) = &existing {
        check_updatable(name, stack)?;
        let had = parameter(stack, param::PREFIX).unwrap_or_default();
        if had != aws.aws_prefix {
            bail!(
                "stack {name} names its resources with the prefix {had:?}, not {:?}: changing \
                 it would replace every table, queue and the bucket, data included; pass \
                 --aws-prefix {had:?} (or AIRQ_AWS_PREFIX)",
                aws.aws_prefix
            );
        }
    }
    let stack_arch = args.architecture.or_else(|| {
        existing
            .as_ref()
            .and_then(|s| parameter(s, param::ARCHITECTURE))
            .and_then(Architecture::parse)
    });

    if let Some(release) = &release {
        let arch = release.arch;
        match stack_arch {
            Some(a) if a != arch => bail!(
                "the binaries in {} are {arch}, the stack's instances {a}: build for {a}, \
                 or switch the stack with --architecture {arch} (and instance types of \
                 that architecture)",
                args.upload_release.as_ref().expect("given").display()
            ),
            _ => {
                given.insert(param::ARCHITECTURE.into(), arch.as_str().to_owned());
            }
        }
    }
    follow_architecture(&mut given, existing.as_ref());

    let stack = match release {
        None => {
            if let Some(v) = &args.release {
                if !v.is_empty() {
                    let stack = existing.as_ref().with_context(|| {
                        format!(
                            "stack {name} does not exist yet, so neither does the bucket a \
                             release is uploaded to: create it with --upload-release DIR"
                        )
                    })?;
                    let bucket = output(stack, BUCKET_OUTPUT)
                        .with_context(|| format!("stack {name} has no {BUCKET_OUTPUT} output"))?;
                    let arch = stack_arch.unwrap_or(Architecture::X86_64);
                    let digests = release::uploaded_digests(&clients.s3, bucket, v, arch).await?;
                    set_digests(&mut given, &digests);
                } else {
                    set_digests(&mut given, &[]);
                }
                given.insert(param::RELEASE.into(), v.clone());
            }
            deploy(&cfn, name, existing.as_ref(), &given, args.stack_timeout).await?
        }
        Some(release) => {
            let arch = release.arch;
            let version = args
                .release
                .clone()
                .unwrap_or_else(|| release.default_version());
            // 1. The stack, unless it is there with its bucket: it owns it.
            let stack = match existing
                .as_ref()
                .filter(|s| output(s, BUCKET_OUTPUT).is_some())
            {
                Some(s) => {
                    eprintln!("1/3 the stack is there, with its bucket");
                    s.clone()
                }
                None => {
                    eprintln!("1/3 the stack first: it owns the bucket the release goes to");
                    deploy(&cfn, name, existing.as_ref(), &given, args.stack_timeout).await?
                }
            };
            let bucket = output(&stack, BUCKET_OUTPUT)
                .with_context(|| format!("stack {name} has no {BUCKET_OUTPUT} output"))?
                .to_owned();
            // 2. The binaries.
            eprintln!("2/3 release {version} ({arch}) to s3://{bucket}/releases/{version}/{arch}/");
            release::upload(&clients.s3, &bucket, &version, &release).await?;
            // 3. The stack, pointed at them.
            eprintln!("3/3 the stack, with Release={version}");
            let digests: Vec<(&str, String)> = release
                .binaries
                .iter()
                .map(|b| (b.name, b.sha256.clone()))
                .collect();
            set_digests(&mut given, &digests);
            given.insert(param::RELEASE.into(), version);
            deploy(&cfn, name, Some(&stack), &given, args.stack_timeout).await?
        }
    };
    print_outputs(name, &stack, &clients);
    Ok(())
}

/// The stack's outputs, then its settings as `export` lines.
fn print_outputs(name: &str, stack: &Stack, clients: &AwsClients) {
    println!("stack {name}: {}", status(stack));
    let outputs: Vec<(&str, &str)> = stack
        .outputs()
        .iter()
        .filter_map(|o| Some((o.output_key()?, o.output_value().unwrap_or_default())))
        .filter(|(k, _)| *k != SETTINGS_OUTPUT)
        .collect();
    let width = outputs.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (k, v) in outputs {
        println!("  {k:<width$}  {v}");
    }
    match parameter(stack, param::RELEASE).filter(|r| !r.is_empty()) {
        Some(r) => println!(
            "release {r} ({}) in s3://{}/releases/{r}/",
            parameter(stack, param::ARCHITECTURE).unwrap_or("?"),
            output(stack, BUCKET_OUTPUT).unwrap_or("?")
        ),
        None => {
            println!("release: none (no instance runs until one is uploaded: --upload-release DIR)")
        }
    }
    println!("\n# settings for airq-master, airq-gateway and airq-worker:");
    print!(
        "{}",
        settings(
            output(stack, SETTINGS_OUTPUT),
            clients.region(),
            clients.endpoint()
        )
    );
}

/// The `export` lines of the stack's `Settings` output, completed with
/// what only this side knows: the region, and the endpoint of an emulator.
fn settings(output: Option<&str>, region: Option<&str>, endpoint: Option<&str>) -> String {
    let lines: Vec<String> = output
        .unwrap_or_default()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| {
            if l.starts_with("export ") {
                l.to_owned()
            } else {
                format!("export {l}")
            }
        })
        .collect();
    let has = |var: &str| {
        lines
            .iter()
            .any(|l| l.starts_with(&format!("export {var}=")))
    };
    let mut extra = Vec::new();
    if !has("AIRQ_BACKEND") {
        extra.push("export AIRQ_BACKEND=aws".to_owned());
    }
    if let Some(r) = region.filter(|_| !has("AWS_REGION")) {
        extra.push(format!("export AWS_REGION={r}"));
    }
    if let Some(e) = endpoint.filter(|e| !e.is_empty() && !has("AIRQ_AWS_ENDPOINT_URL")) {
        extra.push(format!("export AIRQ_AWS_ENDPOINT_URL={e}"));
    }
    let mut out = String::new();
    for l in extra.iter().chain(&lines) {
        out += l;
        out.push('\n');
    }
    out
}

/// The stack, if any, that owns one of the resources a plain `destroy`
/// deletes (`names`: tables, queues and the bucket by name), and which one.
///
/// Deleting a stack's tables under it leaves a stack that still says it has
/// them (and its next update fails); its data goes with no stack event to
/// show. So a plain `destroy` looks first: every stack not yet deleted,
/// and each one's resources (a queue's physical id is its URL, ending in
/// its name).
pub async fn owner_of(cfn: &Client, names: &[String]) -> anyhow::Result<Option<(String, String)>> {
    let mut token = None;
    let mut stacks = Vec::new();
    loop {
        let page = cfn
            .list_stacks()
            .set_next_token(token.take())
            .send()
            .await
            .map_err(|e| aws_error("CloudFormation ListStacks", e))?;
        for s in page.stack_summaries() {
            let gone = s.stack_status().map(|st| st.as_str()) == Some("DELETE_COMPLETE");
            if let (false, Some(id), Some(name)) = (gone, s.stack_id(), s.stack_name()) {
                stacks.push((id.to_owned(), name.to_owned()));
            }
        }
        match page.next_token {
            Some(t) if !t.is_empty() => token = Some(t),
            _ => break,
        }
    }
    for (id, stack) in stacks {
        for r in resources(cfn, &id).await? {
            let physical = r.id;
            let owned = names
                .iter()
                .find(|n| physical == **n || physical.ends_with(&format!("/{n}")));
            if let Some(name) = owned {
                return Ok(Some((stack, name.clone())));
            }
        }
    }
    Ok(None)
}

/// One of a stack's resources.
struct Listed {
    kind: String,
    /// Its physical id, or its logical id if it has none yet.
    id: String,
    logical: String,
}

/// The stack's resources.
async fn resources(cfn: &Client, stack_id: &str) -> anyhow::Result<Vec<Listed>> {
    let mut out = Vec::new();
    let mut token = None;
    loop {
        let page = cfn
            .list_stack_resources()
            .stack_name(stack_id)
            .set_next_token(token.take())
            .send()
            .await
            .map_err(|e| aws_error("CloudFormation ListStackResources", e))?;
        for r in page.stack_resource_summaries() {
            if r.resource_status().map(|s| s.as_str()) == Some("DELETE_COMPLETE") {
                continue;
            }
            let logical = r.logical_resource_id().unwrap_or("?").to_owned();
            out.push(Listed {
                kind: r.resource_type().unwrap_or("?").to_owned(),
                id: r
                    .physical_resource_id()
                    .filter(|p| !p.is_empty())
                    .map_or_else(|| logical.clone(), str::to_owned),
                logical,
            });
        }
        match page.next_token {
            Some(t) if !t.is_empty() => token = Some(t),
            _ => return Ok(out),
        }
    }
}

/// `airq-deploy destroy --stack NAME`: asks `confirm` (given what goes),
/// empties the stack's buckets, deletes the stack and waits.
pub async fn destroy(
    aws: &AwsArgs,
    name: &str,
    timeout: Duration,
    delete_data: bool,
    confirm: impl FnOnce(&str, &[String]) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let clients = aws
        .clients()
        .await
        .context("loading the AWS configuration")?;
    let cfn = client(&clients).await;
    let Some(stack) = describe(&cfn, name).await? else {
        println!(
            "stack {name} does not exist on {}: nothing to delete.",
            clients.location()
        );
        return Ok(());
    };
    let id = stack.stack_id().unwrap_or(name).to_owned();
    let st = status(&stack);
    if st.ends_with("_IN_PROGRESS") && st != "DELETE_IN_PROGRESS" {
        bail!("stack {name} is busy ({st}): wait until it settles, then run this again");
    }
    let listed = resources(&cfn, &id).await?;
    let buckets: Vec<String> = listed
        .iter()
        .filter(|r| r.kind == "AWS::S3::Bucket")
        .map(|r| r.id.clone())
        .collect();
    let kept: Vec<String> = listed
        .iter()
        .filter(|r| provision::RETAINED_TABLES.contains(&r.logical.as_str()))
        .map(|r| r.id.clone())
        .collect();
    let mut lines: Vec<String> = listed
        .iter()
        .map(|r| {
            let keep = provision::RETAINED_TABLES.contains(&r.logical.as_str()) && !delete_data;
            let note = if keep { "  (kept)" } else { "" };
            format!("{:<40} {}{note}", r.kind, r.id)
        })
        .collect();
    lines.sort();
    let intro = if delete_data {
        format!(
            "This deletes the CloudFormation stack {name} on {} and everything it made, \
             data included (every reading, result, API key, queued message and uploaded \
             release):",
            clients.location()
        )
    } else {
        format!(
            "This deletes the CloudFormation stack {name} on {} and what it made, but for \
             the readings and API keys tables (kept; --delete-data deletes them too):",
            clients.location()
        )
    };
    confirm(&intro, &lines)?;
    // Lifted only now, after the question. Should lifting fail, DeleteStack
    // says whether the protection still stands (its error then carries
    // this one); an emulator without UpdateTerminationProtection (moto)
    // deletes anyway.
    let mut unlifted = None;
    if stack.enable_termination_protection() == Some(true) {
        match cfn
            .update_termination_protection()
            .stack_name(&id)
            .enable_termination_protection(false)
            .send()
            .await
        {
            Ok(_) => eprintln!("termination protection of stack {name} lifted"),
            Err(e) => {
                let e = aws_error(
                    format!("CloudFormation UpdateTerminationProtection {name} (lifting it)"),
                    e,
                );
                eprintln!("warning: {e:#}; trying to delete anyway");
                unlifted = Some(e);
            }
        }
    }
    let with_unlifted = |e: anyhow::Error| match &unlifted {
        Some(u) => e.context(format!("termination protection could not be lifted: {u:#}")),
        None => e,
    };
    for attempt in 1..=DELETE_ATTEMPTS {
        for b in &buckets {
            let n = empty_bucket(&clients.s3, b).await?;
            if n > 0 {
                eprintln!("emptied bucket {b}: {n} objects deleted");
            }
        }
        let events = EventLog::after_now(&cfn, Some(&id)).await?;
        cfn.delete_stack()
            .stack_name(&id)
            .send()
            .await
            .map_err(|e| {
                with_unlifted(aws_error(format!("CloudFormation DeleteStack {name}"), e))
            })?;
        eprintln!("deleting stack {name}");
        match wait(&cfn, name, &id, events, Goal::Delete, timeout).await {
            Ok(_) => {
                if delete_data {
                    for table in &kept {
                        provision::delete_table(&clients, table, true)
                            .await
                            .with_context(|| format!("deleting the kept table {table}"))?;
                        eprintln!("deleted table {table}");
                    }
                    println!("stack {name} deleted, with its data.");
                } else {
                    println!("stack {name} deleted; kept, with deletion protection on:");
                    for table in &kept {
                        println!("  table {table}");
                    }
                    println!(
                        "(a new stack with the same prefix cannot be made while they exist; \
                         delete them with `airq-deploy destroy --delete-data` and the same \
                         --aws-prefix)"
                    );
                }
                return Ok(());
            }
            Err(e) if attempt < DELETE_ATTEMPTS && !buckets.is_empty() => {
                let again = describe(&cfn, &id).await?;
                if again.as_ref().map(status) != Some("DELETE_FAILED") {
                    return Err(e);
                }
                // Most likely objects written after the bucket was emptied.
                eprintln!("{e:#}\nemptying the bucket again and retrying");
            }
            Err(e) => return Err(with_unlifted(e)),
        }
    }
    unreachable!("the last attempt returns")
}

/// Deletes every object (and, in a versioned bucket, every version) in
/// `bucket`; returns how many. A bucket already gone holds nothing.
/// (Versions are listed whatever the bucket's versioning: moto answers
/// GetBucketVersioning in a form the SDK cannot read.)
async fn empty_bucket(s3: &aws_sdk_s3::Client, bucket: &str) -> anyhow::Result<usize> {
    use aws_sdk_s3::types::{Delete, ObjectIdentifier};
    let s3_error = |what: &str, e: &dyn fmt::Display| anyhow!("S3 {what} {bucket}: {e}");
    let mut deleted = 0;
    let mut delete = |ids: Vec<ObjectIdentifier>| {
        let n = ids.len();
        let request = s3.delete_objects().bucket(bucket).delete(
            Delete::builder()
                .set_objects(Some(ids))
                .quiet(true)
                .build()
                .expect("objects are set"),
        );
        deleted += n;
        async move {
            let out = request.send().await.map_err(|e| {
                s3_error("DeleteObjects", &aws_sdk_s3::error::DisplayErrorContext(&e))
            })?;
            if let Some(err) = out.errors().first() {
                bail!(
                    "S3 DeleteObjects {bucket}: {} errors, e.g. {}: {}",
                    out.errors().len(),
                    err.key().unwrap_or("?"),
                    err.message().unwrap_or("?")
                );
            }
            Ok(())
        }
    };
    let mut token = None;
    loop {
        let page = match s3
            .list_objects_v2()
            .bucket(bucket)
            .set_continuation_token(token.take())
            .send()
            .await
        {
            Ok(page) => page,
            Err(e)
                if e.as_service_error()
                    .is_some_and(|se| se.is_no_such_bucket()) =>
            {
                return Ok(0)
            }
            Err(e) => {
                return Err(s3_error(
                    "ListObjectsV2",
                    &aws_sdk_s3::error::DisplayErrorContext(&e),
                ))
            }
        };
        let ids: Vec<ObjectIdentifier> = page
            .contents()
            .iter()
            .filter_map(|o| ObjectIdentifier::builder().key(o.key()?).build().ok())
            .collect();
        if !ids.is_empty() {
            delete(ids).await?;
        }
        match page.next_continuation_token {
            Some(t) if page.is_truncated == Some(true) => token = Some(t),
            _ => break,
        }
    }
    // What is left: versions and delete markers, in a versioned bucket.
    let (mut key_marker, mut version_marker) = (None, None);
    loop {
        let page = s3
            .list_object_versions()
            .bucket(bucket)
            .set_key_marker(key_marker.take())
            .set_version_id_marker(version_marker.take())
            .send()
            .await
            .map_err(|e| {
                s3_error(
                    "ListObjectVersions",
                    &aws_sdk_s3::error::DisplayErrorContext(&e),
                )
            })?;
        let ids: Vec<ObjectIdentifier> = page
            .versions()
            .iter()
            .map(|v| (v.key(), v.version_id()))
            .chain(
                page.delete_markers()
                    .iter()
                    .map(|m| (m.key(), m.version_id())),
            )
            .filter_map(|(k, v)| {
                ObjectIdentifier::builder()
                    .key(k?)
                    .set_version_id(v.map(str::to_owned))
                    .build()
                    .ok()
            })
            .collect();
        if !ids.is_empty() {
            delete(ids).await?;
        }
        if page.is_truncated != Some(true) {
            break;
        }
        key_marker = page.next_key_marker;
        version_marker = page.next_version_id_marker;
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_template_fits_in_a_request_and_has_every_parameter_a_flag_sets() {
        assert!(
            template_body().is_ok_and(|b| b.len() <= TEMPLATE_BODY_LIMIT),
            "the template as sent is over the {TEMPLATE_BODY_LIMIT} bytes CloudFormation \
             takes in a request"
        );
        // What is sent is the YAML's data, nothing lost or added.
        let yaml: serde_json::Value = serde_norway::from_str(TEMPLATE).expect("YAML");
        let sent: serde_json::Value =
            serde_json::from_str(&template_body().expect("the body")).expect("JSON");
        assert_eq!(yaml, sent);
        assert!(yaml["Resources"].as_object().is_some_and(|r| r.len() >= 30));
        let keys = template_parameters(TEMPLATE);
        for p in param::all() {
            assert!(
                keys.iter().any(|k| k.name == p),
                "no parameter {p} in {keys:?}"
            );
        }
        assert!(keys.iter().all(|k| !k.ty.is_empty()), "{keys:?}");
        let image = keys
            .iter()
            .find(|k| k.name == param::IMAGE_ID)
            .expect("ImageId");
        assert!(image.resolved_from_ssm(), "{image:?}");
        assert_eq!(
            image.default.as_deref(),
            Some(default_image(Architecture::X86_64).as_str())
        );
        let compute = keys
            .iter()
            .find(|k| k.name == param::COMPUTE)
            .expect("Compute");
        assert_eq!(compute.default.as_deref(), Some("true"));
        assert!(TEMPLATE.contains(BUCKET_OUTPUT) && TEMPLATE.contains(SETTINGS_OUTPUT));
    }

    #[test]
    fn parameters_are_read_from_the_template() {
        let t = "AWSTemplateFormatVersion: '2010-09-09'\nParameters:\n  # a comment\n  Prefix:\n    Type: String\n    Default: ''\n\n  Release:\n    Type: String\n    AllowedValues:\n      - a\nConditions:\n  X: y\n";
        let names: Vec<(String, String, Option<String>)> = template_parameters(t)
            .into_iter()
            .map(|p| (p.name, p.ty, p.default))
            .collect();
        assert_eq!(
            names,
            [
                (
                    "Prefix".to_owned(),
                    "String".to_owned(),
                    Some(String::new())
                ),
                ("Release".to_owned(), "String".to_owned(), None)
            ]
        );
        assert!(template_parameters("Resources:\n  A:\n    Type: B\n").is_empty());
    }

    fn stack_with(params: &[(&str, &str)]) -> Stack {
        let mut b = Stack::builder().stack_name("s");
        for (k, v) in params {
            b = b.parameters(
                Parameter::builder()
                    .parameter_key(*k)
                    .parameter_value(*v)
                    .build(),
            );
        }
        b.build()
    }

    #[test]
    fn an_update_keeps_what_is_not_given_and_new_parameters_take_their_defaults() {
        let t = |name: &str, ty: &str, default: Option<&str>| TemplateParameter {
            name: name.into(),
            ty: ty.into(),
            default: default.map(str::to_owned),
        };
        let ssm = "AWS::SSM::Parameter::Value<AWS::EC2::Image::Id>";
        let template = [
            t("Prefix", "String", Some("")),
            t("Secret", "String", None),
            t("Compute", "String", Some("true")),
            t("VpcId", "AWS::EC2::VPC::Id", None),
            t("SubnetIds", "List<AWS::EC2::Subnet::Id>", None),
            t("ImageId", ssm, Some("/aws/default-ami")),
            t("Size", "Number", Some("1")),
            t("Type", "String", Some("t3.small")),
            t("New", "String", Some("")),
        ];
        let given = BTreeMap::from([
            ("Compute".to_owned(), "false".to_owned()),
            ("Type".to_owned(), "t3.small".to_owned()),
        ]);
        let shown = |ps: Vec<Parameter>| -> Vec<(String, Option<String>, Option<bool>)> {
            ps.iter()
                .map(|p| {
                    (
                        p.parameter_key().unwrap_or_default().to_owned(),
                        p.parameter_value().map(str::to_owned),
                        p.use_previous_value(),
                    )
                })
                .collect()
        };
        let param = |k: &str, v: Option<&str>, resolved: Option<&str>| {
            Parameter::builder()
                .parameter_key(k)
                .set_parameter_value(v.map(str::to_owned))
                .set_resolved_value(resolved.map(str::to_owned))
                .build()
        };
        // As AWS shows a stack: every value, SSM ones with their resolution.
        let aws = Stack::builder()
            .parameters(param("Prefix", Some("p-"), None))
            .parameters(param("Secret", Some("****"), None))
            .parameters(param("Compute", Some("true"), None))
            .parameters(param("VpcId", Some("vpc-1"), None))
            .parameters(param("ImageId", Some("/aws/ami"), Some("ami-1")))
            .parameters(param("Size", Some("1"), None))
            .parameters(param("Type", Some("t3.large"), None))
            .build();
        let v = |s: &str| Some(s.to_owned());
        assert_eq!(
            shown(stack_parameters(&template, &given, Some(&aws)).unwrap()),
            [
                ("Prefix".into(), v("p-"), None),
                ("Secret".into(), None, Some(true)),
                ("Compute".into(), v("false"), None),
                ("VpcId".into(), v("vpc-1"), None),
                ("ImageId".into(), None, Some(true)),
            ]
        );
        // A default AMI, like any default, is left to the template.
        let aws_default_ami = Stack::builder()
            .parameters(param("ImageId", Some("/aws/default-ami"), Some("ami-1")))
            .build();
        assert_eq!(
            shown(stack_parameters(&template, &BTreeMap::new(), Some(&aws_default_ami)).unwrap()),
            []
        );
        // As moto shows one: no value for some types, SSM ones resolved.
        let moto = Stack::builder()
            .parameters(param("Prefix", Some("p-"), None))
            .parameters(param("VpcId", None, None))
            .parameters(param("SubnetIds", Some("['subnet-1', 'subnet-2']"), None))
            .parameters(param("ImageId", Some("ami-1"), None))
            .build();
        assert_eq!(
            shown(stack_parameters(&template, &given, Some(&moto)).unwrap()),
            [
                ("Prefix".into(), v("p-"), None),
                ("Compute".into(), v("false"), None),
                ("VpcId".into(), None, Some(true)),
                ("SubnetIds".into(), None, Some(true)),
            ]
        );
        // On creation only what is given, and not the defaults.
        assert_eq!(
            shown(stack_parameters(&template, &given, None).unwrap()),
            [("Compute".into(), v("false"), None)]
        );
        let bad = BTreeMap::from([("Nope".to_owned(), "1".to_owned())]);
        let e = stack_parameters(&template, &bad, None)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("no parameter Nope") && e.contains("Prefix"),
            "{e}"
        );
    }

    #[test]
    fn the_default_ami_follows_the_architecture_and_a_custom_one_stays() {
        let arm = BTreeMap::from([("Architecture".to_owned(), "arm64".to_owned())]);
        let mut given = arm.clone();
        follow_architecture(&mut given, None);
        assert_eq!(
            given.get("ImageId").map(String::as_str),
            Some("/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-arm64")
        );
        let x86 = stack_with(&[("ImageId", &default_image(Architecture::X86_64))]);
        let mut given = arm.clone();
        follow_architecture(&mut given, Some(&x86));
        assert_eq!(
            given.get("ImageId"),
            Some(&default_image(Architecture::Arm64))
        );
        let custom = stack_with(&[("ImageId", "/my/ami")]);
        let mut given = arm.clone();
        follow_architecture(&mut given, Some(&custom));
        assert_eq!(given.get("ImageId"), None);
        let mut given = BTreeMap::new();
        follow_architecture(&mut given, Some(&x86));
        assert!(given.is_empty());
        assert!(TEMPLATE.contains(&default_image(Architecture::X86_64)));
    }

    #[test]
    fn a_missing_parameter_names_its_flag() {
        let e = flag_hint(anyhow!(
            "CreateStack s: ValidationError: Missing parameter VpcId"
        ));
        assert!(e.to_string().ends_with("(pass --vpc-id)"), "{e}");
        let e = flag_hint(anyhow!("x: Missing parameter AlarmTopicArn"));
        assert!(
            e.to_string()
                .ends_with("(pass --parameter AlarmTopicArn=VALUE)"),
            "{e}"
        );
        let e = flag_hint(anyhow!("x: something else"));
        assert_eq!(e.to_string(), "x: something else");
        assert_eq!(flag_for("WorkerMaxSize"), "--workers");
        assert_eq!(flag_for("GatewaySha256"), "--release (or --upload-release)");
    }

    #[test]
    fn a_failure_names_the_failed_resources_causes_first() {
        use aws_sdk_cloudformation::types::{ResourceStatus, StackStatus};
        let event = |id: &str, status: ResourceStatus, reason: &str| {
            StackEvent::builder()
                .event_id(id)
                .logical_resource_id(id)
                .resource_type("AWS::DynamoDB::Table")
                .resource_status(status)
                .resource_status_reason(reason)
                .build()
        };
        let failed = [
            event(
                "Results",
                ResourceStatus::CreateFailed,
                "Resource creation cancelled",
            ),
            event(
                "Readings",
                ResourceStatus::CreateFailed,
                "Table already exists",
            ),
        ];
        let stack = Stack::builder()
            .stack_name("airq")
            .stack_status(StackStatus::RollbackComplete)
            .stack_status_reason("The following resource(s) failed to create: [Readings]")
            .build();
        let e = failure("airq", &stack, &failed).to_string();
        let readings =
            e.find("Readings (AWS::DynamoDB::Table): CREATE_FAILED: Table already exists");
        let results =
            e.find("Results (AWS::DynamoDB::Table): CREATE_FAILED: Resource creation cancelled");
        assert!(
            readings.is_some() && results.is_some() && readings < results,
            "{e}"
        );
        assert!(
            e.starts_with("stack airq ended in ROLLBACK_COMPLETE (The following"),
            "{e}"
        );
        assert!(e.contains("airq-deploy destroy --stack airq"), "{e}");
        let update = Stack::builder()
            .stack_status(StackStatus::UpdateRollbackComplete)
            .build();
        let e = failure("airq", &update, &[]).to_string();
        assert!(e.contains("as it was before"), "{e}");
    }

    #[test]
    fn a_new_stack_is_protected_from_termination() {
        let conf = aws_sdk_cloudformation::Config::builder()
            .behavior_version(aws_sdk_cloudformation::config::BehaviorVersion::latest())
            .region(aws_sdk_cloudformation::config::Region::new("eu-west-2"))
            .build();
        let cfn = Client::from_conf(conf);
        let request = create_request(&cfn, "airq", "{}", Vec::new());
        assert_eq!(
            request.as_input().get_enable_termination_protection(),
            &Some(true)
        );
    }

    #[test]
    fn a_release_brings_its_digests_and_no_release_clears_them() {
        let mut given = BTreeMap::new();
        let sha = |c: char| c.to_string().repeat(64);
        set_digests(
            &mut given,
            &[
                ("airq-worker", sha('c')),
                ("airq-master", sha('a')),
                ("airq-gateway", sha('b')),
            ],
        );
        assert_eq!(given["MasterSha256"], sha('a'));
        assert_eq!(given["GatewaySha256"], sha('b'));
        assert_eq!(given["WorkerSha256"], sha('c'));
        set_digests(&mut given, &[]);
        for (_, p) in param::DIGESTS {
            assert_eq!(given[p], "", "{p}");
        }
    }

    #[test]
    fn group_sizes() {
        assert_eq!(GroupSize::parse("1:10"), Ok(GroupSize { min: 1, max: 10 }));
        assert_eq!(
            GroupSize::parse(" 0 : 2 "),
            Ok(GroupSize { min: 0, max: 2 })
        );
        for bad in ["1", "3:2", "1:1", "a:b", "1:2:2", "-1:2", ""] {
            assert!(GroupSize::parse(bad).is_err(), "{bad}");
        }
        let old = GroupSize::parse("1:10:2").unwrap_err();
        assert!(old.contains("no DESIRED"), "{old}");
        let one = GroupSize::parse("1:1").unwrap_err();
        assert!(one.contains("rolling update"), "{one}");
    }

    #[test]
    fn flags_become_parameters() {
        let args = StackArgs {
            stack: Some("airq".into()),
            upload_release: None,
            release: None,
            compute: Some(false),
            architecture: Some(Architecture::Arm64),
            image_id: None,
            vpc_id: Some("vpc-1".into()),
            subnet_ids: Some("subnet-1,subnet-2".into()),
            master_instance_type: None,
            gateway_instance_type: None,
            worker_instance_type: Some("c7g.large".into()),
            workers: Some(GroupSize { min: 1, max: 8 }),
            gateways: None,
            backlog_per_worker: Some(12.5),
            parameters: vec![("OldestMessageAgeThreshold".into(), "600".into())],
            stack_timeout: Duration::from_secs(60),
        };
        let data = DataPlane {
            max_receives: Some(5),
            result_object_days: None,
        };
        let g = given_parameters("t1-", &args, &data);
        let get = |k: &str| g.get(k).map(String::as_str);
        assert_eq!(get("Prefix"), Some("t1-"));
        assert_eq!(get("Compute"), Some("false"));
        assert_eq!(get("Architecture"), Some("arm64"));
        assert_eq!(get("SubnetIds"), Some("subnet-1,subnet-2"));
        assert_eq!(get("WorkerMinSize"), Some("1"));
        assert_eq!(get("WorkerMaxSize"), Some("8"));
        assert_eq!(get("BacklogPerWorkerTarget"), Some("12.5"));
        assert_eq!(get("MaxReceives"), Some("5"));
        assert_eq!(get("OldestMessageAgeThreshold"), Some("600"));
        assert_eq!(get("ResultObjectDays"), None);
        assert_eq!(get("GatewayMinSize"), None);
        assert_eq!(get("Release"), None);
    }

    #[test]
    fn settings_are_completed_with_region_and_endpoint() {
        let out = settings(
            Some("export AIRQ_BACKEND=aws\nexport AIRQ_AWS_PREFIX=t1-\nexport AIRQ_BUCKET=b\n"),
            Some("eu-west-2"),
            Some("http://127.0.0.1:5000"),
        );
        assert_eq!(
            out,
            "export AWS_REGION=eu-west-2\nexport AIRQ_AWS_ENDPOINT_URL=http://127.0.0.1:5000\n\
             export AIRQ_BACKEND=aws\nexport AIRQ_AWS_PREFIX=t1-\nexport AIRQ_BUCKET=b\n"
        );
        let out = settings(Some("AWS_REGION=us-east-1\nAIRQ_BUCKET=b"), Some("x"), None);
        assert_eq!(
            out,
            "export AIRQ_BACKEND=aws\nexport AWS_REGION=us-east-1\nexport AIRQ_BUCKET=b\n"
        );
    }

    #[test]
    fn stack_names() {
        assert!(parse_stack_name("airq-prod").is_ok());
        for bad in ["", "1airq", "a_b", &"a".repeat(129)] {
            assert!(parse_stack_name(bad).is_err(), "{bad}");
        }
    }
}
