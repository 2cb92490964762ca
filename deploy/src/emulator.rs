//! The AWS emulator (moto in server mode) that the AWS-backend tests run
//! against, and fresh, uniquely named resources on it for each test.
//!
//! The endpoint comes from `AIRQ_TEST_AWS_ENDPOINT`; credentials and region
//! from the standard AWS environment (`scripts/moto.sh start` exports moto's
//! dummy ones). Without a reachable emulator the tests fail, saying how to
//! start one: they never pass without having run.

use crate::provision::{provision, Billing, ProvisionSpec};
use airq_aws::{AwsClients, ResourceNames};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// The variable holding the emulator's URL.
pub const ENDPOINT_VAR: &str = "AIRQ_TEST_AWS_ENDPOINT";

const HOW_TO_START: &str = "start the emulator with `eval \"$(bash scripts/moto.sh start)\"` \
(it installs moto into .venv/ and exports AIRQ_TEST_AWS_ENDPOINT and moto's dummy AWS \
credentials), or run the whole suite with `bash scripts/test.sh`, which does this itself";

/// The emulator's URL. Panics, saying how to start it, if it is not set or
/// nothing answers there.
pub fn endpoint() -> String {
    endpoint_from(std::env::var(ENDPOINT_VAR).ok())
}

/// [`endpoint`] with the variable's value given.
pub fn endpoint_from(value: Option<String>) -> String {
    let url = match value {
        Some(u) if !u.trim().is_empty() => u.trim().to_owned(),
        _ => panic!(
            "{ENDPOINT_VAR} is not set: the AWS-backend tests need an AWS emulator; {HOW_TO_START}"
        ),
    };
    let authority = url
        .split("://")
        .nth(1)
        .unwrap_or(&url)
        .split('/')
        .next()
        .unwrap_or_default()
        .to_owned();
    let reachable = authority
        .to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .is_some_and(|addr| TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_ok());
    assert!(
        reachable,
        "nothing answers at {ENDPOINT_VAR}={url}: the AWS emulator is not running; {HOW_TO_START}"
    );
    url
}

/// Clients for the emulator (region defaults to us-east-1).
pub async fn clients() -> AwsClients {
    let url = endpoint();
    let region = std::env::var("AWS_REGION")
        .ok()
        .filter(|r| !r.is_empty())
        .unwrap_or_else(|| "us-east-1".into());
    AwsClients::load(Some(&url), Some(&region))
        .await
        .unwrap_or_else(|e| panic!("AWS clients for the emulator at {url}: {e}"))
}

/// A CloudFormation client for the emulator.
pub async fn cloudformation() -> aws_sdk_cloudformation::Client {
    crate::provision::cloudformation_client(&clients().await).await
}

/// A prefix no other test (or earlier run on the same emulator) uses.
pub fn unique_prefix() -> String {
    format!("t{}-", &uuid::Uuid::new_v4().simple().to_string()[..10])
}

/// The resource names of a test under `prefix`, its bucket included.
pub fn names(prefix: &str) -> ResourceNames {
    ResourceNames::with_prefix(prefix, &format!("{}airq-test", prefix.to_ascii_lowercase()))
}

/// Provisions everything under a fresh prefix.
pub async fn provisioned(clients: &AwsClients, max_receives: u32) -> ResourceNames {
    let names = names(&unique_prefix());
    let spec = ProvisionSpec {
        names: names.clone(),
        max_receives,
        billing: Billing::OnDemand,
        result_object_days: 2,
    };
    provision(clients, &spec)
        .await
        .unwrap_or_else(|e| panic!("provisioning {names:?} on the emulator: {e}"));
    names
}
