//! The AWS settings every binary shares (`--endpoint-url`, resource names),
//! and the SDK clients built from them and the standard configuration chain.

use crate::remote;
use airq_core::error::BackendError;
use airq_core::job::{dead_letter_name, REQUEST_RECEIVE, REQUEST_SEND};
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
use std::fmt;

pub const DEFAULT_READINGS_TABLE: &str = "QualityAirTable";
pub const DEFAULT_RESULTS_TABLE: &str = "AirqResults";
pub const DEFAULT_RECEIPTS_TABLE: &str = "AirqReceipts";
pub const DEFAULT_KEYS_TABLE: &str = "AirqKeys";
pub const DEFAULT_ALERTS_TABLE: &str = "AirqAlerts";

/// AWS flags, flattened into `airq-cli`'s `BackendArgs`. Credentials are
/// never flags: they come from the standard chain (environment, profiles,
/// `credential_process`, web identity, container and instance roles; SSO
/// profiles are not compiled in, to keep the build small).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct AwsArgs {
    /// Send every AWS call to this endpoint instead of AWS (an emulator such
    /// as moto, e.g. http://127.0.0.1:5000). `AWS_ENDPOINT_URL` works too.
    #[arg(long, env = "AIRQ_AWS_ENDPOINT_URL", global = true)]
    pub endpoint_url: Option<String>,

    /// AWS region; default: the standard chain (AWS_REGION, the profile).
    #[arg(long, env = "AIRQ_AWS_REGION", global = true)]
    pub aws_region: Option<String>,

    /// Prefix of every table, queue and default bucket name, to run several
    /// independent deployments (or tests) in one account.
    #[arg(long, env = "AIRQ_AWS_PREFIX", default_value = "", global = true)]
    pub aws_prefix: String,

    /// The readings table (before the prefix).
    #[arg(long, env = "AIRQ_READINGS_TABLE", default_value = DEFAULT_READINGS_TABLE, global = true)]
    pub readings_table: String,

    /// The results table (before the prefix).
    #[arg(long, env = "AIRQ_RESULTS_TABLE", default_value = DEFAULT_RESULTS_TABLE, global = true)]
    pub results_table: String,

    /// The queue receipt table (before the prefix).
    #[arg(long, env = "AIRQ_RECEIPTS_TABLE", default_value = DEFAULT_RECEIPTS_TABLE, global = true)]
    pub receipts_table: String,

    /// The API keys table (before the prefix).
    #[arg(long, env = "AIRQ_KEYS_TABLE", default_value = DEFAULT_KEYS_TABLE, global = true)]
    pub keys_table: String,

    /// The alerts table (before the prefix).
    #[arg(long, env = "AIRQ_ALERTS_TABLE", default_value = DEFAULT_ALERTS_TABLE, global = true)]
    pub alerts_table: String,

    /// The S3 bucket for large results and messages (used as given, without
    /// the prefix). Default: `<prefix>airq-<account id>-<region>`, lower-cased.
    #[arg(long, env = "AIRQ_BUCKET", global = true)]
    pub bucket: Option<String>,
}

/// The names of everything the AWS backend uses, prefix applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceNames {
    pub readings_table: String,
    pub results_table: String,
    pub receipts_table: String,
    pub keys_table: String,
    pub alerts_table: String,
    pub request_send: String,
    pub request_receive: String,
    pub bucket: String,
}

impl ResourceNames {
    /// Every table: readings, results, receipts, keys, alerts.
    pub fn tables(&self) -> [&String; 5] {
        [
            &self.readings_table,
            &self.results_table,
            &self.receipts_table,
            &self.keys_table,
            &self.alerts_table,
        ]
    }

    /// The dead-letter queue names, next to their queues.
    pub fn queues(&self) -> [(String, String); 2] {
        [
            (
                self.request_send.clone(),
                dead_letter_name(&self.request_send),
            ),
            (
                self.request_receive.clone(),
                dead_letter_name(&self.request_receive),
            ),
        ]
    }

    /// The default names under `prefix`, with `bucket`.
    pub fn with_prefix(prefix: &str, bucket: &str) -> ResourceNames {
        ResourceNames {
            readings_table: format!("{prefix}{DEFAULT_READINGS_TABLE}"),
            results_table: format!("{prefix}{DEFAULT_RESULTS_TABLE}"),
            receipts_table: format!("{prefix}{DEFAULT_RECEIPTS_TABLE}"),
            keys_table: format!("{prefix}{DEFAULT_KEYS_TABLE}"),
            alerts_table: format!("{prefix}{DEFAULT_ALERTS_TABLE}"),
            request_send: format!("{prefix}{REQUEST_SEND}"),
            request_receive: format!("{prefix}{REQUEST_RECEIVE}"),
            bucket: bucket.to_owned(),
        }
    }
}

/// Connected SDK clients, sharing one configuration and HTTP connection pool.
#[derive(Clone)]
pub struct AwsClients {
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub s3: aws_sdk_s3::Client,
    pub sts: aws_sdk_sts::Client,
    config: SdkConfig,
}

impl fmt::Debug for AwsClients {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsClients")
            .field("region", &self.region())
            .field("endpoint", &self.endpoint())
            .finish_non_exhaustive()
    }
}

impl AwsClients {
    /// Loads the standard configuration chain, overriding the endpoint and
    /// region when given, and builds every client. Fails if no region is
    /// configured anywhere.
    pub async fn load(
        endpoint_url: Option<&str>,
        region: Option<&str>,
    ) -> Result<AwsClients, BackendError> {
        // rustls with ring: the same TLS stack the rest of airq uses.
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(Provider::Rustls(CryptoMode::Ring))
            .build_https();
        let mut loader = aws_config::defaults(BehaviorVersion::latest()).http_client(http);
        if let Some(url) = endpoint_url.filter(|u| !u.is_empty()) {
            loader = loader.endpoint_url(url);
        }
        if let Some(r) = region.filter(|r| !r.is_empty()) {
            loader = loader.region(Region::new(r.to_owned()));
        }
        let config = loader.load().await;
        if config.region().is_none() {
            return Err(BackendError::Remote {
                context: "AWS configuration".into(),
                message: "no AWS region: set AWS_REGION (or --aws-region, or a profile's region)"
                    .into(),
            });
        }
        Ok(AwsClients::from_config(config))
    }

    /// Clients from an already-loaded configuration.
    pub fn from_config(config: SdkConfig) -> AwsClients {
        // An emulator serves every bucket under its one host name.
        let s3_conf = aws_sdk_s3::config::Builder::from(&config)
            .force_path_style(config.endpoint_url().is_some())
            .build();
        AwsClients {
            dynamodb: aws_sdk_dynamodb::Client::new(&config),
            sqs: aws_sdk_sqs::Client::new(&config),
            s3: aws_sdk_s3::Client::from_conf(s3_conf),
            sts: aws_sdk_sts::Client::new(&config),
            config,
        }
    }

    pub fn region(&self) -> Option<&str> {
        self.config.region().map(|r| r.as_ref())
    }

    /// The custom endpoint, if any (an emulator).
    pub fn endpoint(&self) -> Option<&str> {
        self.config.endpoint_url()
    }

    /// Where this talks to, for logs: `aws us-east-1` or the endpoint.
    pub fn location(&self) -> String {
        let region = self.region().unwrap_or("?");
        match self.endpoint() {
            Some(e) => format!("aws {region} at {e}"),
            None => format!("aws {region}"),
        }
    }

    /// The account the credentials belong to (one STS call).
    pub async fn account_id(&self) -> Result<String, BackendError> {
        let me =
            self.sts.get_caller_identity().send().await.map_err(|e| {
                remote("STS GetCallerIdentity (are AWS credentials configured?)", e)
            })?;
        me.account().map(str::to_owned).ok_or_else(|| {
            BackendError::Corrupt("STS GetCallerIdentity returned no account".into())
        })
    }
}

impl AwsArgs {
    /// The default table names, in [`ResourceNames::tables`]' order.
    pub fn default_names() -> [&'static str; 5] {
        [
            DEFAULT_READINGS_TABLE,
            DEFAULT_RESULTS_TABLE,
            DEFAULT_RECEIPTS_TABLE,
            DEFAULT_KEYS_TABLE,
            DEFAULT_ALERTS_TABLE,
        ]
    }

    /// The table names as given, in [`ResourceNames::tables`]' order.
    pub fn table_flags(&self) -> [&String; 5] {
        [
            &self.readings_table,
            &self.results_table,
            &self.receipts_table,
            &self.keys_table,
            &self.alerts_table,
        ]
    }

    /// Loads the clients these flags describe.
    pub async fn clients(&self) -> Result<AwsClients, BackendError> {
        AwsClients::load(self.endpoint_url.as_deref(), self.aws_region.as_deref()).await
    }

    /// The readings table's name, without any call.
    pub fn readings_table_name(&self) -> String {
        format!("{}{}", self.aws_prefix, self.readings_table)
    }

    /// Every resource name; the default bucket name needs the account id
    /// (one STS call) unless `--bucket` is given.
    pub async fn names(&self, clients: &AwsClients) -> Result<ResourceNames, BackendError> {
        let p = &self.aws_prefix;
        let bucket = match self.bucket.as_deref().filter(|b| !b.is_empty()) {
            Some(b) => b.to_owned(),
            None => default_bucket(
                p,
                &clients.account_id().await?,
                clients.region().unwrap_or("us-east-1"),
            ),
        };
        Ok(ResourceNames {
            readings_table: format!("{p}{}", self.readings_table),
            results_table: format!("{p}{}", self.results_table),
            receipts_table: format!("{p}{}", self.receipts_table),
            keys_table: format!("{p}{}", self.keys_table),
            alerts_table: format!("{p}{}", self.alerts_table),
            request_send: format!("{p}{REQUEST_SEND}"),
            request_receive: format!("{p}{REQUEST_RECEIVE}"),
            bucket,
        })
    }
}

/// `<prefix>airq-<account>-<region>`, made a valid bucket name (lower case,
/// letters, digits and dashes, at most 63 characters).
pub fn default_bucket(prefix: &str, account: &str, region: &str) -> String {
    let raw = format!("{prefix}airq-{account}-{region}").to_ascii_lowercase();
    let mut name: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    name.truncate(63);
    name.trim_matches('-').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_names_are_valid() {
        assert_eq!(
            default_bucket("", "123456789012", "eu-west-2"),
            "airq-123456789012-eu-west-2"
        );
        assert_eq!(
            default_bucket("Test_1.", "123456789012", "us-east-1"),
            "test-1-airq-123456789012-us-east-1"
        );
        assert!(default_bucket(&"x".repeat(80), "1", "r").len() <= 63);
    }

    #[test]
    fn prefix_applies_to_every_name() {
        let n = ResourceNames::with_prefix("t1-", "b");
        assert_eq!(n.readings_table, "t1-QualityAirTable");
        assert_eq!(n.keys_table, "t1-AirqKeys");
        assert_eq!(n.alerts_table, "t1-AirqAlerts");
        assert_eq!(n.request_send, "t1-RequestSend");
        assert_eq!(n.queues()[0].1, "t1-RequestSend-dlq");
        assert_eq!(n.queues()[1].1, "t1-RequestReceive-dlq");
    }
}
