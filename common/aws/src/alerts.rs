//! The alert store on DynamoDB (`AirqAlerts`): partition key `pk`, sort
//! key `sk` (see `schema`), three kinds of item.
//!
//! - **Alerts**, all in one partition (`pk = alerts`, `sk` the alert id):
//!   owner, spec (canonical JSON), secret, and the evaluation state. Every
//!   gateway evaluates every alert after each ingestion, so `all` is one
//!   strongly consistent `Query` of that partition (paginated); a
//!   deployment holds at most `--max-alerts` of them, and each changes
//!   only when its place crosses its threshold, far from a partition's
//!   write limit.
//! - **Counts** (`pk = counts`): `owner#<id>` and `total`, each an `n`.
//!   Creating an alert is one `TransactWriteItems`: both counts raised on
//!   condition they are under their caps, and the alert put, so that
//!   gateways creating at once never pass a cap.
//! - **Deliveries**, one partition per alert (`pk = deliveries#<alert>`,
//!   `sk = <created ms, 15 digits>#<delivery id's bits inverted>`), newest
//!   last. A pending
//!   one carries `due = pending` and `next_ms`, which the sparse index
//!   `by_due` (all attributes) holds, so a claim is one `Query` of what is
//!   due; a finished one loses `due` and leaves the index.
//!
//! An evaluation's transition is a transaction too: the alert's state
//! updated on condition its `version` is still the one evaluated, and the
//! delivery put. A claim leases each due delivery with a conditional
//! `UpdateItem` (another gateway's claim skips it until the lease ends);
//! recording an attempt is conditioned on that lease. Each alert keeps its
//! [`KEPT_DELIVERIES`] newest deliveries (the pending ones whatever their
//! age), as the embedded store does.

use crate::retry::{batch_write, RetryPolicy};
use crate::schema::{
    ALERTS_DUE_ATTRIBUTE, ALERTS_NEXT_ATTRIBUTE, ALERTS_PK, ALERTS_SK, BY_DUE_INDEX,
};
use crate::transact::{transact, Transacted};
use crate::{error_code, remote};
use airq_core::alert::{
    Alert, AlertSpec, AlertState, AlertStore, Delivery, DeliveryState, DueDelivery, Refused,
};
use airq_core::error::BackendError;
use airq_core::reading::Timestamp;
use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, Delete, Put, TransactWriteItem, Update};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use uuid::Uuid;

/// Finished deliveries kept per alert, for its owner to see (the embedded
/// store's number: the two answer alike).
pub const KEPT_DELIVERIES: usize = 50;

const ALERTS: &str = "alerts";
const COUNTS: &str = "counts";
const TOTAL: &str = "total";
/// The value of `due` on a pending delivery.
const PENDING: &str = "pending";

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn key(pk: &str, sk: &str) -> HashMap<String, AttributeValue> {
    HashMap::from([(ALERTS_PK.to_owned(), s(pk)), (ALERTS_SK.to_owned(), s(sk))])
}

fn deliveries_pk(alert: Uuid) -> String {
    format!("deliveries#{alert}")
}

/// Newest last, and within one millisecond by id from the highest: read
/// backwards (newest first), deliveries of one millisecond come by id
/// from the lowest, as on the embedded store (`created_ms DESC, id`).
fn delivery_sk(d: &Delivery) -> String {
    format!("{:015}#{:032x}", d.created_ms.max(0), !d.id.as_u128())
}

fn owner_sk(owner: Uuid) -> String {
    format!("owner#{owner}")
}

fn corrupt(what: String) -> BackendError {
    BackendError::Corrupt(what)
}

fn uuid(text: &str, what: &str) -> Result<Uuid, BackendError> {
    Uuid::parse_str(text).map_err(|_| corrupt(format!("{what} is not a UUID: {text:?}")))
}

/// An alert as an item.
#[derive(Debug, Serialize, Deserialize)]
struct AlertItem {
    pk: String,
    sk: String,
    owner: String,
    spec: String,
    secret: String,
    created_at: i64,
    inside: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    entered_at: Option<i64>,
    version: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    value: Option<u16>,
    suppressed: u64,
}

impl AlertItem {
    fn decode(item: HashMap<String, AttributeValue>) -> Result<(Alert, AlertState), BackendError> {
        let item: AlertItem =
            serde_dynamo::from_item(item).map_err(|e| corrupt(format!("a stored alert: {e}")))?;
        let id = uuid(&item.sk, "an alert id")?;
        let spec = AlertSpec::from_stored(&item.spec)
            .map_err(|e| corrupt(format!("alert {id}'s spec does not read back: {e}")))?;
        Ok((
            Alert {
                id,
                owner: uuid(&item.owner, "an alert's owner")?,
                spec,
                secret: item.secret,
                created_at: Timestamp(item.created_at),
            },
            AlertState {
                inside: item.inside,
                entered_at: item.entered_at.map(Timestamp),
                version: item.version,
                value: item.value,
                suppressed: item.suppressed,
            },
        ))
    }
}

/// A delivery as an item.
#[derive(Debug, Serialize, Deserialize)]
struct DeliveryItem {
    pk: String,
    sk: String,
    id: String,
    alert: String,
    event: String,
    body: String,
    created_ms: i64,
    attempts: u32,
    next_ms: i64,
    state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_status: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    finished_ms: Option<i64>,
    #[serde(default)]
    lease_ms: i64,
    /// `pending` while pending (the `by_due` index's key), else absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    due: Option<String>,
}

impl DeliveryItem {
    fn of(d: &Delivery) -> DeliveryItem {
        DeliveryItem {
            pk: deliveries_pk(d.alert),
            sk: delivery_sk(d),
            id: d.id.to_string(),
            alert: d.alert.to_string(),
            event: d.event.clone(),
            body: d.body.clone(),
            created_ms: d.created_ms,
            attempts: d.attempts,
            next_ms: d.next_ms,
            state: d.state.as_str().to_owned(),
            last_status: d.last_status,
            last_error: d.last_error.clone(),
            finished_ms: d.finished_ms,
            lease_ms: 0,
            due: (d.state == DeliveryState::Pending).then(|| PENDING.to_owned()),
        }
    }

    fn decode(item: HashMap<String, AttributeValue>) -> Result<(Delivery, i64), BackendError> {
        let item: DeliveryItem = serde_dynamo::from_item(item)
            .map_err(|e| corrupt(format!("a stored delivery: {e}")))?;
        Ok((
            Delivery {
                id: uuid(&item.id, "a delivery id")?,
                alert: uuid(&item.alert, "a delivery's alert")?,
                event: item.event,
                body: item.body,
                created_ms: item.created_ms,
                attempts: item.attempts,
                next_ms: item.next_ms,
                state: DeliveryState::parse(&item.state)
                    .ok_or_else(|| corrupt(format!("a delivery's state is {:?}", item.state)))?,
                last_status: item.last_status,
                last_error: item.last_error,
                finished_ms: item.finished_ms,
            },
            item.lease_ms,
        ))
    }
}

/// Alerts in a DynamoDB table. Cheap to clone.
#[derive(Clone, Debug)]
pub struct DynamoAlertStore {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

fn build<T, E: std::fmt::Display>(r: Result<T, E>) -> Result<T, BackendError> {
    r.map_err(|e| corrupt(format!("building a DynamoDB request: {e}")))
}

impl DynamoAlertStore {
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        DynamoAlertStore {
            client,
            table: table.into(),
        }
    }

    fn context(&self, what: &str) -> String {
        format!("DynamoDB {what} on {}", self.table)
    }

    /// A count raised by one on condition it stays within `max`.
    fn raise(&self, sk: &str, max: u32) -> Result<TransactWriteItem, BackendError> {
        let update = build(
            Update::builder()
                .table_name(&self.table)
                .set_key(Some(key(COUNTS, sk)))
                .update_expression("SET #n = if_not_exists(#n, :zero) + :one")
                .condition_expression("attribute_not_exists(#n) OR #n < :max")
                .expression_attribute_names("#n", "n")
                .expression_attribute_values(":zero", n(0))
                .expression_attribute_values(":one", n(1))
                .expression_attribute_values(":max", n(max))
                .build(),
        )?;
        Ok(TransactWriteItem::builder().update(update).build())
    }

    /// A count lowered by one.
    fn lower(&self, sk: &str) -> Result<TransactWriteItem, BackendError> {
        let update = build(
            Update::builder()
                .table_name(&self.table)
                .set_key(Some(key(COUNTS, sk)))
                .update_expression("SET #n = if_not_exists(#n, :one) - :one")
                .expression_attribute_names("#n", "n")
                .expression_attribute_values(":one", n(1))
                .build(),
        )?;
        Ok(TransactWriteItem::builder().update(update).build())
    }

    /// [`crate::transact::transact`] on this store's client.
    async fn transact(
        &self,
        what: &str,
        items: Vec<TransactWriteItem>,
    ) -> Result<Transacted, BackendError> {
        transact(&self.client, self.context(what), items).await
    }

    /// The keys of an alert's deliveries, newest first, with whether each
    /// is pending.
    async fn delivery_keys(&self, alert: Uuid) -> Result<Vec<(String, bool)>, BackendError> {
        let query = self
            .partition(deliveries_pk(alert))
            .expression_attribute_names("#sk", ALERTS_SK)
            .expression_attribute_names("#due", ALERTS_DUE_ATTRIBUTE)
            .projection_expression("#sk, #due")
            .scan_index_forward(false);
        Ok(self
            .pages("Query (deliveries)", query, usize::MAX)
            .await?
            .iter()
            .filter_map(|item| match item.get(ALERTS_SK) {
                Some(AttributeValue::S(sk)) => {
                    Some((sk.clone(), item.contains_key(ALERTS_DUE_ATTRIBUTE)))
                }
                _ => None,
            })
            .collect())
    }

    /// A strongly consistent `Query` of the items under partition key `pk`.
    fn partition(
        &self,
        pk: String,
    ) -> aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder {
        self.client
            .query()
            .table_name(&self.table)
            .key_condition_expression("#pk = :pk")
            .expression_attribute_names("#pk", ALERTS_PK)
            .expression_attribute_values(":pk", s(pk))
            .consistent_read(true)
    }

    /// The items `query` finds, page after page, until there are none or
    /// `max` at least.
    async fn pages(
        &self,
        what: &str,
        query: aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder,
        max: usize,
    ) -> Result<Vec<HashMap<String, AttributeValue>>, BackendError> {
        let mut out = Vec::new();
        let mut start = None;
        loop {
            let page = query
                .clone()
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| remote(self.context(what), e))?;
            out.extend(page.items.unwrap_or_default());
            start = page.last_evaluated_key;
            if start.is_none() || out.len() >= max {
                return Ok(out);
            }
        }
    }

    /// Deletes the deliveries under `keys` of `alert`, 25 a call.
    async fn delete_deliveries(&self, alert: Uuid, keys: &[String]) -> Result<(), BackendError> {
        use aws_sdk_dynamodb::types::{DeleteRequest, WriteRequest};
        let pk = deliveries_pk(alert);
        for chunk in keys.chunks(25) {
            let pending: Vec<WriteRequest> = chunk
                .iter()
                .map(|sk| {
                    build(DeleteRequest::builder().set_key(Some(key(&pk, sk))).build())
                        .map(|d| WriteRequest::builder().delete_request(d).build())
                })
                .collect::<Result<_, _>>()?;
            batch_write(&self.client, &self.table, &RetryPolicy::default(), pending).await?;
        }
        Ok(())
    }

    /// Deletes the alert's finished deliveries past its newest
    /// [`KEPT_DELIVERIES`].
    async fn trim(&self, alert: Uuid) -> Result<(), BackendError> {
        let keys = self.delivery_keys(alert).await?;
        if keys.len() <= KEPT_DELIVERIES {
            return Ok(());
        }
        let old: Vec<String> = keys
            .into_iter()
            .skip(KEPT_DELIVERIES)
            .filter(|(_, pending)| !pending)
            .map(|(sk, _)| sk)
            .collect();
        self.delete_deliveries(alert, &old).await
    }
}

#[async_trait]
impl AlertStore for DynamoAlertStore {
    async fn create(
        &self,
        alert: &Alert,
        per_owner: u32,
        total: u32,
    ) -> Result<Result<(), Refused>, BackendError> {
        let item = AlertItem {
            pk: ALERTS.into(),
            sk: alert.id.to_string(),
            owner: alert.owner.to_string(),
            spec: alert.spec.to_json().to_string(),
            secret: alert.secret.clone(),
            created_at: alert.created_at.0,
            inside: false,
            entered_at: None,
            version: 0,
            value: None,
            suppressed: 0,
        };
        let item =
            serde_dynamo::to_item(&item).map_err(|e| corrupt(format!("encoding an alert: {e}")))?;
        let put = build(
            Put::builder()
                .table_name(&self.table)
                .set_item(Some(item))
                .condition_expression("attribute_not_exists(#pk)")
                .expression_attribute_names("#pk", ALERTS_PK)
                .build(),
        )?;
        let items = vec![
            self.raise(&owner_sk(alert.owner), per_owner)?,
            self.raise(TOTAL, total)?,
            TransactWriteItem::builder().put(put).build(),
        ];
        match self
            .transact("TransactWriteItems (create an alert)", items)
            .await?
        {
            Transacted::Done => Ok(Ok(())),
            Transacted::Refused(0) => Ok(Err(Refused::OwnerFull { max: per_owner })),
            Transacted::Refused(1) => Ok(Err(Refused::StoreFull { max: total })),
            Transacted::Refused(_) => Err(corrupt(format!(
                "alert {} exists already (a random id drawn twice?)",
                alert.id
            ))),
        }
    }

    async fn get(&self, id: Uuid) -> Result<Option<(Alert, AlertState)>, BackendError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(ALERTS, &id.to_string())))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| remote(self.context("GetItem (alert)"), e))?;
        out.item.map(AlertItem::decode).transpose()
    }

    async fn delete(&self, id: Uuid, owner: Uuid) -> Result<bool, BackendError> {
        let delete = build(
            Delete::builder()
                .table_name(&self.table)
                .set_key(Some(key(ALERTS, &id.to_string())))
                .condition_expression("#owner = :owner")
                .expression_attribute_names("#owner", "owner")
                .expression_attribute_values(":owner", s(owner.to_string()))
                .build(),
        )?;
        let items = vec![
            TransactWriteItem::builder().delete(delete).build(),
            self.lower(&owner_sk(owner))?,
            self.lower(TOTAL)?,
        ];
        let deleted = matches!(
            self.transact("TransactWriteItems (delete an alert)", items)
                .await?,
            Transacted::Done
        );
        // Its deliveries go with it; and if there is no such alert (a
        // deletion that stopped after its transaction), whatever is left
        // of them goes too, so that no claim keeps finding them.
        if deleted || self.get(id).await?.is_none() {
            let keys: Vec<String> = self
                .delivery_keys(id)
                .await?
                .into_iter()
                .map(|(sk, _)| sk)
                .collect();
            self.delete_deliveries(id, &keys).await?;
        }
        Ok(deleted)
    }

    async fn all(&self) -> Result<Vec<(Alert, AlertState)>, BackendError> {
        let query = self.partition(ALERTS.to_owned());
        let mut all = Vec::new();
        for item in self.pages("Query (alerts)", query, usize::MAX).await? {
            // One alert that does not read back must not stop the others
            // (as on the embedded store).
            match AlertItem::decode(item) {
                Ok(alert) => all.push(alert),
                Err(e) => tracing::warn!(error = %e, "skipping an alert that does not read back"),
            }
        }
        Ok(all)
    }

    async fn transition(
        &self,
        id: Uuid,
        from: u64,
        to: &AlertState,
        delivery: Option<&Delivery>,
    ) -> Result<bool, BackendError> {
        let mut set = vec![
            "#inside = :inside",
            "#version = :to",
            "#suppressed = :suppressed",
        ];
        let mut remove = Vec::new();
        let mut update = Update::builder()
            .table_name(&self.table)
            .set_key(Some(key(ALERTS, &id.to_string())))
            .condition_expression("#version = :from")
            .expression_attribute_names("#inside", "inside")
            .expression_attribute_names("#version", "version")
            .expression_attribute_names("#suppressed", "suppressed")
            .expression_attribute_names("#entered", "entered_at")
            .expression_attribute_names("#value", "value")
            .expression_attribute_values(":inside", AttributeValue::Bool(to.inside))
            .expression_attribute_values(":to", n(to.version))
            .expression_attribute_values(":from", n(from))
            .expression_attribute_values(":suppressed", n(to.suppressed));
        match to.entered_at {
            Some(t) => {
                set.push("#entered = :entered");
                update = update.expression_attribute_values(":entered", n(t.0));
            }
            None => remove.push("#entered"),
        }
        match to.value {
            Some(v) => {
                set.push("#value = :value");
                update = update.expression_attribute_values(":value", n(v));
            }
            None => remove.push("#value"),
        }
        let mut expression = format!("SET {}", set.join(", "));
        if !remove.is_empty() {
            expression.push_str(&format!(" REMOVE {}", remove.join(", ")));
        }
        let update = build(update.update_expression(expression).build())?;
        let mut items = vec![TransactWriteItem::builder().update(update).build()];
        if let Some(d) = delivery {
            let item = serde_dynamo::to_item(DeliveryItem::of(d))
                .map_err(|e| corrupt(format!("encoding a delivery: {e}")))?;
            let put = build(
                Put::builder()
                    .table_name(&self.table)
                    .set_item(Some(item))
                    .build(),
            )?;
            items.push(TransactWriteItem::builder().put(put).build());
        }
        if let Transacted::Refused(_) = self
            .transact("TransactWriteItems (an alert's transition)", items)
            .await?
        {
            return Ok(false);
        }
        // Committed: a failure to trim is for the next transition to mend.
        if delivery.is_some() {
            if let Err(e) = self.trim(id).await {
                tracing::warn!(alert = %id, error = %e, "could not delete an alert's old deliveries");
            }
        }
        Ok(true)
    }

    async fn claim(
        &self,
        now_ms: i64,
        lease_ms: i64,
        max: usize,
    ) -> Result<Vec<DueDelivery>, BackendError> {
        // Due and not leased, oldest first.
        let query = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(BY_DUE_INDEX)
            .key_condition_expression("#due = :pending AND #next <= :now")
            .filter_expression("#lease <= :now")
            .expression_attribute_names("#due", ALERTS_DUE_ATTRIBUTE)
            .expression_attribute_names("#next", ALERTS_NEXT_ATTRIBUTE)
            .expression_attribute_names("#lease", "lease_ms")
            .expression_attribute_values(":pending", s(PENDING))
            .expression_attribute_values(":now", n(now_ms));
        let mut candidates = Vec::new();
        for item in self.pages("Query (due deliveries)", query, max).await? {
            candidates.push(DeliveryItem::decode(item)?.0);
        }
        candidates.truncate(max);
        let mut due = Vec::with_capacity(candidates.len());
        let mut alerts: HashMap<Uuid, Option<(String, String)>> = HashMap::new();
        for delivery in candidates {
            // Leased only if still due, pending and unleased: another
            // gateway's claim may have taken it since the index was read.
            let leased = self
                .client
                .update_item()
                .table_name(&self.table)
                .set_key(Some(key(
                    &deliveries_pk(delivery.alert),
                    &delivery_sk(&delivery),
                )))
                .update_expression("SET #lease = :lease")
                .condition_expression("#due = :pending AND #lease <= :now AND #next <= :now")
                .expression_attribute_names("#next", ALERTS_NEXT_ATTRIBUTE)
                .expression_attribute_names("#lease", "lease_ms")
                .expression_attribute_names("#due", ALERTS_DUE_ATTRIBUTE)
                .expression_attribute_values(":lease", n(lease_ms))
                .expression_attribute_values(":pending", s(PENDING))
                .expression_attribute_values(":now", n(now_ms))
                .send()
                .await;
            match leased {
                Ok(_) => {}
                Err(e) if error_code(&e) == Some("ConditionalCheckFailedException") => continue,
                Err(e) => return Err(remote(self.context("UpdateItem (lease a delivery)"), e)),
            }
            if let std::collections::hash_map::Entry::Vacant(slot) = alerts.entry(delivery.alert) {
                let target = self
                    .get(delivery.alert)
                    .await?
                    .map(|(a, _)| (a.spec.webhook_url.clone(), a.secret));
                slot.insert(target);
            }
            // A delivery whose alert is gone (a deletion that stopped half
            // way) is deleted, so that it does not take a claim's room.
            let Some(Some((url, secret))) = alerts.get(&delivery.alert) else {
                self.delete_deliveries(delivery.alert, &[delivery_sk(&delivery)])
                    .await?;
                continue;
            };
            due.push(DueDelivery {
                url: url.clone(),
                secret: secret.clone(),
                delivery,
                lease_ms,
            });
        }
        Ok(due)
    }

    async fn record(&self, d: &Delivery, lease_ms: i64) -> Result<bool, BackendError> {
        let mut set = vec![
            "attempts = :attempts",
            "next_ms = :next",
            "#state = :state",
            "lease_ms = :zero",
        ];
        let mut remove = Vec::new();
        let mut update = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(&deliveries_pk(d.alert), &delivery_sk(d))))
            .condition_expression("lease_ms = :lease AND #state = :pending")
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":attempts", n(d.attempts))
            .expression_attribute_values(":next", n(d.next_ms))
            .expression_attribute_values(":state", s(d.state.as_str()))
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":lease", n(lease_ms))
            .expression_attribute_values(":pending", s(DeliveryState::Pending.as_str()));
        for (name, value) in [
            ("last_status", d.last_status.map(n)),
            ("last_error", d.last_error.clone().map(s)),
            ("finished_ms", d.finished_ms.map(n)),
        ] {
            match value {
                Some(v) => {
                    set.push(match name {
                        "last_status" => "last_status = :status",
                        "last_error" => "last_error = :error",
                        _ => "finished_ms = :finished",
                    });
                    let placeholder = match name {
                        "last_status" => ":status",
                        "last_error" => ":error",
                        _ => ":finished",
                    };
                    update = update.expression_attribute_values(placeholder, v);
                }
                None => remove.push(name),
            }
        }
        if d.state != DeliveryState::Pending {
            // Out of the due index.
            remove.push("#due");
            update = update.expression_attribute_names("#due", ALERTS_DUE_ATTRIBUTE);
        }
        let mut expression = format!("SET {}", set.join(", "));
        if !remove.is_empty() {
            expression.push_str(&format!(" REMOVE {}", remove.join(", ")));
        }
        match update.update_expression(expression).send().await {
            Ok(_) => Ok(true),
            Err(e) if error_code(&e) == Some("ConditionalCheckFailedException") => Ok(false),
            Err(e) => Err(remote(self.context("UpdateItem (record a delivery)"), e)),
        }
    }

    async fn deliveries(&self, alert: Uuid, last: usize) -> Result<Vec<Delivery>, BackendError> {
        if last == 0 {
            return Ok(Vec::new());
        }
        let query = self
            .partition(deliveries_pk(alert))
            .scan_index_forward(false)
            .limit(i32::try_from(last).unwrap_or(i32::MAX));
        let mut out = Vec::new();
        for item in self.pages("Query (deliveries)", query, last).await? {
            out.push(DeliveryItem::decode(item)?.0);
        }
        out.truncate(last);
        Ok(out)
    }
}
