//! The CloudFormation template (`deploy/cloudformation/airq.yaml`):
//!
//! 1. it passes `cfn-lint` (installed into `.venv/` by scripts/test.sh);
//! 2. its data plane is the one the adapters expect (keys, indexes, TTL
//!    attributes, queue redrive, bucket rules: `airq_aws::schema`);
//! 3. each binary's IAM role grants exactly what `airq_aws::permissions`
//!    says the binary calls, on the right resources, and nothing more (and
//!    so does the operators' role for `airq-deploy migrate`);
//! 4. the workers' scaling policy tracks backlog per instance;
//! 5. the instances get their binary and settings from the stack, and no
//!    credentials;
//! 6. it deploys on moto's CloudFormation with `Compute=false`, and the
//!    real binaries, configured only by the stack's `Settings` output,
//!    ingest the sample and answer a direct and a queued query with the
//!    same CSV; then the stack is deleted. With `Compute=true` it deploys
//!    there too, less the resource types moto lacks (alarms, the scaling
//!    policy).
//!
//! Why the IAM check is static: moto (5.2.5) evaluates IAM policies only
//! when its server is started with `INITIAL_NO_AUTH_ACTION_COUNT` (then
//! for every client, the other suites' too), and even then it matches a
//! statement's resources only for SQS and S3: a DynamoDB request is
//! authorised as if on the resource `*`, which a least-privilege statement
//! naming its tables never matches, so a role scoped like ours would be
//! refused every DynamoDB call, and a role that passed would prove nothing
//! about resources. Instead the template is evaluated (its `Fn::Sub`,
//! `Fn::GetAtt` and `Ref` resolved for a sample prefix, account and
//! region) and each role's grants, as (action, resource ARN) pairs, are
//! compared both ways with the list the adapters export
//! (`airq_aws::permissions`), whose every entry names the adapter method
//! that makes the call.
#![cfg(feature = "aws")]

mod support;

use airq_aws::permissions::{Binary, Resource};
use airq_aws::schema;
use airq_aws::ResourceNames;
use airq_deploy::emulator;
use aws_sdk_cloudformation::types::{Capability, Parameter, StackStatus};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use support::{expected_csv, queued, run, start, HOUR_ALL, SAMPLE};

const TEMPLATE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/cloudformation/airq.yaml");
/// The pinned cfn-lint (scripts/test.sh installs it).
const CFN_LINT: &str = "cfn-lint==1.58.0";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace")
        .to_path_buf()
}

/// The template as JSON. It is written in long form (`Ref:`, `Fn::Sub:`),
/// so a plain YAML parser reads it.
fn template() -> Value {
    let text = std::fs::read_to_string(TEMPLATE).expect("reading the template");
    serde_norway::from_str(&text).expect("the template is plain YAML (long-form intrinsics only)")
}

fn resource<'a>(t: &'a Value, id: &str) -> &'a Value {
    let r = &t["Resources"][id];
    assert!(r.is_object(), "the template has no resource {id}");
    r
}

fn props<'a>(t: &'a Value, id: &str) -> &'a Value {
    &resource(t, id)["Properties"]
}

// ------------------------------------------------------------------ cfn-lint

#[test]
fn the_template_passes_cfn_lint() {
    let venv = std::env::var_os("AIRQ_VENV")
        .map(PathBuf::from)
        .map(|v| if v.is_absolute() { v } else { root().join(v) })
        .unwrap_or_else(|| root().join(".venv"));
    let lint = venv.join("bin").join("cfn-lint");
    assert!(
        lint.is_file(),
        "{} is missing: install it with `{}/bin/python -m pip install {CFN_LINT}` \
         (bash scripts/test.sh does, after scripts/moto.sh has made the virtual environment)",
        lint.display(),
        venv.display()
    );
    let out = Command::new(&lint)
        .arg("--")
        .arg(TEMPLATE)
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", lint.display()));
    // Exit status 0: no error, no warning (2 = errors, 4 = warnings).
    assert!(
        out.status.success(),
        "cfn-lint found problems ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

// ------------------------------------------------------------------ evaluation

/// Enough of CloudFormation's intrinsic functions to resolve the names,
/// ARNs and settings of the template for given parameters.
struct Eval<'a> {
    template: &'a Value,
    params: Map<String, Value>,
    account: &'static str,
    region: &'static str,
}

impl<'a> Eval<'a> {
    fn new(template: &'a Value, given: &[(&str, &str)]) -> Eval<'a> {
        let mut params = Map::new();
        for (name, p) in template["Parameters"].as_object().expect("Parameters") {
            if let Some(d) = p.get("Default") {
                params.insert(name.clone(), d.clone());
            }
        }
        for (k, v) in given {
            assert!(template["Parameters"].get(*k).is_some(), "no parameter {k}");
            params.insert((*k).to_owned(), Value::String((*v).to_owned()));
        }
        Eval {
            template,
            params,
            account: "123456789012",
            region: "eu-west-2",
        }
    }

    fn condition(&self, name: &str) -> bool {
        let c = &self.template["Conditions"][name];
        assert!(!c.is_null(), "no condition {name}");
        self.truth(c)
    }

    fn truth(&self, c: &Value) -> bool {
        let (f, args) = single(c).unwrap_or_else(|| panic!("not a condition: {c}"));
        match f {
            "Fn::Equals" => self.eval(&args[0]) == self.eval(&args[1]),
            "Fn::Not" => !self.truth(&args[0]),
            "Fn::And" => args.as_array().expect("list").iter().all(|a| self.truth(a)),
            "Fn::Or" => args.as_array().expect("list").iter().any(|a| self.truth(a)),
            "Condition" => self.condition(args.as_str().expect("name")),
            other => panic!("unsupported condition function {other}"),
        }
    }

    fn name_of(&self, id: &str) -> String {
        let r = resource(self.template, id);
        let prop = match r["Type"].as_str() {
            Some("AWS::DynamoDB::Table") => "TableName",
            Some("AWS::SQS::Queue") => "QueueName",
            Some("AWS::S3::Bucket") => "BucketName",
            Some("AWS::Logs::LogGroup") => "LogGroupName",
            Some("AWS::SSM::Parameter") => "Name",
            Some("AWS::AutoScaling::AutoScalingGroup") => "AutoScalingGroupName",
            other => panic!("no name for {id} ({other:?})"),
        };
        text(&self.eval(&r["Properties"][prop]))
    }

    fn reference(&self, name: &str) -> Value {
        match name {
            "AWS::Region" => return json!(self.region),
            "AWS::AccountId" => return json!(self.account),
            "AWS::Partition" => return json!("aws"),
            "AWS::URLSuffix" => return json!("amazonaws.com"),
            "AWS::StackName" => return json!("airq"),
            "AWS::StackId" => {
                return json!(format!(
                    "arn:aws:cloudformation:{}:{}:stack/airq/0b3c2d10-0000-4000-8000-000000000000",
                    self.region, self.account
                ))
            }
            "AWS::NoValue" => return Value::Null,
            _ => {}
        }
        if let Some(v) = self.params.get(name) {
            return v.clone();
        }
        if self.template["Parameters"].get(name).is_some() {
            // A parameter without a default, not given: a placeholder.
            return json!(format!("<{name}>"));
        }
        match resource(self.template, name)["Type"].as_str() {
            Some(
                "AWS::DynamoDB::Table"
                | "AWS::S3::Bucket"
                | "AWS::Logs::LogGroup"
                | "AWS::SSM::Parameter"
                | "AWS::AutoScaling::AutoScalingGroup",
            ) => json!(self.name_of(name)),
            Some("AWS::SQS::Queue") => json!(format!(
                "https://sqs.{}.amazonaws.com/{}/{}",
                self.region,
                self.account,
                self.name_of(name)
            )),
            other => json!(format!("<{name}: {other:?}>")),
        }
    }

    fn attribute(&self, id: &str, attr: &str) -> Value {
        let kind = resource(self.template, id)["Type"].as_str().unwrap_or("");
        let (region, account) = (self.region, self.account);
        json!(match (kind, attr) {
            ("AWS::DynamoDB::Table", "Arn") => format!(
                "arn:aws:dynamodb:{region}:{account}:table/{}",
                self.name_of(id)
            ),
            ("AWS::SQS::Queue", "Arn") => {
                format!("arn:aws:sqs:{region}:{account}:{}", self.name_of(id))
            }
            ("AWS::SQS::Queue", "QueueName") => self.name_of(id),
            ("AWS::S3::Bucket", "Arn") => format!("arn:aws:s3:::{}", self.name_of(id)),
            _ => format!("<{id}.{attr}>"),
        })
    }

    fn sub(&self, s: &str, vars: &Map<String, Value>) -> String {
        let mut out = String::new();
        let mut rest = s;
        while let Some(at) = rest.find("${") {
            out.push_str(&rest[..at]);
            let after = &rest[at + 2..];
            let end = after
                .find('}')
                .unwrap_or_else(|| panic!("unclosed ${{ in {s}"));
            let name = &after[..end];
            if let Some(lit) = name.strip_prefix('!') {
                out.push_str("${");
                out.push_str(lit);
                out.push('}');
            } else if let Some(v) = vars.get(name) {
                out.push_str(&text(&self.eval(v)));
            } else if let Some((id, attr)) = name.split_once('.') {
                out.push_str(&text(&self.attribute(id, attr)));
            } else {
                out.push_str(&text(&self.reference(name)));
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        out
    }

    fn eval(&self, v: &Value) -> Value {
        if let Some((f, args)) = single(v) {
            match f {
                "Ref" => return self.reference(args.as_str().expect("Ref name")),
                "Fn::GetAtt" => {
                    let (id, attr) = match args {
                        Value::Array(a) => (text(&a[0]), text(&a[1])),
                        Value::String(s) => {
                            let (i, a) = s.split_once('.').expect("Res.Attr");
                            (i.to_owned(), a.to_owned())
                        }
                        other => panic!("bad Fn::GetAtt {other}"),
                    };
                    return self.attribute(&id, &attr);
                }
                "Fn::Sub" => {
                    return json!(match args {
                        Value::String(s) => self.sub(s, &Map::new()),
                        Value::Array(a) => self.sub(
                            a[0].as_str().expect("Fn::Sub string"),
                            a[1].as_object().expect("Fn::Sub variables")
                        ),
                        other => panic!("bad Fn::Sub {other}"),
                    })
                }
                "Fn::If" => {
                    let a = args.as_array().expect("Fn::If list");
                    let cond = self.condition(a[0].as_str().expect("condition name"));
                    return self.eval(if cond { &a[1] } else { &a[2] });
                }
                "Fn::Base64" => return self.eval(args),
                f if f.starts_with("Fn::") => panic!("the test cannot evaluate {f}"),
                _ => {}
            }
        }
        match v {
            Value::Object(m) => Value::Object(
                m.iter()
                    .map(|(k, v)| (k.clone(), self.eval(v)))
                    .filter(|(_, v)| !v.is_null())
                    .collect(),
            ),
            Value::Array(a) => Value::Array(
                a.iter()
                    .map(|v| self.eval(v))
                    .filter(|v| !v.is_null())
                    .collect(),
            ),
            other => other.clone(),
        }
    }
}

/// `{ "Fn::X": args }` (or `Ref`, `Condition`) as `("Fn::X", args)`.
fn single(v: &Value) -> Option<(&str, &Value)> {
    let m = v.as_object()?;
    if m.len() != 1 {
        return None;
    }
    let (k, a) = m.iter().next()?;
    (k == "Ref" || k == "Condition" || k.starts_with("Fn::")).then_some((k.as_str(), a))
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => panic!("not a scalar: {other}"),
    }
}

fn list(v: &Value) -> Vec<Value> {
    match v {
        Value::Array(a) => a.clone(),
        Value::Null => Vec::new(),
        other => vec![other.clone()],
    }
}

// ------------------------------------------------------------------ data plane

#[test]
fn names_are_airqs_defaults_under_the_prefix() {
    let t = template();
    for prefix in ["", "p1-"] {
        let e = Eval::new(&t, &[("Prefix", prefix)]);
        let bucket = format!("{prefix}airq-{}-{}", e.account, e.region);
        let want = ResourceNames::with_prefix(prefix, &bucket);
        let [(send, send_dlq), (receive, receive_dlq)] = want.queues();
        let got = [
            ("ReadingsTable", want.readings_table.clone()),
            ("ResultsTable", want.results_table.clone()),
            ("ReceiptsTable", want.receipts_table.clone()),
            ("KeysTable", want.keys_table.clone()),
            ("AlertsTable", want.alerts_table.clone()),
            ("RequestSendQueue", send),
            ("RequestSendDeadLetterQueue", send_dlq),
            ("RequestReceiveQueue", receive),
            ("RequestReceiveDeadLetterQueue", receive_dlq),
            ("Bucket", bucket.clone()),
        ];
        for (id, name) in got {
            assert_eq!(e.name_of(id), name, "{id} under prefix {prefix:?}");
        }
        // What the binaries are told: only these (the names follow).
        let settings = text(&e.eval(&t["Outputs"]["Settings"]["Value"]));
        assert_eq!(
            parse_settings(&settings),
            BTreeMap::from([
                ("AIRQ_BACKEND".to_owned(), "aws".to_owned()),
                ("AWS_REGION".to_owned(), e.region.to_owned()),
                ("AIRQ_AWS_PREFIX".to_owned(), prefix.to_owned()),
                ("AIRQ_BUCKET".to_owned(), bucket.clone()),
            ])
        );
    }
}

/// A table's key schema as `[(attribute, HASH|RANGE)]`.
fn keys(v: &Value) -> Vec<(String, String)> {
    list(v)
        .iter()
        .map(|k| (text(&k["AttributeName"]), text(&k["KeyType"])))
        .collect()
}

fn hash_range(hash: &str, range: Option<&str>) -> Vec<(String, String)> {
    let mut k = vec![(hash.to_owned(), "HASH".to_owned())];
    if let Some(r) = range {
        k.push((r.to_owned(), "RANGE".to_owned()));
    }
    k
}

fn index<'a>(table: &'a Value, name: &str) -> &'a Value {
    table["GlobalSecondaryIndexes"]
        .as_array()
        .and_then(|a| a.iter().find(|i| i["IndexName"] == name))
        .unwrap_or_else(|| panic!("no index {name}"))
}

#[test]
fn what_cannot_be_rebuilt_outlives_the_stack_and_can_be_restored() {
    let t = template();
    let resources = t["Resources"].as_object().expect("resources");
    let retained: BTreeSet<&str> = resources
        .iter()
        .filter(|(_, r)| r["DeletionPolicy"] == "Retain")
        .map(|(id, _)| id.as_str())
        .collect();
    // What `airq-deploy destroy --stack` keeps and says it keeps.
    assert_eq!(
        retained,
        airq_deploy::provision::RETAINED_TABLES
            .into_iter()
            .collect::<BTreeSet<_>>()
    );
    for id in retained {
        let r = &resources[id];
        assert_eq!(r["UpdateReplacePolicy"], "Retain", "{id}");
        assert_eq!(r["Properties"]["DeletionProtectionEnabled"], true, "{id}");
        assert_eq!(
            r["Properties"]["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"], true,
            "{id}"
        );
    }
}

#[test]
fn tables_queues_and_bucket_are_what_the_adapters_expect() {
    let t = template();

    let readings = props(&t, "ReadingsTable");
    assert_eq!(readings["BillingMode"], "PAY_PER_REQUEST");
    assert_eq!(
        keys(&readings["KeySchema"]),
        hash_range(schema::PARTITION_KEY, Some(schema::SORT_KEY))
    );
    let by_country = index(readings, schema::BY_COUNTRY_INDEX);
    assert_eq!(
        keys(&by_country["KeySchema"]),
        hash_range(schema::PARTITION_KEY, Some(schema::COUNTRY_SORT_KEY))
    );
    assert_eq!(by_country["Projection"]["ProjectionType"], "ALL");
    assert_eq!(
        readings["TimeToLiveSpecification"],
        json!({"AttributeName": schema::READINGS_TTL_ATTRIBUTE, "Enabled": true})
    );
    let by_cell = index(readings, schema::BY_CELL_INDEX);
    assert_eq!(
        keys(&by_cell["KeySchema"]),
        hash_range(schema::CELL_KEY, Some(schema::SORT_KEY))
    );
    assert_eq!(by_cell["Projection"]["ProjectionType"], "ALL");

    let results = props(&t, "ResultsTable");
    assert_eq!(results["BillingMode"], "PAY_PER_REQUEST");
    assert_eq!(keys(&results["KeySchema"]), hash_range("id", None));
    let by_purge = index(results, schema::BY_PURGE_INDEX);
    assert_eq!(
        keys(&by_purge["KeySchema"]),
        hash_range(schema::GC_ATTRIBUTE, Some(schema::PURGE_AT_ATTRIBUTE))
    );
    assert_eq!(by_purge["Projection"]["ProjectionType"], "INCLUDE");
    let projected: BTreeSet<String> = list(&by_purge["Projection"]["NonKeyAttributes"])
        .iter()
        .map(text)
        .collect();
    assert_eq!(
        projected,
        BTreeSet::from([
            schema::EXPIRES_AT_ATTRIBUTE.to_owned(),
            "tombstone".to_owned(),
            "csv_key".to_owned()
        ])
    );
    let pending = index(results, schema::BY_PENDING_CLIENT_INDEX);
    assert_eq!(
        keys(&pending["KeySchema"]),
        hash_range(
            schema::PENDING_CLIENT_ATTRIBUTE,
            Some(schema::EXPIRES_AT_ATTRIBUTE)
        )
    );
    assert_eq!(pending["Projection"]["ProjectionType"], "KEYS_ONLY");
    assert_eq!(
        results["TimeToLiveSpecification"],
        json!({"AttributeName": schema::RESULT_TTL_ATTRIBUTE, "Enabled": true})
    );

    let receipts = props(&t, "ReceiptsTable");
    assert_eq!(
        keys(&receipts["KeySchema"]),
        hash_range(schema::FENCE_KEY, None)
    );
    assert_eq!(
        receipts["TimeToLiveSpecification"],
        json!({"AttributeName": schema::FENCE_TTL, "Enabled": true})
    );
    let keys_table = props(&t, "KeysTable");
    assert_eq!(
        keys(&keys_table["KeySchema"]),
        hash_range(schema::KEY_HASH_ATTRIBUTE, None)
    );
    let alerts = props(&t, "AlertsTable");
    assert_eq!(
        keys(&alerts["KeySchema"]),
        hash_range(schema::ALERTS_PK, Some(schema::ALERTS_SK))
    );
    let due = index(alerts, schema::BY_DUE_INDEX);
    assert_eq!(
        keys(&due["KeySchema"]),
        hash_range(
            schema::ALERTS_DUE_ATTRIBUTE,
            Some(schema::ALERTS_NEXT_ATTRIBUTE)
        )
    );
    // Every key attribute is defined with its type, and nothing else is.
    for id in [
        "ReadingsTable",
        "ResultsTable",
        "ReceiptsTable",
        "KeysTable",
        "AlertsTable",
    ] {
        let p = props(&t, id);
        let mut used = BTreeSet::new();
        for k in keys(&p["KeySchema"]) {
            used.insert(k.0);
        }
        for i in list(&p["GlobalSecondaryIndexes"]) {
            for k in keys(&i["KeySchema"]) {
                used.insert(k.0);
            }
        }
        let defined: BTreeSet<String> = list(&p["AttributeDefinitions"])
            .iter()
            .map(|a| text(&a["AttributeName"]))
            .collect();
        assert_eq!(defined, used, "{id}'s attribute definitions");
    }
    let types: BTreeMap<String, String> = list(&results["AttributeDefinitions"])
        .iter()
        .map(|a| (text(&a["AttributeName"]), text(&a["AttributeType"])))
        .collect();
    assert_eq!(types[schema::PURGE_AT_ATTRIBUTE], "N");
    assert_eq!(types[schema::EXPIRES_AT_ATTRIBUTE], "N");

    // Queues: redrive after MaxReceives (default: the binaries' default),
    // dead letters kept 14 days.
    assert_eq!(
        t["Parameters"]["MaxReceives"]["Default"],
        json!(airq_cli::defaults::MAX_RECEIVES)
    );
    for (queue, dlq) in [
        ("RequestSendQueue", "RequestSendDeadLetterQueue"),
        ("RequestReceiveQueue", "RequestReceiveDeadLetterQueue"),
    ] {
        assert_eq!(
            props(&t, queue)["RedrivePolicy"],
            json!({
                "deadLetterTargetArn": {"Fn::GetAtt": [dlq, "Arn"]},
                "maxReceiveCount": {"Ref": "MaxReceives"}
            })
        );
        assert_eq!(props(&t, dlq)["MessageRetentionPeriod"], json!(1_209_600));
    }

    // Bucket: private, encrypted, and the expiry rules the gateways check.
    let bucket = props(&t, "Bucket");
    assert_eq!(
        bucket["PublicAccessBlockConfiguration"],
        json!({"BlockPublicAcls": true, "BlockPublicPolicy": true,
               "IgnorePublicAcls": true, "RestrictPublicBuckets": true})
    );
    assert_eq!(
        bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]
            ["ServerSideEncryptionByDefault"]["SSEAlgorithm"],
        "AES256"
    );
    assert_eq!(t["Parameters"]["ResultObjectDays"]["Default"], json!(8));
    let rules = list(&bucket["LifecycleConfiguration"]["Rules"]);
    let rule = |id: &str| -> Value {
        rules
            .iter()
            .find(|r| r["Id"] == id)
            .unwrap_or_else(|| panic!("no lifecycle rule {id}"))
            .clone()
    };
    let results_rule = rule(schema::RESULTS_RULE);
    assert_eq!(results_rule["Status"], "Enabled");
    assert_eq!(results_rule["Prefix"], schema::RESULTS_PREFIX);
    assert_eq!(
        results_rule["ExpirationInDays"],
        json!({"Ref": "ResultObjectDays"})
    );
    let messages_rule = rule(schema::MESSAGES_RULE);
    assert_eq!(messages_rule["Status"], "Enabled");
    assert_eq!(messages_rule["Prefix"], schema::MESSAGES_PREFIX);
    assert_eq!(messages_rule["ExpirationInDays"], json!(15));
    assert_eq!(rules.len(), 2, "releases/ has no rule: releases are kept");
}

// ------------------------------------------------------------------ IAM

/// The role each binary's instances run with.
fn role_id(b: Binary) -> &'static str {
    match b {
        Binary::Master => "MasterRole",
        Binary::Worker => "WorkerRole",
        Binary::Gateway => "GatewayRole",
    }
}

/// The ARN (pattern) a permission's resource has in a deployment.
fn arn(r: Resource, b: Binary, names: &ResourceNames, e: &Eval, prefix: &str) -> String {
    let (region, account) = (e.region, e.account);
    let table = |name: &str| format!("arn:aws:dynamodb:{region}:{account}:table/{name}");
    let bucket = format!("arn:aws:s3:::{}", names.bucket);
    match r {
        Resource::ReadingsTable => table(&names.readings_table),
        Resource::ReadingsIndex(i) => format!("{}/index/{i}", table(&names.readings_table)),
        Resource::ResultsTable => table(&names.results_table),
        Resource::ResultsIndex(i) => format!("{}/index/{i}", table(&names.results_table)),
        Resource::ReceiptsTable => table(&names.receipts_table),
        Resource::KeysTable => table(&names.keys_table),
        Resource::AlertsTable => table(&names.alerts_table),
        Resource::AlertsIndex(i) => format!("{}/index/{i}", table(&names.alerts_table)),
        Resource::Queue(q) => format!("arn:aws:sqs:{region}:{account}:{prefix}{q}"),
        Resource::Bucket => bucket,
        Resource::ResultObjects => format!("{bucket}/{}*", schema::RESULTS_PREFIX),
        Resource::MessageObjects(q) => {
            format!("{bucket}/{}{prefix}{q}/*", schema::MESSAGES_PREFIX)
        }
        Resource::SegmentObjects => format!("{bucket}/{}*", schema::SEGMENTS_PREFIX),
        Resource::Release => format!(
            "{bucket}/releases/{}/{}/{}",
            text(&e.params["Release"]),
            text(&e.params["Architecture"]),
            b.executable()
        ),
    }
}

/// Every (action, resource) pair the role grants: a statement grants each
/// of its actions on each of its resources. The binaries' roles are for
/// EC2 instances only.
fn grants(t: &Value, e: &Eval, role: &str) -> BTreeSet<(String, String)> {
    let ec2 = json!({"Service": "ec2.amazonaws.com"});
    grants_to(t, e, role, &ec2)
}

/// [`grants`] of a role that `principal` (evaluated) may assume.
/// Actions without a resource type (Session Manager's channels): the only
/// ones granted on `*`.
const ON_ANY_RESOURCE: [&str; 4] = [
    "ssmmessages:CreateControlChannel",
    "ssmmessages:CreateDataChannel",
    "ssmmessages:OpenControlChannel",
    "ssmmessages:OpenDataChannel",
];

/// What an instance itself needs, besides its binary's calls: the boot
/// library and the agent's settings (SSM parameters), its rollout signal,
/// its logs and metrics (the CloudWatch agent), its health report (to its
/// own group only), SSM sessions.
fn instance_needs(e: &Eval, role: &str) -> Vec<(String, String, &'static str)> {
    let (region, account) = (e.region, e.account);
    let stack = text(&e.reference("AWS::StackName"));
    let logs = format!("arn:aws:logs:{region}:{account}:log-group:/airq/{stack}:log-stream:*");
    let mut v = vec![
        (
            "ssm:GetParameter".to_owned(),
            format!("arn:aws:ssm:{region}:{account}:parameter/airq/{stack}/*"),
            "the user data and the CloudWatch agent",
        ),
        (
            "cloudformation:SignalResource".to_owned(),
            text(&e.reference("AWS::StackId")),
            "the boot library's signal",
        ),
        ("logs:CreateLogStream".to_owned(), logs.clone(), "the CloudWatch agent"),
        ("logs:PutLogEvents".to_owned(), logs, "the CloudWatch agent"),
        (
            "ssm:UpdateInstanceInformation".to_owned(),
            format!("arn:aws:ec2:{region}:{account}:instance/*"),
            "the SSM agent",
        ),
        (
            "autoscaling:SetInstanceHealth".to_owned(),
            format!(
                "arn:aws:autoscaling:{region}:{account}:autoScalingGroup:*:autoScalingGroupName/{stack}-{role}"
            ),
            "the boot library's watch",
        ),
    ];
    for a in ON_ANY_RESOURCE {
        v.push((a.to_owned(), "*".to_owned(), "the SSM agent (sessions)"));
    }
    v
}

fn grants_to(t: &Value, e: &Eval, role: &str, principal: &Value) -> BTreeSet<(String, String)> {
    let r = resource(t, role);
    assert_eq!(r["Type"], "AWS::IAM::Role");
    let p = &r["Properties"];
    assert!(
        p.get("ManagedPolicyArns").is_none() && p.get("PermissionsBoundary").is_none(),
        "{role}: inline policies only, so that this test sees every grant"
    );
    let trust = e.eval(&p["AssumeRolePolicyDocument"]["Statement"]);
    assert_eq!(
        trust,
        json!([{"Effect": "Allow", "Principal": principal, "Action": "sts:AssumeRole"}]),
        "{role} may be assumed by {principal} only"
    );
    let mut pairs = BTreeSet::new();
    // Its inline policies, and the policies (AWS::IAM::Policy) made for it,
    // where their condition holds.
    let mut documents: Vec<Value> = list(&p["Policies"])
        .iter()
        .map(|policy| policy["PolicyDocument"].clone())
        .collect();
    for (_, r) in t["Resources"].as_object().expect("Resources") {
        let attached = r["Type"] == "AWS::IAM::Policy"
            && list(&r["Properties"]["Roles"]).contains(&json!({"Ref": role}))
            && r["Condition"].as_str().is_none_or(|c| e.condition(c));
        if attached {
            documents.push(r["Properties"]["PolicyDocument"].clone());
        }
    }
    for document in documents {
        for s in list(&e.eval(&document["Statement"])) {
            let sid = s.get("Sid").map(text).unwrap_or_default();
            assert_eq!(s["Effect"], "Allow", "{role} {sid}");
            for key in ["NotAction", "NotResource", "Condition", "Principal"] {
                assert!(s.get(key).is_none(), "{role} {sid}: no {key}");
            }
            let actions: Vec<String> = list(&s["Action"]).iter().map(text).collect();
            let resources: Vec<String> = list(&s["Resource"]).iter().map(text).collect();
            assert!(!actions.is_empty() && !resources.is_empty(), "{role} {sid}");
            for a in &actions {
                assert!(
                    !a.contains('*') && !a.contains('?'),
                    "{role} {sid}: the action {a} is a wildcard"
                );
                for r in &resources {
                    let named = if r == "*" {
                        ON_ANY_RESOURCE.contains(&a.as_str())
                    } else {
                        (!r.ends_with(":*") || r.ends_with(":log-stream:*")) && !r.contains('<')
                    };
                    assert!(named, "{role} {sid}: {a} on {r} is not on a named resource");
                    pairs.insert((a.clone(), r.clone()));
                }
            }
        }
    }
    pairs
}

#[test]
fn each_role_grants_exactly_what_its_binary_calls() {
    let t = template();
    // Nothing but the roles' inline policies grants anything. A resource
    // policy made only of denials (the bucket's TLS-only rule) grants
    // nothing.
    for (id, r) in t["Resources"].as_object().expect("Resources") {
        let kind = r["Type"].as_str().unwrap_or("");
        let denies_only = list(&r["Properties"]["PolicyDocument"]["Statement"])
            .iter()
            .all(|st| st["Effect"] == "Deny")
            && r["Properties"]["PolicyDocument"]["Statement"].is_array();
        if kind == "AWS::S3::BucketPolicy" && denies_only {
            continue;
        }
        // The instances' shared needs, attached to the three roles and
        // read with them below.
        if id == "InstancePolicy" {
            assert_eq!(kind, "AWS::IAM::Policy");
            continue;
        }
        assert!(
            !matches!(
                kind,
                "AWS::IAM::Policy"
                    | "AWS::IAM::ManagedPolicy"
                    | "AWS::IAM::User"
                    | "AWS::IAM::AccessKey"
                    | "AWS::S3::BucketPolicy"
                    | "AWS::SQS::QueuePolicy"
            ),
            "{id} ({kind}) grants outside the roles"
        );
    }
    let prefix = "p1-";
    let e = Eval::new(
        &t,
        &[
            ("Prefix", prefix),
            ("Release", "v7"),
            ("Architecture", "arm64"),
        ],
    );
    let bucket = e.name_of("Bucket");
    let names = ResourceNames::with_prefix(prefix, &bucket);
    let mut report = String::new();
    for b in Binary::ALL {
        let role = role_id(b);
        let granted = grants(&t, &e, role);
        let mut needed: BTreeMap<(String, String), &str> = BTreeMap::new();
        for p in b.permissions() {
            needed.insert(
                (p.action.to_owned(), arn(p.resource, b, &names, &e, prefix)),
                p.used_by,
            );
        }
        let short = b.executable().trim_start_matches("airq-");
        for (action, res, used_by) in instance_needs(&e, short) {
            needed.insert((action, res), used_by);
        }
        // Without instances (Compute=false) the role is its binary's calls
        // alone.
        let bare = Eval::new(
            &t,
            &[
                ("Prefix", prefix),
                ("Release", "v7"),
                ("Architecture", "arm64"),
                ("Compute", "false"),
            ],
        );
        let only: BTreeSet<(String, String)> = b
            .permissions()
            .iter()
            .map(|p| {
                (
                    p.action.to_owned(),
                    arn(p.resource, b, &names, &bare, prefix),
                )
            })
            .collect();
        assert_eq!(grants(&t, &bare, role), only, "{role} without compute");
        for ((action, res), used_by) in &needed {
            if !granted.contains(&(action.clone(), res.clone())) {
                report.push_str(&format!(
                    "{role} lacks {action} on {res} (needed by {used_by})\n"
                ));
            }
        }
        for (action, res) in &granted {
            if !needed.contains_key(&(action.clone(), res.clone())) {
                report.push_str(&format!(
                    "{role} grants {action} on {res}, which {} never calls\n",
                    b.executable()
                ));
            }
        }

        // Its instances run with it, and only they.
        let profile = match b {
            Binary::Master => "MasterInstanceProfile",
            Binary::Worker => "WorkerInstanceProfile",
            Binary::Gateway => "GatewayInstanceProfile",
        };
        assert_eq!(props(&t, profile)["Roles"], json!([{"Ref": role}]));
        let template_id = profile.replace("InstanceProfile", "LaunchTemplate");
        assert_eq!(
            props(&t, &template_id)["LaunchTemplateData"]["IamInstanceProfile"],
            json!({"Arn": {"Fn::GetAtt": [profile, "Arn"]}})
        );
    }
    // The operators' role for `airq-deploy migrate`: anyone of this
    // account allowed to assume it (no other account), exactly the
    // migration's calls.
    let account_root = json!({"AWS": format!("arn:aws:iam::{}:root", e.account)});
    let granted = grants_to(&t, &e, "MigrateRole", &account_root);
    let needed: BTreeMap<(String, String), &str> = airq_aws::permissions::MIGRATE
        .iter()
        .map(|p| {
            assert_ne!(p.resource, Resource::Release);
            (
                (
                    p.action.to_owned(),
                    arn(p.resource, Binary::Master, &names, &e, prefix),
                ),
                p.used_by,
            )
        })
        .collect();
    for ((action, res), used_by) in &needed {
        if !granted.contains(&(action.clone(), res.clone())) {
            report.push_str(&format!(
                "MigrateRole lacks {action} on {res} (needed by {used_by})\n"
            ));
        }
    }
    for (action, res) in &granted {
        if !needed.contains_key(&(action.clone(), res.clone())) {
            report.push_str(&format!(
                "MigrateRole grants {action} on {res}, which airq-deploy migrate never calls\n"
            ));
        }
    }
    assert!(
        report.is_empty(),
        "the roles differ from airq_aws::permissions:\n{report}"
    );

    // The two refusals the issue names, spelled out.
    let writes = [
        "dynamodb:PutItem",
        "dynamodb:BatchWriteItem",
        "dynamodb:UpdateItem",
        "dynamodb:DeleteItem",
    ];
    let results_arn = arn(Resource::ResultsTable, Binary::Master, &names, &e, prefix);
    let master = grants(&t, &e, "MasterRole");
    assert!(
        !master.iter().any(|(_, r)| r.starts_with(&results_arn)),
        "the master may not touch the results table: {master:?}"
    );
    let readings_arn = arn(Resource::ReadingsTable, Binary::Gateway, &names, &e, prefix);
    for role in ["GatewayRole", "WorkerRole"] {
        let g = grants(&t, &e, role);
        assert!(
            !g.iter()
                .any(|(a, r)| r.starts_with(&readings_arn) && writes.contains(&a.as_str())),
            "{role} may not write readings: {g:?}"
        );
    }
}

// ------------------------------------------------------------------ scaling

#[test]
fn workers_scale_on_backlog_per_instance() {
    let t = template();
    let policies: Vec<(&String, &Value)> = t["Resources"]
        .as_object()
        .expect("Resources")
        .iter()
        .filter(|(_, r)| {
            r["Type"] == "AWS::AutoScaling::ScalingPolicy"
                && r["Properties"]["AutoScalingGroupName"] == json!({"Ref": "WorkerGroup"})
        })
        .collect();
    assert_eq!(policies.len(), 1, "one scaling policy on the workers");
    let p = &policies[0].1["Properties"];
    assert_eq!(p["PolicyType"], "TargetTrackingScaling");
    let tt = &p["TargetTrackingConfiguration"];
    assert_eq!(tt["TargetValue"], json!({"Ref": "BacklogPerWorkerTarget"}));
    let target = &t["Parameters"]["BacklogPerWorkerTarget"];
    assert_eq!(target["Type"], "Number");
    assert_eq!(target["Default"], json!(10));

    let metrics = list(&tt["CustomizedMetricSpecification"]["Metrics"]);
    let by_id: HashMap<String, &Value> = metrics.iter().map(|m| (text(&m["Id"]), m)).collect();
    let returned: Vec<&Value> = metrics.iter().filter(|m| m["ReturnData"] == true).collect();
    assert_eq!(returned.len(), 1, "one expression is tracked");
    let expression = text(&returned[0]["Expression"]);
    // (waiting + in flight) / in service.
    let (sum, per) = expression
        .split_once('/')
        .unwrap_or_else(|| panic!("a ratio: {expression}"));
    let terms: Vec<&str> = sum
        .trim()
        .trim_start_matches('(')
        .trim_end_matches(')')
        .split('+')
        .map(str::trim)
        .collect();
    assert_eq!(terms.len(), 2, "waiting + in flight: {expression}");
    let (m1, in_flight, m2) = (by_id[terms[0]], by_id[terms[1]], by_id[per.trim()]);
    assert_eq!(in_flight["ReturnData"], false);
    assert_eq!(
        in_flight["MetricStat"]["Metric"],
        json!({
            "Namespace": "AWS/SQS",
            "MetricName": "ApproximateNumberOfMessagesNotVisible",
            "Dimensions": [{"Name": "QueueName",
                            "Value": {"Fn::GetAtt": ["RequestSendQueue", "QueueName"]}}]
        }),
        "the numerator counts the messages being worked on too"
    );

    assert_eq!(m1["ReturnData"], false);
    assert_eq!(
        m1["MetricStat"]["Metric"],
        json!({
            "Namespace": "AWS/SQS",
            "MetricName": "ApproximateNumberOfMessagesVisible",
            "Dimensions": [{"Name": "QueueName",
                            "Value": {"Fn::GetAtt": ["RequestSendQueue", "QueueName"]}}]
        }),
        "the numerator counts RequestSend's waiting messages"
    );
    assert_eq!(m2["ReturnData"], false);
    assert_eq!(
        m2["MetricStat"]["Metric"],
        json!({
            "Namespace": "AWS/AutoScaling",
            "MetricName": "GroupInServiceInstances",
            "Dimensions": [{"Name": "AutoScalingGroupName", "Value": {"Ref": "WorkerGroup"}}]
        }),
        "the denominator is the worker group's in-service instances"
    );
    // The group publishes that metric.
    let group = props(&t, "WorkerGroup");
    let collected: Vec<String> = list(&group["MetricsCollection"])
        .iter()
        .flat_map(|c| list(&c["Metrics"]))
        .map(|m| text(&m))
        .collect();
    assert!(
        collected.iter().any(|m| m == "GroupInServiceInstances"),
        "the worker group collects GroupInServiceInstances: {collected:?}"
    );
    // And the queue named is the one the workers take from.
    let e = Eval::new(&t, &[("Prefix", "p1-")]);
    assert_eq!(
        text(&e.eval(&m1["MetricStat"]["Metric"]["Dimensions"][0]["Value"])),
        "p1-RequestSend"
    );

    // No release, no instances; with one, the parameters decide. No
    // desired count anywhere: the scaling policy owns it, and an update
    // that set it would undo the scaling.
    for (id, min, max) in [
        ("WorkerGroup", "WorkerMinSize", "WorkerMaxSize"),
        ("GatewayGroup", "GatewayMinSize", "GatewayMaxSize"),
    ] {
        for (release, want) in [("", ["0", "0"]), ("v1", ["1", "4"])] {
            let e = Eval::new(
                &t,
                &[
                    ("Release", release),
                    ("WorkerMinSize", "1"),
                    ("WorkerMaxSize", "4"),
                    ("GatewayMinSize", "1"),
                    ("GatewayMaxSize", "4"),
                ],
            );
            let p = e.eval(props(&t, id));
            let got = [text(&p["MinSize"]), text(&p["MaxSize"])];
            assert_eq!(got, want, "{id} ({min}, {max}) with release {release:?}");
            assert!(
                p.get("DesiredCapacity").is_none(),
                "{id} sets no desired count"
            );
        }
        let ignore = &resource(&t, id)["UpdatePolicy"]["AutoScalingScheduledAction"];
        assert_eq!(
            ignore["IgnoreUnmodifiedGroupSizeProperties"],
            json!(true),
            "{id}"
        );
    }
    for (release, want) in [("", "0"), ("v1", "1")] {
        let e = Eval::new(&t, &[("Release", release)]);
        let p = e.eval(props(&t, "MasterGroup"));
        for k in ["MinSize", "MaxSize"] {
            assert_eq!(text(&p[k]), want, "master {k} with release {release:?}");
        }
    }
    // At least two gateways by default, and room for a rolling update.
    let params = &t["Parameters"];
    assert_eq!(params["GatewayMinSize"]["Default"], json!(2));
    for p in ["GatewayMaxSize", "WorkerMaxSize"] {
        assert_eq!(params[p]["MinValue"], json!(2), "{p}");
    }
}

/// Every instance's user data: who it is, its binary's digest from the
/// stack, the boot library from the stack, its settings; no credentials;
/// IMDSv2. The gateways behind the load balancer only.
#[test]
fn instances_get_their_settings_from_the_stack_and_no_credentials() {
    let t = template();
    let sha = |c: char| c.to_string().repeat(64);
    let (a, b, c) = (sha('a'), sha('b'), sha('c'));
    let e = Eval::new(
        &t,
        &[
            ("Prefix", "p1-"),
            ("Release", "v7"),
            ("MasterSha256", &a),
            ("GatewaySha256", &b),
            ("WorkerSha256", &c),
        ],
    );
    let boot = e.name_of("BootScript");
    for (id, role, group, digest, settings) in [
        (
            "MasterLaunchTemplate",
            "master",
            "MasterGroup",
            &a,
            "boot AIRQ_METRICS_LISTEN=127.0.0.1:9102",
        ),
        (
            "WorkerLaunchTemplate",
            "worker",
            "WorkerGroup",
            &c,
            "boot AIRQ_METRICS_LISTEN=127.0.0.1:9101",
        ),
        (
            "GatewayLaunchTemplate",
            "gateway",
            "GatewayGroup",
            &b,
            "boot AIRQ_MAX_RECEIVES=3 AIRQ_LISTEN=0.0.0.0:8080 \
             AIRQ_GATEWAY_METRICS_LISTEN=0.0.0.0:9100 AIRQ_TRUSTED_PROXIES=$(vpc_cidrs)",
        ),
    ] {
        let data = e.eval(&props(&t, id)["LaunchTemplateData"]);
        let script = text(&data["UserData"]);
        assert!(script.starts_with("#!/bin/bash\n"), "{id}:\n{script}");
        assert!(
            script.contains(&format!("ROLE={role} GROUP={group} SHA={digest} ")),
            "{id} says who it is and its binary's digest:\n{script}"
        );
        assert!(
            script.contains(&format!("--name {boot} ")),
            "{id} reads the boot library:\n{script}"
        );
        assert!(
            script.lines().any(|l| l == settings),
            "{id}: {settings}\n{script}"
        );
        // The group it signals launches it.
        assert_eq!(
            props(&t, group)["LaunchTemplate"]["LaunchTemplateId"],
            json!({"Ref": id})
        );
        assert_eq!(
            data["MetadataOptions"]["HttpTokens"], "required",
            "{id}: IMDSv2"
        );
    }
    for id in [
        "BootScript",
        "AgentConfig",
        "MasterLaunchTemplate",
        "WorkerLaunchTemplate",
        "GatewayLaunchTemplate",
    ] {
        let all = e.eval(resource(&t, id)).to_string().to_ascii_lowercase();
        for secret in [
            "aws_access_key_id",
            "aws_secret_access_key",
            "aws_session_token",
        ] {
            assert!(!all.contains(secret), "{id} carries no credentials");
        }
    }
    let tg = props(&t, "GatewayTargetGroup");
    // Liveness: a backend stall must not replace every gateway.
    assert_eq!(tg["HealthCheckPath"], "/healthz");
    assert_eq!(tg["Port"], json!(8080));
    assert_eq!(props(&t, "LoadBalancer")["Scheme"], "internet-facing");
    assert_eq!(
        props(&t, "GatewayIngressFromLoadBalancer")["SourceSecurityGroupId"],
        json!({"Ref": "LoadBalancerSecurityGroup"})
    );
    for sg in [
        "WorkerSecurityGroup",
        "MasterSecurityGroup",
        "GatewaySecurityGroup",
        "OperatorsSecurityGroup",
    ] {
        assert!(
            props(&t, sg).get("SecurityGroupIngress").is_none(),
            "{sg} has no inbound rule of its own"
        );
    }
    assert!(
        t["Parameters"].get("VpcCidr").is_none(),
        "the trusted proxies come from the VPC itself (vpc_cidrs), not a parameter"
    );
}

/// TLS at the load balancer when a certificate is given (port 80 then only
/// redirects), the operators' paths answered by the load balancer itself,
/// metrics reachable from inside the VPC only, and a bucket that refuses
/// plain HTTP.
#[test]
fn the_internet_gets_tls_and_not_the_operators_paths() {
    let t = template();
    assert_eq!(t["Parameters"]["CertificateArn"]["Default"], "");
    let https = resource(&t, "HttpsListener");
    assert_eq!(https["Condition"], "CreateTls");
    let p = &https["Properties"];
    assert_eq!((&p["Protocol"], &p["Port"]), (&json!("HTTPS"), &json!(443)));
    assert_eq!(
        p["Certificates"][0]["CertificateArn"],
        json!({"Ref": "CertificateArn"})
    );
    assert!(
        text(&p["SslPolicy"]).starts_with("ELBSecurityPolicy-TLS13-"),
        "TLS 1.3 and 1.2 only"
    );
    // Port 80: a redirect to 443 with a certificate, the API without one.
    let http = &props(&t, "HttpListener")["DefaultActions"][0]["Fn::If"];
    assert_eq!(http[0], "HasCertificate");
    assert_eq!(http[1]["Type"], "redirect");
    assert_eq!(http[1]["RedirectConfig"]["Protocol"], "HTTPS");
    assert_eq!(http[1]["RedirectConfig"]["Port"], "443");
    assert_eq!(http[2]["Type"], "forward");
    let sg = &props(&t, "LoadBalancerSecurityGroup")["SecurityGroupIngress"];
    let ports: BTreeSet<i64> = list(sg)
        .iter()
        .filter_map(|r| r["FromPort"].as_i64())
        .collect();
    assert_eq!(ports, BTreeSet::from([80, 443]));

    // /metrics and /readyz never reach a gateway from the internet, on
    // whichever listener serves the API.
    let rule = props(&t, "OperationsPathsRule");
    assert_eq!(
        rule["ListenerArn"]["Fn::If"],
        json!(["HasCertificate", {"Ref": "HttpsListener"}, {"Ref": "HttpListener"}])
    );
    let paths: BTreeSet<String> = list(&rule["Conditions"][0]["PathPatternConfig"]["Values"])
        .iter()
        .map(text)
        .collect();
    assert_eq!(
        paths,
        BTreeSet::from(["/metrics".to_owned(), "/readyz".to_owned()])
    );
    assert_eq!(rule["Actions"][0]["Type"], "fixed-response");
    assert_eq!(
        rule["Actions"][0]["FixedResponseConfig"]["StatusCode"],
        "404"
    );
    // Metrics inside the VPC only: from hosts an operator puts in the
    // operators' group.
    let metrics = props(&t, "GatewayMetricsFromOperators");
    assert_eq!(metrics["FromPort"], json!(9100));
    assert_eq!(metrics["ToPort"], json!(9100));
    assert_eq!(
        metrics["SourceSecurityGroupId"],
        json!({"Ref": "OperatorsSecurityGroup"})
    );

    // The bucket: every request over plain HTTP denied.
    let policy = &props(&t, "BucketTlsOnly")["PolicyDocument"]["Statement"][0];
    assert_eq!(policy["Effect"], "Deny");
    assert_eq!(policy["Action"], "s3:*");
    assert_eq!(policy["Condition"]["Bool"]["aws:SecureTransport"], "false");
    let url = &t["Outputs"]["GatewayUrl"]["Value"]["Fn::If"];
    assert_eq!(url[0], "HasCertificate");
    assert!(text(&url[1]["Fn::Sub"]).starts_with("https://"));
}

/// Alarms that reach someone: every alarm notifies, firing and clearing,
/// the given topic or the stack's own (made whenever none is given), and
/// has a runbook in docs/operations.md. The load balancer's own 5xx count
/// (a total outage) and its healthy hosts are watched.
#[test]
fn every_alarm_reaches_someone_and_has_a_runbook() {
    let t = template();
    let runbooks =
        std::fs::read_to_string(root().join("docs/operations.md")).expect("docs/operations.md");
    let to_topic =
        json!([{"Fn::If": ["HasAlarmTopic", {"Ref": "AlarmTopicArn"}, {"Ref": "AlarmTopic"}]}]);
    let alarms: Vec<&String> = t["Resources"]
        .as_object()
        .expect("resources")
        .iter()
        .filter(|(_, r)| r["Type"] == "AWS::CloudWatch::Alarm")
        .map(|(id, _)| id)
        .collect();
    assert!(alarms.len() >= 6, "{alarms:?}");
    for id in alarms {
        let p = props(&t, id);
        assert_eq!(p["AlarmActions"], to_topic, "{id} notifies");
        assert_eq!(p["OKActions"], to_topic, "{id} says when it clears");
        assert!(
            runbooks.contains(&format!("\n## {id}\n")),
            "docs/operations.md has no runbook for {id}"
        );
    }
    // The topic exists whenever compute does and no topic is given.
    let topic = resource(&t, "AlarmTopic");
    assert_eq!(topic["Condition"], "CreateAlarmTopic");
    assert_eq!(
        t["Conditions"]["CreateAlarmTopic"],
        json!({"Fn::And": [{"Condition": "CreateCompute"}, {"Fn::Not": [{"Condition": "HasAlarmTopic"}]}]})
    );
    // A total outage: the load balancer's own 5xx, and no healthy host.
    let metrics: Vec<String> = list(&props(&t, "Gateway5xxAlarm")["Metrics"])
        .iter()
        .filter_map(|m| {
            m["MetricStat"]["Metric"]["MetricName"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    assert!(
        metrics.iter().any(|m| m == "HTTPCode_ELB_5XX_Count"),
        "{metrics:?}"
    );
    let healthy = props(&t, "NoHealthyGatewayAlarm");
    assert_eq!(healthy["MetricName"], "HealthyHostCount");
    assert_eq!(healthy["TreatMissingData"], "breaching");
}

/// The gateways scale too (GatewayMaxSize did nothing without a policy):
/// on the load balancer's requests per gateway.
#[test]
fn gateways_scale_on_requests_per_gateway() {
    let t = template();
    let p = props(&t, "GatewayRequestsScalingPolicy");
    assert_eq!(p["AutoScalingGroupName"], json!({"Ref": "GatewayGroup"}));
    assert_eq!(p["PolicyType"], "TargetTrackingScaling");
    let tt = &p["TargetTrackingConfiguration"];
    assert_eq!(
        tt["TargetValue"],
        json!({"Ref": "GatewayRequestsPerTarget"})
    );
    let metric = &tt["PredefinedMetricSpecification"];
    assert_eq!(metric["PredefinedMetricType"], "ALBRequestCountPerTarget");
    let e = Eval::new(&t, &[("Prefix", "p1-")]);
    let label = text(&e.eval(&metric["ResourceLabel"]));
    // The policy's form, `app/…/…/targetgroup/…/…`: the two full names.
    assert_eq!(
        label,
        "<LoadBalancer.LoadBalancerFullName>/<GatewayTargetGroup.TargetGroupFullName>"
    );
}

/// Rollouts with a health gate: every group replaces one instance at a
/// time and waits for each new one's signal (sent by the boot library once
/// its binary answers), scaling and health replacement suspended
/// meanwhile; the gateways and workers keep one instance in service.
#[test]
fn rollouts_wait_for_each_instance_and_stop_on_failure() {
    let t = template();
    for (id, in_service) in [
        ("MasterGroup", json!(0)),
        ("WorkerGroup", json!({"Fn::If": ["HasRelease", "1", "0"]})),
        ("GatewayGroup", json!({"Fn::If": ["HasRelease", "1", "0"]})),
    ] {
        let u = &resource(&t, id)["UpdatePolicy"]["AutoScalingRollingUpdate"];
        assert_eq!(u["MaxBatchSize"], json!(1), "{id}");
        assert_eq!(u["MinInstancesInService"], in_service, "{id}");
        assert_eq!(u["WaitOnResourceSignals"], json!(true), "{id}");
        assert_eq!(u["PauseTime"], json!("PT15M"), "{id}");
        let suspended: BTreeSet<String> = list(&u["SuspendProcesses"]).iter().map(text).collect();
        for p in [
            "HealthCheck",
            "ReplaceUnhealthy",
            "AZRebalance",
            "AlarmNotification",
            "ScheduledActions",
        ] {
            assert!(suspended.contains(p), "{id} suspends {p}");
        }
        for p in ["Launch", "Terminate", "AddToLoadBalancer"] {
            assert!(!suspended.contains(p), "{id} must not suspend {p}");
        }
        let p = props(&t, id);
        assert_eq!(
            p["AutoScalingGroupName"],
            json!({"Fn::Sub": format!("${{AWS::StackName}}-{}", id.trim_end_matches("Group").to_ascii_lowercase())}),
            "{id}: named, so that its instances' health report can be scoped to it"
        );
        assert!(
            p["HealthCheckGracePeriod"].as_i64().unwrap_or(0) >= 300,
            "{id}: the boot (agent, download, start) fits in the grace period"
        );
    }
    assert_eq!(props(&t, "GatewayGroup")["HealthCheckType"], "ELB");
    // Scale-in drains the workers: the hook holds the instance while the
    // watch stops the worker, longer than the worker's stop timeout (90 s).
    let hooks = list(&props(&t, "WorkerGroup")["LifecycleHookSpecificationList"]);
    assert_eq!(hooks.len(), 1);
    assert_eq!(
        hooks[0]["LifecycleTransition"],
        "autoscaling:EC2_INSTANCE_TERMINATING"
    );
    assert_eq!(hooks[0]["DefaultResult"], "CONTINUE");
    assert!(hooks[0]["HeartbeatTimeout"].as_i64().unwrap_or(0) > 90);
    // A digest per binary, checked by the boot library; set by provision.
    for p in ["MasterSha256", "GatewaySha256", "WorkerSha256"] {
        assert_eq!(
            t["Parameters"][p]["AllowedPattern"],
            json!("^([0-9a-f]{64})?$"),
            "{p}"
        );
    }
}

/// Logs and metrics one can read on AWS: each binary's log file shipped
/// to the stack's log group (with retention), the metrics the alarms and
/// the dashboard read scraped from each binary into CloudWatch, an alarm
/// on ingestion freshness fed by them, and a dashboard.
#[test]
fn logs_and_metrics_reach_cloudwatch() {
    let t = template();
    let e = Eval::new(&t, &[("Prefix", "p1-"), ("Release", "v7")]);
    let group = props(&t, "LogGroup");
    assert_eq!(group["RetentionInDays"], json!({"Ref": "LogRetentionDays"}));
    let agent: Value =
        serde_json::from_str(&text(&e.eval(&props(&t, "AgentConfig")["Value"]))).expect("JSON");
    let logs = &agent["logs"];
    let files: Vec<(String, String)> = list(&logs["logs_collected"]["files"]["collect_list"])
        .iter()
        .map(|f| (text(&f["file_path"]), text(&f["log_group_name"])))
        .collect();
    let boot = text(&e.eval(&props(&t, "BootScript")["Value"]));
    for role in ["master", "gateway", "worker"] {
        let file = format!("/var/log/airq/airq-{role}.log");
        assert!(
            files.contains(&(file.clone(), "/airq/airq".to_owned())),
            "{file} is shipped: {files:?}"
        );
    }
    assert!(
        boot.contains("StandardOutput=append:/var/log/airq/airq-$ROLE.log"),
        "the unit writes the file the agent ships"
    );
    let prometheus = &logs["metrics_collected"]["prometheus"];
    assert_eq!(prometheus["log_group_name"], "/airq/airq");
    let emf = &prometheus["emf_processor"];
    assert_eq!(emf["metric_namespace"], "airq/airq");
    // Each binary's metrics come from its own scrape job, on the port its
    // user data gives it.
    let declared: BTreeMap<String, Vec<String>> = list(&emf["metric_declaration"])
        .iter()
        .map(|d| {
            (
                text(&d["label_matcher"]),
                list(&d["metric_selectors"]).iter().map(text).collect(),
            )
        })
        .collect();
    for (role, port) in [("master", 9102), ("gateway", 9100), ("worker", 9101)] {
        assert!(
            declared.contains_key(&format!("^airq-{role}$")),
            "{role}: {declared:?}"
        );
        let id = format!("{}LaunchTemplate", capitalised(role));
        let script = text(&e.eval(&props(&t, &id)["LaunchTemplateData"]["UserData"]));
        assert!(script.contains(&format!(" PORT={port} ")), "{id}");
    }
    assert!(boot.contains("job_name: airq-%s"), "{boot}");
    // The freshness alarm reads what the master publishes.
    let alarm = props(&t, "IngestAgeAlarm");
    assert_eq!(alarm["MetricName"], "airq_ingest_last_success_age_seconds");
    assert!(
        declared["^airq-master$"].contains(&"^airq_ingest_last_success_age_seconds$".to_owned())
    );
    assert_eq!(text(&e.eval(&alarm["Namespace"])), "airq/airq");
    assert_eq!(
        alarm["Dimensions"],
        json!([{"Name": "job", "Value": "airq-master"}])
    );
    assert_eq!(
        alarm["TreatMissingData"], "breaching",
        "a silent master alarms"
    );
    assert_eq!(resource(&t, "IngestAgeAlarm")["Condition"], "RunsRelease");
    let master_metrics =
        std::fs::read_to_string(root().join("master/src/metrics.rs")).expect("master metrics");
    assert!(master_metrics.contains("\"airq_ingest_last_success_age_seconds\""));
    // The dashboard is valid JSON once substituted, and shows the
    // freshness, the queue and the load balancer.
    let body = text(&e.eval(&props(&t, "Dashboard")["DashboardBody"]));
    let dashboard: Value =
        serde_json::from_str(&body).unwrap_or_else(|err| panic!("{err}: {body}"));
    let widgets = list(&dashboard["widgets"]);
    assert!(widgets.len() >= 6, "{widgets:?}");
    for metric in [
        "airq_ingest_last_success_age_seconds",
        "ApproximateNumberOfMessagesVisible",
        "HTTPCode_ELB_5XX_Count",
        "HealthyHostCount",
    ] {
        assert!(body.contains(metric), "the dashboard shows {metric}");
    }
    // SSM sessions instead of SSH: no key pair, no inbound port 22.
    for id in [
        "MasterLaunchTemplate",
        "WorkerLaunchTemplate",
        "GatewayLaunchTemplate",
    ] {
        assert!(
            props(&t, id)["LaunchTemplateData"].get("KeyName").is_none(),
            "{id}"
        );
    }
}

fn capitalised(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
        .unwrap_or_default()
}

/// A fake instance metadata service (IMDSv2): a token first, then the
/// instance's facts; the lifecycle state and whether /metrics answers are
/// the test's to set.
struct FakeImds {
    url: String,
    state: std::sync::Arc<std::sync::Mutex<(String, bool)>>,
}

impl FakeImds {
    fn start() -> FakeImds {
        use std::io::{BufRead, BufReader, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let state = std::sync::Arc::new(std::sync::Mutex::new(("InService".to_owned(), true)));
        let shared = state.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().expect("clone"));
                let mut request = String::new();
                let _ = reader.read_line(&mut request);
                let mut token = false;
                loop {
                    let mut h = String::new();
                    if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                        break;
                    }
                    token |= h.eq_ignore_ascii_case("x-aws-ec2-metadata-token: t0k3n\r\n");
                }
                let mut parts = request.split_whitespace();
                let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
                let (lifecycle, metrics) = shared.lock().expect("state").clone();
                let (status, body) = match (method, path) {
                    ("PUT", "/latest/api/token") => (200, "t0k3n".to_owned()),
                    ("GET", "/metrics") if metrics => (200, "up 1\n".to_owned()),
                    ("GET", "/metrics") => (503, String::new()),
                    ("GET", _) if !token => (401, String::new()),
                    ("GET", "/latest/meta-data/instance-id") => (200, "i-0abc".to_owned()),
                    ("GET", "/latest/meta-data/mac") => (200, "0e:aa:bb".to_owned()),
                    (
                        "GET",
                        "/latest/meta-data/network/interfaces/macs/0e:aa:bb/vpc-ipv4-cidr-blocks",
                    ) => (200, "10.1.0.0/16\n100.64.0.0/16".to_owned()),
                    ("GET", "/latest/meta-data/autoscaling/target-lifecycle-state") => {
                        (200, lifecycle)
                    }
                    _ => (404, String::new()),
                };
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        FakeImds { url, state }
    }

    fn set(&self, lifecycle: &str, metrics: bool) {
        *self.state.lock().expect("state") = (lifecycle.to_owned(), metrics);
    }
}

/// The boot library, run in bash against a fake metadata service with the
/// commands it calls (aws, systemctl, dnf, useradd) recorded instead of
/// run: it derives the trusted proxies from the VPC, refuses a binary
/// whose SHA-256 is not the stack's, writes a hardened unit, signals
/// SUCCESS only once the binary answers and FAILURE on any error, drains
/// on scale-in and reports an instance whose binary stopped answering.
#[test]
fn the_boot_library_checks_signals_drains_and_reports() {
    let t = template();
    let long_prefix = "p".repeat(24);
    let longest = Eval::new(
        &t,
        &[("Prefix", &long_prefix), ("Release", "v1.2.3-abcdef123456")],
    );
    let text_longest = text(&longest.eval(&props(&t, "BootScript")["Value"]));
    // A standard SSM parameter holds 4 KB; stack names may be 128
    // characters long (the evaluation's is "airq").
    assert!(
        text_longest.len() + 124 <= 4096,
        "the boot library is {} bytes: too long for a standard parameter",
        text_longest.len() + 124
    );

    let e = Eval::new(&t, &[("Prefix", "p1-"), ("Release", "v7")]);
    let library = text(&e.eval(&props(&t, "BootScript")["Value"]));
    let imds = FakeImds::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    std::fs::write(d.join("boot.sh"), &library).expect("write");
    std::fs::create_dir_all(d.join("etc/systemd/system")).expect("mkdir");
    std::fs::create_dir_all(d.join("etc/logrotate.d")).expect("mkdir");
    std::fs::write(d.join("release-binary"), b"#!/bin/sh\necho airq\n").expect("write");
    use sha2::Digest;
    let good = hex(&sha2::Sha256::digest(b"#!/bin/sh\necho airq\n"));
    let bad = "0".repeat(64);
    // Runs `body` after the library, as the worker, with its commands
    // stubbed; returns (success, stdout, the commands called).
    let run = |sha: &str, body: &str| -> (bool, String, String) {
        let _ = std::fs::remove_file(d.join("calls"));
        let script = format!(
            r#"set -euo pipefail
calls={d}/calls
aws() {{ echo "aws $*" >>$calls; if [ "$1 $2" = "s3 cp" ]; then cp {d}/release-binary "${{@: -1}}"; fi; }}
systemctl() {{ echo "systemctl $*" >>$calls; }}
dnf() {{ echo "dnf $*" >>$calls; }}
id() {{ return 1; }}
useradd() {{ echo "useradd $*" >>$calls; }}
sleep() {{ :; }}
ROLE=worker GROUP=WorkerGroup SHA={sha} PORT={port} READY={url}/metrics ARGS= STOP=90
export IMDS={url} ETC={d}/etc RUN={d}
. {d}/boot.sh
B={d}/opt/bin/airq-worker
agent() {{ echo "agent" >>$calls; }}
{body}
"#,
            d = d.display(),
            url = imds.url,
            port = imds.url.rsplit(':').next().unwrap_or_default(),
        );
        let out = Command::new("bash")
            .args(["-c", &script])
            .output()
            .expect("bash");
        let calls = std::fs::read_to_string(d.join("calls")).unwrap_or_default();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
            calls,
        )
    };

    // The load balancer's addresses: the VPC's blocks, all of them.
    let (ok, out, _) = run(&good, "vpc_cidrs");
    assert!(ok, "{out}");
    assert_eq!(out.trim(), "10.1.0.0/16,100.64.0.0/16");

    // A binary that is not the release's is refused, and nothing installed.
    let (ok, out, calls) = run(&bad, "fetch");
    assert!(!ok && out.contains("is not the release's"), "{out}");
    assert!(!d.join("opt/bin/airq-worker").exists());
    assert!(
        calls.contains(&format!(
            "aws s3 cp --only-show-errors --region eu-west-2 s3://{}/releases/v7/x86_64/airq-worker",
            e.name_of("Bucket")
        )),
        "{calls}"
    );
    let (ok, out, _) = run("", "fetch");
    assert!(!ok && out.contains("no SHA-256"), "{out}");
    let (ok, out, _) = run(&good, "fetch");
    assert!(ok, "{out}");
    let installed = d.join("opt/bin/airq-worker");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&installed)
            .expect("installed")
            .permissions()
            .mode()
            & 0o777,
        0o755
    );

    // A failed boot tells CloudFormation, which stops the rollout.
    let (ok, _, calls) = run(&bad, "boot AIRQ_METRICS_LISTEN=127.0.0.1:9101");
    assert!(!ok);
    assert!(
        calls.contains(
            "aws cloudformation signal-resource --region eu-west-2 --stack-name airq \
             --logical-resource-id WorkerGroup --unique-id i-0abc --status FAILURE"
        ),
        "{calls}"
    );
    assert!(!calls.contains("--status SUCCESS"), "{calls}");

    // A good one: the unit, the watch timer, then SUCCESS once it answers.
    imds.set("InService", true);
    let (ok, out, calls) = run(&good, "boot AIRQ_METRICS_LISTEN=127.0.0.1:9101");
    assert!(ok, "{out}\n{calls}");
    let unit = std::fs::read_to_string(d.join("etc/systemd/system/airq-worker.service"))
        .expect("the unit");
    for line in [
        "Environment=AIRQ_BACKEND=aws",
        "Environment=AWS_REGION=eu-west-2",
        "Environment=AIRQ_AWS_PREFIX=p1-",
        &format!("Environment=AIRQ_BUCKET={}", e.name_of("Bucket")),
        "Environment=AIRQ_LOG_FORMAT=json",
        "Environment=AIRQ_METRICS_LISTEN=127.0.0.1:9101",
        &format!("ExecStart={} ", installed.display()),
        "User=airq",
        "TimeoutStopSec=90",
        "NoNewPrivileges=true",
        "ProtectSystem=strict",
        "StandardOutput=append:/var/log/airq/airq-worker.log",
    ] {
        assert!(unit.lines().any(|l| l == line), "{line}\n{unit}");
    }
    assert!(d.join("etc/systemd/system/airq-watch.timer").exists());
    let order: Vec<&str> = calls.lines().collect();
    let enabled = order
        .iter()
        .position(|l| l.starts_with("systemctl enable --now airq-worker.service airq-watch.timer"));
    let success = order.iter().position(|l| l.ends_with("--status SUCCESS"));
    assert!(
        matches!((enabled, success), (Some(a), Some(b)) if a < b),
        "started, then SUCCESS: {calls}"
    );
    assert!(
        order.first() == Some(&"agent"),
        "logs are shipped from the start: {calls}"
    );

    // watch: a binary that stops answering is reported after 10 checks
    // (5 minutes), not before; an answer resets the count.
    imds.set("InService", false);
    let unhealthy = "aws autoscaling set-instance-health --region eu-west-2 \
                     --instance-id i-0abc --health-status Unhealthy";
    for _ in 0..9 {
        let (ok, out, calls) = run(&good, "watch");
        assert!(ok, "{out}");
        assert!(!calls.contains(unhealthy), "{calls}");
    }
    imds.set("InService", true);
    let (_, _, _) = run(&good, "watch");
    imds.set("InService", false);
    for _ in 0..9 {
        let (_, _, calls) = run(&good, "watch");
        assert!(!calls.contains(unhealthy), "the count restarted: {calls}");
    }
    let (_, _, calls) = run(&good, "watch");
    assert!(calls.contains(unhealthy), "{calls}");

    // Scale-in: the worker is stopped (it finishes its jobs) while the
    // lifecycle hook holds the instance.
    imds.set("Terminated", true);
    let (ok, _, calls) = run(&good, "watch");
    assert!(ok);
    assert_eq!(calls.trim(), "systemctl stop airq-worker");
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

// ------------------------------------------------------------------ on moto

fn parse_settings(s: &str) -> BTreeMap<String, String> {
    s.lines()
        .filter_map(|l| l.trim().strip_prefix("export "))
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// A binary configured only by `settings` (the stack's `Settings` output)
/// and the emulator's endpoint: no `AIRQ_*` variable of the test's own.
fn configured(name: &str, settings: &BTreeMap<String, String>, endpoint: &str) -> Command {
    let mut cmd = support::command(name);
    cmd.envs(settings);
    cmd.env("AIRQ_AWS_ENDPOINT_URL", endpoint);
    cmd
}

fn param(key: &str, value: &str) -> Parameter {
    Parameter::builder()
        .parameter_key(key)
        .parameter_value(value)
        .build()
}

/// Polls the stack until its status leaves `*_IN_PROGRESS`; returns it.
async fn settle(cfn: &aws_sdk_cloudformation::Client, stack: &str) -> StackStatus {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let out = cfn
            .describe_stacks()
            .stack_name(stack)
            .send()
            .await
            .unwrap_or_else(|e| panic!("DescribeStacks {stack}: {e:?}"));
        let status = out.stacks()[0]
            .stack_status()
            .cloned()
            .expect("a stack status");
        if !status.as_str().ends_with("_IN_PROGRESS") {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "{stack} still {status:?} after 5 minutes"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Creates the stack from the template and waits for CREATE_COMPLETE;
/// returns its id.
async fn create_stack(
    cfn: &aws_sdk_cloudformation::Client,
    stack: &str,
    params: &[(&str, &str)],
) -> String {
    let body = std::fs::read_to_string(TEMPLATE).expect("the template");
    let mut req = cfn
        .create_stack()
        .stack_name(stack)
        .template_body(body)
        .capabilities(Capability::CapabilityIam);
    for (k, v) in params {
        req = req.parameters(param(k, v));
    }
    let created = req
        .send()
        .await
        .unwrap_or_else(|e| panic!("CreateStack {stack}: {e:?}"));
    let stack_id = created.stack_id().expect("a stack id").to_owned();
    let status = settle(cfn, &stack_id).await;
    if status != StackStatus::CreateComplete {
        let events = cfn
            .describe_stack_events()
            .stack_name(&stack_id)
            .send()
            .await;
        panic!("{stack} is {status:?}, not CREATE_COMPLETE: {events:?}");
    }
    stack_id
}

/// The logical ids of the resources the stack made (moto also lists the
/// ones it skipped, without an id).
async fn made(cfn: &aws_sdk_cloudformation::Client, stack_id: &str) -> BTreeSet<String> {
    cfn.list_stack_resources()
        .stack_name(stack_id)
        .send()
        .await
        .expect("ListStackResources")
        .stack_resource_summaries()
        .iter()
        .filter_map(|r| r.logical_resource_id().map(str::to_owned))
        .filter(|id| !id.is_empty())
        .collect()
}

async fn outputs(cfn: &aws_sdk_cloudformation::Client, stack_id: &str) -> BTreeMap<String, String> {
    cfn.describe_stacks()
        .stack_name(stack_id)
        .send()
        .await
        .expect("DescribeStacks")
        .stacks()[0]
        .outputs()
        .iter()
        .filter_map(|o| Some((o.output_key()?.to_owned(), o.output_value()?.to_owned())))
        .collect()
}

async fn empty_bucket(s3: &aws_sdk_s3::Client, bucket: &str) {
    loop {
        let page = s3
            .list_objects_v2()
            .bucket(bucket)
            .send()
            .await
            .expect("ListObjectsV2");
        let keys: Vec<String> = page
            .contents()
            .iter()
            .filter_map(|o| o.key().map(str::to_owned))
            .collect();
        if keys.is_empty() {
            return;
        }
        for k in keys {
            s3.delete_object()
                .bucket(bucket)
                .key(k)
                .send()
                .await
                .expect("DeleteObject");
        }
    }
}

/// The data plane from the template, on moto's CloudFormation, used by the
/// real binaries. moto 5.2.5's CloudFormation creates the tables (with
/// their indexes), queues (with redrive), bucket (with encryption), roles
/// and instance profiles; it ignores a table's TimeToLiveSpecification and
/// a bucket's LifecycleConfiguration, PublicAccessBlockConfiguration and
/// OwnershipControls (checked statically above). Its instances run
/// nothing, so the binaries run here, against a `Compute=false` stack.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stack_deploys_on_moto_and_the_binaries_run_on_it() {
    let endpoint = emulator::endpoint();
    let aws = emulator::clients().await;
    let cfn = emulator::cloudformation().await;
    let prefix = emulator::unique_prefix();
    let stack = format!("airq-{}", prefix.trim_end_matches('-'));

    let stack_id = create_stack(
        &cfn,
        &stack,
        &[
            ("Prefix", &prefix),
            ("Compute", "false"),
            ("MaxReceives", "2"),
            // Unused without compute, but required by their types.
            ("VpcId", "vpc-0123456789abcdef0"),
            (
                "SubnetIds",
                "subnet-0123456789abcdef0,subnet-0123456789abcdef1",
            ),
        ],
    )
    .await;

    // What it made: the data plane and the roles, nothing of compute.
    let made = made(&cfn, &stack_id).await;
    for id in [
        "ReadingsTable",
        "ResultsTable",
        "ReceiptsTable",
        "KeysTable",
        "AlertsTable",
        "RequestSendQueue",
        "RequestSendDeadLetterQueue",
        "RequestReceiveQueue",
        "RequestReceiveDeadLetterQueue",
        "Bucket",
        "MasterRole",
        "WorkerRole",
        "GatewayRole",
        "MigrateRole",
        "MasterInstanceProfile",
        "WorkerInstanceProfile",
        "GatewayInstanceProfile",
    ] {
        assert!(made.contains(id), "{id} was created: {made:?}");
    }
    for id in [
        "LoadBalancer",
        "WorkerGroup",
        "WorkerLaunchTemplate",
        "GatewaySecurityGroup",
    ] {
        assert!(
            !made.contains(id),
            "{id} is compute: not made with Compute=false"
        );
    }

    // Its outputs: every name, and the settings.
    let outputs = outputs(&cfn, &stack_id).await;
    let region = aws.region().expect("a region").to_owned();
    let bucket = outputs["BucketName"].clone();
    let account = bucket
        .strip_prefix(&format!("{prefix}airq-"))
        .and_then(|b| b.strip_suffix(&format!("-{region}")))
        .unwrap_or_else(|| panic!("the bucket {bucket} is <prefix>airq-<account>-<region>"));
    assert!(account.chars().all(|c| c.is_ascii_digit()), "{bucket}");
    let names = ResourceNames::with_prefix(&prefix, &bucket);
    let [(send, send_dlq), (receive, receive_dlq)] = names.queues();
    for (key, want) in [
        ("ReadingsTableName", &names.readings_table),
        ("ResultsTableName", &names.results_table),
        ("ReceiptsTableName", &names.receipts_table),
        ("KeysTableName", &names.keys_table),
        ("AlertsTableName", &names.alerts_table),
        ("RequestSendQueueName", &send),
        ("RequestSendDeadLetterQueueName", &send_dlq),
        ("RequestReceiveQueueName", &receive),
        ("RequestReceiveDeadLetterQueueName", &receive_dlq),
    ] {
        assert_eq!(outputs.get(key), Some(want), "output {key}: {outputs:?}");
    }
    assert!(
        !outputs.contains_key("GatewayUrl"),
        "no gateway without compute"
    );
    let settings = parse_settings(&outputs["Settings"]);
    assert_eq!(
        settings,
        BTreeMap::from([
            ("AIRQ_BACKEND".to_owned(), "aws".to_owned()),
            ("AWS_REGION".to_owned(), region.clone()),
            ("AIRQ_AWS_PREFIX".to_owned(), prefix.clone()),
            ("AIRQ_BUCKET".to_owned(), bucket.clone()),
        ])
    );

    // The queues redrive after MaxReceives; dead letters are kept 14 days.
    use aws_sdk_sqs::types::QueueAttributeName as Q;
    for (queue, dlq) in names.queues() {
        let url = |name: &str| {
            let sqs = aws.sqs.clone();
            let name = name.to_owned();
            async move {
                sqs.get_queue_url()
                    .queue_name(&name)
                    .send()
                    .await
                    .unwrap_or_else(|e| panic!("GetQueueUrl {name}: {e:?}"))
                    .queue_url()
                    .expect("url")
                    .to_owned()
            }
        };
        let attrs = aws
            .sqs
            .get_queue_attributes()
            .queue_url(url(&queue).await)
            .attribute_names(Q::RedrivePolicy)
            .send()
            .await
            .expect("GetQueueAttributes")
            .attributes
            .unwrap_or_default();
        let redrive: Value =
            serde_json::from_str(attrs.get(&Q::RedrivePolicy).expect("a redrive policy"))
                .expect("JSON");
        assert_eq!(text(&redrive["maxReceiveCount"]), "2", "{queue}: {redrive}");
        assert!(
            text(&redrive["deadLetterTargetArn"]).ends_with(&format!(":{dlq}")),
            "{queue}: {redrive}"
        );
        let attrs = aws
            .sqs
            .get_queue_attributes()
            .queue_url(url(&dlq).await)
            .attribute_names(Q::MessageRetentionPeriod)
            .send()
            .await
            .expect("GetQueueAttributes")
            .attributes
            .unwrap_or_default();
        assert_eq!(
            attrs.get(&Q::MessageRetentionPeriod).map(String::as_str),
            Some("1209600"),
            "{dlq}"
        );
    }
    // The bucket is encrypted (moto applies BucketEncryption).
    let sse = aws
        .s3
        .get_bucket_encryption()
        .bucket(&bucket)
        .send()
        .await
        .expect("GetBucketEncryption");
    let algorithm = sse
        .server_side_encryption_configuration()
        .and_then(|c| c.rules().first())
        .and_then(|r| r.apply_server_side_encryption_by_default())
        .map(|d| d.sse_algorithm().as_str().to_owned());
    assert_eq!(algorithm.as_deref(), Some("AES256"));
    // moto's CloudFormation does not apply lifecycle rules; where it does
    // (AWS), they must be airq's.
    let rules = schema::lifecycle(&aws.s3, &bucket)
        .await
        .expect("lifecycle");
    if rules.is_empty() {
        eprintln!("note: moto made the bucket without its lifecycle rules (checked statically)");
    } else {
        assert_eq!(
            schema::result_object_days(&aws.s3, &bucket)
                .await
                .expect("rules"),
            Some(8)
        );
    }

    // The real binaries, configured by the settings alone.
    let cmd = |name: &str| configured(name, &settings, &endpoint);
    run(cmd("airq-master").args(["ingest", "--source", SAMPLE]));
    let mut worker = cmd("airq-worker");
    worker.args(["--concurrency", "2"]);
    let (worker, _) = start(worker, false);
    let mut gateway = cmd("airq-gateway");
    gateway.args(["--listen", "127.0.0.1:0"]);
    let (gateway, base) = start(gateway, true);
    let http = reqwest::Client::new();

    support::direct_and_queued_agree(&http, &base).await;
    // Through the bucket: a result too large for an item or a message.
    let want_all = expected_csv(HOUR_ALL);
    assert!(want_all.len() > 256 * 1024, "{} bytes", want_all.len());
    assert_eq!(
        queued(&http, &base, HOUR_ALL).await,
        want_all,
        "a large result arrives intact"
    );
    drop(gateway);
    drop(worker);

    // Delete the stack (a bucket must be empty to go, on AWS as here).
    empty_bucket(&aws.s3, &bucket).await;
    cfn.delete_stack()
        .stack_name(&stack_id)
        .send()
        .await
        .unwrap_or_else(|e| panic!("DeleteStack: {e:?}"));
    let status = settle(&cfn, &stack_id).await;
    assert_eq!(status, StackStatus::DeleteComplete);
    let table = aws
        .dynamodb
        .describe_table()
        .table_name(&names.readings_table)
        .send()
        .await;
    // Readings and keys outlive the stack, protected from deletion.
    let kept = table.unwrap_or_else(|e| panic!("the readings table was kept: {e:?}"));
    assert_eq!(
        kept.table.and_then(|t| t.deletion_protection_enabled),
        Some(true)
    );
    for t in [&names.readings_table, &names.keys_table] {
        let report = airq_deploy::provision::delete_table(&aws, t, true).await;
        assert_eq!(report.ok(), Some(true), "{t} deleted on purpose");
    }
    let queue = aws.sqs.get_queue_url().queue_name(&send).send().await;
    assert!(queue.is_err(), "RequestSend is gone");
    assert!(
        aws.s3.head_bucket().bucket(&bucket).send().await.is_err(),
        "the bucket is gone"
    );
}

/// moto's default VPC (its id and CIDR) and two of its subnets, through
/// boto3 from moto's own virtual environment (the Rust SDK for EC2 is a
/// large build for three ids).
/// Runs a Python script with boto3 against moto (the venv moto.sh made):
/// what the Rust SDKs this crate links cannot read.
fn boto(endpoint: &str, script: &str) -> String {
    let venv = std::env::var_os("AIRQ_VENV")
        .map(PathBuf::from)
        .map(|v| if v.is_absolute() { v } else { root().join(v) })
        .unwrap_or_else(|| root().join(".venv"));
    let prelude = r#"
import os, json, boto3
def client(name):
    return boto3.client(name, endpoint_url=os.environ["AIRQ_TEST_AWS_ENDPOINT"],
                        region_name=os.environ.get("AWS_REGION") or "us-east-1")
"#;
    let out = Command::new(venv.join("bin").join("python"))
        .args(["-c", &format!("{prelude}{script}")])
        .env("AIRQ_TEST_AWS_ENDPOINT", endpoint)
        .output()
        .expect("running moto's python (bash scripts/moto.sh install makes it)");
    assert!(
        out.status.success(),
        "boto3 on moto: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf8")
}

/// Moto's default VPC and two of its subnets.
fn default_vpc(endpoint: &str) -> (String, String) {
    let text = boto(
        endpoint,
        r#"
ec2 = client("ec2")
vpc = ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"][0]
subnets = ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc["VpcId"]]}])["Subnets"]
print(vpc["VpcId"], ",".join(s["SubnetId"] for s in subnets[:2]))
"#,
    );
    let mut parts = text.split_whitespace().map(str::to_owned);
    let (Some(vpc), Some(subnets)) = (parts.next(), parts.next()) else {
        panic!("unexpected answer: {text}");
    };
    (vpc, subnets)
}

/// With `Compute=true` and a release, moto's CloudFormation also makes the
/// security groups, launch templates, load balancer, target group,
/// listener and the three Auto Scaling groups (sized from the release and
/// the parameters): the conditions and references of the compute part
/// resolve. It skips what it does not know (the alarms, the scaling
/// policy); nothing runs on its instances.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_compute_the_stack_deploys_on_moto_too() {
    let endpoint = emulator::endpoint();
    let aws = emulator::clients().await;
    let cfn = emulator::cloudformation().await;
    let prefix = emulator::unique_prefix();
    let stack = format!("airq-{}", prefix.trim_end_matches('-'));
    let (vpc, subnets) = default_vpc(&endpoint);
    let stack_id = create_stack(
        &cfn,
        &stack,
        &[
            ("Prefix", &prefix),
            ("Release", "v1"),
            ("VpcId", &vpc),
            ("SubnetIds", &subnets),
            ("WorkerMaxSize", "3"),
        ],
    )
    .await;
    let made = made(&cfn, &stack_id).await;
    let template = template();
    let all: BTreeSet<String> = template["Resources"]
        .as_object()
        .expect("Resources")
        .keys()
        .cloned()
        .collect();
    for id in [
        "LoadBalancerSecurityGroup",
        "GatewaySecurityGroup",
        "GatewayIngressFromLoadBalancer",
        "WorkerSecurityGroup",
        "MasterSecurityGroup",
        "MasterLaunchTemplate",
        "WorkerLaunchTemplate",
        "GatewayLaunchTemplate",
        "LoadBalancer",
        "GatewayTargetGroup",
        "HttpListener",
        "OperationsPathsRule",
        "OperatorsSecurityGroup",
        "GatewayMetricsFromOperators",
        "BootScript",
        "AgentConfig",
        "LogGroup",
        "MasterGroup",
        "WorkerGroup",
        "GatewayGroup",
    ] {
        assert!(made.contains(id), "{id} was created: {made:?}");
    }
    let skipped: Vec<&String> = all.difference(&made).collect();
    eprintln!(
        "note: moto's CloudFormation skipped {skipped:?} (types it does not implement, and \
         HttpsListener: no certificate given)"
    );
    let outputs = outputs(&cfn, &stack_id).await;
    let url = outputs.get("GatewayUrl").expect("a gateway URL");
    assert!(url.starts_with("http://") && url.contains(".elb."), "{url}");
    // What the instances read and write exists as they expect: the boot
    // library and the agent's settings (valid JSON), the log group with
    // its retention, the named groups.
    let seen: Value = serde_json::from_str(&boto(
        &endpoint,
        &format!(
            r#"
stack = "{stack}"
ssm, logs, asg = client("ssm"), client("logs"), client("autoscaling")
boot = ssm.get_parameter(Name=f"/airq/{{stack}}/boot")["Parameter"]["Value"]
agent = ssm.get_parameter(Name=f"/airq/{{stack}}/cloudwatch-agent")["Parameter"]["Value"]
groups = logs.describe_log_groups(logGroupNamePrefix=f"/airq/{{stack}}")["logGroups"]
names = [g["AutoScalingGroupName"] for g in asg.describe_auto_scaling_groups()["AutoScalingGroups"]]
print(json.dumps({{"boot": boot, "agent": json.loads(agent),
    "groups": [[g["logGroupName"], g.get("retentionInDays")] for g in groups],
    "asgs": sorted(n for n in names if n.startswith(stack))}}))
"#
        ),
    ))
    .expect("json");
    let boot = text(&seen["boot"]);
    assert!(boot.contains("vpc_cidrs()") && boot.len() < 4096, "{boot}");
    assert_eq!(
        seen["agent"]["logs"]["metrics_collected"]["prometheus"]["log_group_name"],
        json!(format!("/airq/{stack}"))
    );
    assert_eq!(seen["groups"], json!([[format!("/airq/{stack}"), 30]]));
    // (moto makes the groups without their lifecycle hooks: the static
    // test reads the drain hook from the template.)
    assert_eq!(
        seen["asgs"],
        json!([
            format!("{stack}-gateway"),
            format!("{stack}-master"),
            format!("{stack}-worker")
        ])
    );

    let bucket = outputs["BucketName"].clone();
    empty_bucket(&aws.s3, &bucket).await;
    cfn.delete_stack()
        .stack_name(&stack_id)
        .send()
        .await
        .unwrap_or_else(|e| panic!("DeleteStack: {e:?}"));
    assert_eq!(settle(&cfn, &stack_id).await, StackStatus::DeleteComplete);
}
