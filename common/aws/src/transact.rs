//! DynamoDB transactions as the stores run them: an item's write and the
//! count it changes go together or not at all (alerts and their counts,
//! a day's segment version item and the summary's count of them).

use crate::{error_code, remote};
use airq_core::error::BackendError;
use aws_sdk_dynamodb::types::TransactWriteItem;

/// How a transaction ended.
pub(crate) enum Transacted {
    Done,
    /// The condition of the item at this position failed.
    Refused(usize),
}

/// Attempts of a transaction that conflicts with another one on the same
/// items (e.g. every alert's create and delete touches its `total` count).
const TRANSACT_ATTEMPTS: u32 = 8;

/// Whether a transaction was cancelled, and the code of each of its
/// items' reasons (empty when the service sent none).
fn cancelled<R>(
    e: &aws_sdk_dynamodb::error::SdkError<
        aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError,
        R,
    >,
) -> Option<Vec<String>> {
    if let Some(
        aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError::TransactionCanceledException(c),
    ) = e.as_service_error()
    {
        return Some(
            c.cancellation_reasons()
                .iter()
                .map(|r| r.code().unwrap_or("None").to_owned())
                .collect(),
        );
    }
    (error_code(e) == Some("TransactionCanceledException")).then(Vec::new)
}

/// Runs a transaction: done, or refused by the condition of one of its
/// items; one that conflicts with another transaction (or is throttled)
/// is tried again, anything else is an error (`context` names it). The
/// SDK gives each call an idempotency token, so its own retry of a
/// transaction whose answer was lost does not apply it twice.
pub(crate) async fn transact(
    client: &aws_sdk_dynamodb::Client,
    context: String,
    items: Vec<TransactWriteItem>,
) -> Result<Transacted, BackendError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let sent = client
            .transact_write_items()
            .set_transact_items(Some(items.clone()))
            .send()
            .await;
        let e = match sent {
            Ok(_) => return Ok(Transacted::Done),
            Err(e) => e,
        };
        let reasons = cancelled(&e).unwrap_or_default();
        if let Some(k) = reasons.iter().position(|r| r == "ConditionalCheckFailed") {
            return Ok(Transacted::Refused(k));
        }
        let again = reasons.iter().any(|r| {
            matches!(
                r.as_str(),
                "TransactionConflict" | "ThrottlingError" | "ProvisionedThroughputExceeded"
            )
        });
        if !again || attempt >= TRANSACT_ATTEMPTS {
            return Err(remote(context, e));
        }
        let wait = crate::retry::RetryPolicy::default().delay(attempt);
        tokio::time::sleep(wait).await;
    }
}
