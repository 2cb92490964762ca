//! Writing readings: the read-back that tells new, replaced and unchanged
//! readings apart, batch writes with retries, and the summary item. Each
//! sensor's latest reading is `latest.rs`'s.

use super::*;
use crate::retry::{batch_write, until_processed, Step};

/// How a batch's latest readings were written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LatestWrites {
    /// Sensors seen for the first time: a new latest item.
    pub created: u64,
    /// Sensors whose latest item was older (or the same reading): replaced.
    pub replaced: u64,
    /// Sensors whose latest item was newer already: left alone.
    pub kept: u64,
}

impl LatestWrites {
    pub(crate) fn add(&mut self, other: LatestWrites) {
        self.created += other.created;
        self.replaced += other.replaced;
        self.kept += other.kept;
    }
}

impl DynamoReadingStore {
    /// Writes one reading with one `PutItem` call, as the first version of
    /// this system did for every reading, each field an attribute of its
    /// own (the shape airq wrote before packing, `item.rs`). Only for
    /// comparison (see BENCHMARKS.md): [`ReadingStore::put_batch`] is the
    /// way to write.
    /// Neither the summary item, the sensor's latest item nor the day's
    /// answer-segment version is updated (never use it on a table whose
    /// segments are read).
    pub async fn put_one(&self, reading: &Reading) -> Result<(), BackendError> {
        let item = ReadingItem::of(reading)?.encode()?;
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| remote(format!("DynamoDB PutItem on {}", self.table), e))?;
        Ok(())
    }

    /// The stored reading under each of `readings`' keys, by `(timestamp,
    /// sensor id)`: `BatchGetItem` calls of at most 100 keys, a few in
    /// flight, unprocessed keys and throttling retried with backoff. An
    /// item that does not decode counts as absent (it is overwritten).
    pub(crate) async fn stored_of(
        &self,
        readings: &[Reading],
    ) -> Result<HashMap<(i64, u64), Reading>, BackendError> {
        let keys = readings.iter().map(key_of).collect::<Result<Vec<_>, _>>()?;
        let table = &self.table;
        Ok(self
            .get_items(keys, false)
            .await?
            .into_iter()
            .filter_map(|item| reading_of_item(table, item).ok())
            .map(|r| ((r.timestamp.0, r.sensor_id), r))
            .collect())
    }

    /// The items under `keys` that exist: `BatchGetItem` calls of at most
    /// 100 keys, a few in flight, each retried as [`Self::get_chunk`] says.
    pub(crate) async fn get_items(
        &self,
        keys: Vec<HashMap<String, AttributeValue>>,
        consistent: bool,
    ) -> Result<Vec<HashMap<String, AttributeValue>>, BackendError> {
        self.get_items_with(keys, consistent, &[]).await
    }

    /// [`Self::get_items`] reading only the attributes named in
    /// `projection` (every attribute when it is empty), for items whose
    /// other attributes are large and not needed. (DynamoDB bills the
    /// whole item all the same; what is spared is the transfer and the
    /// decoding.)
    pub(crate) async fn get_items_with(
        &self,
        keys: Vec<HashMap<String, AttributeValue>>,
        consistent: bool,
        projection: &[&str],
    ) -> Result<Vec<HashMap<String, AttributeValue>>, BackendError> {
        let pages: Vec<Vec<HashMap<String, AttributeValue>>> =
            futures::stream::iter(keys.chunks(BATCH_GET_MAX).map(<[_]>::to_vec))
                .map(|chunk| self.get_chunk(chunk, consistent, projection))
                .buffer_unordered(WRITES_IN_FLIGHT)
                .try_collect()
                .await?;
        Ok(pages.into_iter().flatten().collect())
    }

    /// Reads one `BatchGetItem` of at most 100 keys, as [`Self::write_chunk`]
    /// writes: retrying what DynamoDB left unprocessed.
    pub(crate) async fn get_chunk(
        &self,
        pending: Vec<HashMap<String, AttributeValue>>,
        consistent: bool,
        projection: &[&str],
    ) -> Result<Vec<HashMap<String, AttributeValue>>, BackendError> {
        let context = || format!("DynamoDB BatchGetItem on {}", self.table);
        // Names through placeholders: some attribute names are reserved
        // words in expressions.
        let (expression, names) = if projection.is_empty() {
            (None, None)
        } else {
            let names: HashMap<String, String> = projection
                .iter()
                .enumerate()
                .map(|(k, name)| (format!("#p{k}"), (*name).to_owned()))
                .collect();
            let expression = (0..projection.len())
                .map(|k| format!("#p{k}"))
                .collect::<Vec<_>>()
                .join(", ");
            (Some(expression), Some(names))
        };
        let (table, client) = (&self.table, &self.client);
        until_processed(&self.retry, context, pending, |pending| {
            let (expression, names) = (expression.clone(), names.clone());
            async move {
                let keys = KeysAndAttributes::builder()
                    .set_keys(Some(pending))
                    .consistent_read(consistent)
                    .set_projection_expression(expression)
                    .set_expression_attribute_names(names)
                    .build()
                    .map_err(|e| BackendError::Corrupt(format!("{}: {e}", context())))?;
                match client
                    .batch_get_item()
                    .request_items(table, keys)
                    .send()
                    .await
                {
                    Ok(out) => Ok(Step::Answered(
                        out.responses
                            .and_then(|mut got| got.remove(table))
                            .unwrap_or_default(),
                        out.unprocessed_keys
                            .and_then(|mut m| m.remove(table))
                            .map(|k| k.keys)
                            .unwrap_or_default(),
                    )),
                    Err(e)
                        if is_throttling(error_code(&e))
                            || e.as_service_error().is_some_and(|se| {
                                se.is_provisioned_throughput_exceeded_exception()
                                    || se.is_request_limit_exceeded()
                                    || se.is_internal_server_error()
                            }) =>
                    {
                        Ok(Step::Again(format!(
                            "throttled ({})",
                            error_code(&e).unwrap_or("?")
                        )))
                    }
                    Err(e) => Err(remote(context(), e)),
                }
            }
        })
        .await
    }

    /// Writes `requests` in `BatchWriteItem` calls of at most 25 items,
    /// [`WRITES_IN_FLIGHT`] at once, each as [`Self::write_chunk`] says.
    pub(crate) async fn write_all(&self, requests: Vec<WriteRequest>) -> Result<(), BackendError> {
        futures::stream::iter(requests.chunks(BATCH_WRITE_MAX).map(<[_]>::to_vec))
            .map(|chunk| self.write_chunk(chunk))
            .buffer_unordered(WRITES_IN_FLIGHT)
            .try_collect::<()>()
            .await
    }

    /// Writes one batch of at most 25 items, retrying unprocessed items and
    /// throttling with backoff until every item is written or the policy's
    /// attempts run out.
    pub(crate) async fn write_chunk(&self, pending: Vec<WriteRequest>) -> Result<(), BackendError> {
        batch_write(&self.client, &self.table, &self.retry, pending).await
    }

    pub(crate) fn summary_key() -> HashMap<String, AttributeValue> {
        HashMap::from([
            (PARTITION_KEY.to_owned(), s(SUMMARY_DAY)),
            (SORT_KEY.to_owned(), s(SUMMARY_SORT)),
        ])
    }

    /// Whether this table's readings are written packed ([`ITEMS_PACKED`]):
    /// once its summary item carries the mark, or when it has none yet (a
    /// table no airq has written: this marks it, on condition that it is
    /// still so, so that an older writer's first summary update in between
    /// leaves it unmarked). A summary item without the mark (an older
    /// airq's) keeps the unpacked shape. Read again at every batch until
    /// true, so that a running master starts packing once `migrate
    /// --pack-readings` has set the mark. The live tier's writes call it
    /// too, so that a table first written by them is marked.
    pub(crate) async fn writes_packed(&self) -> Result<bool, BackendError> {
        use std::sync::atomic::Ordering;
        if self.packs.load(Ordering::Relaxed) {
            return Ok(true);
        }
        let item = self.summary_item().await?;
        let packs = if item.contains_key(ITEMS_PACKED) {
            true
        } else if !item.is_empty() {
            false
        } else {
            let marked = self
                .client
                .update_item()
                .table_name(&self.table)
                .set_key(Some(Self::summary_key()))
                .update_expression("SET #m = :one")
                .condition_expression("attribute_not_exists(#p) OR attribute_exists(#m)")
                .expression_attribute_names("#m", ITEMS_PACKED)
                .expression_attribute_names("#p", PARTITION_KEY)
                .expression_attribute_values(":one", n(1))
                .send()
                .await;
            match marked {
                Ok(_) => true,
                Err(e)
                    if crate::condition_failed(&e, |se| {
                        se.is_conditional_check_failed_exception()
                    }) =>
                {
                    false
                }
                Err(e) => {
                    return Err(remote(
                        format!("DynamoDB UpdateItem (summary) on {}", self.table),
                        e,
                    ))
                }
            }
        };
        if packs {
            self.packs.store(true, Ordering::Relaxed);
        }
        Ok(packs)
    }

    /// Marks the table's readings as written packed from now on
    /// ([`ITEMS_PACKED`]; `migrate` at the end of a complete run).
    pub(crate) async fn mark_items_packed(&self) -> Result<(), BackendError> {
        self.add_to_summary(ITEMS_PACKED, 1).await
    }

    /// The summary item, strongly consistent (empty before the first
    /// write). Read whole: one small item, one read unit whatever is
    /// projected.
    pub(crate) async fn summary_item(
        &self,
    ) -> Result<HashMap<String, AttributeValue>, BackendError> {
        Ok(self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(Self::summary_key()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| remote(format!("DynamoDB GetItem (summary) on {}", self.table), e))?
            .item
            .unwrap_or_default())
    }

    /// Folds a batch's time range and countries into the summary item.
    pub(crate) async fn update_summary(&self, readings: &[Reading]) -> Result<(), BackendError> {
        let (Some(first), Some(last)) = (
            readings.iter().map(|r| r.timestamp.0).min(),
            readings.iter().map(|r| r.timestamp.0).max(),
        ) else {
            return Ok(());
        };
        let countries: BTreeSet<String> = readings
            .iter()
            .map(|r| format!("{COUNTRY_MEMBER_PREFIX}{}", r.loc_country))
            .collect();
        let add = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::summary_key()))
            .update_expression("ADD #c :c")
            .expression_attribute_names("#c", "countries")
            .expression_attribute_values(":c", AttributeValue::Ss(countries.into_iter().collect()))
            .send();
        let (a, f, l) = tokio::join!(
            add,
            self.move_bound("first_ts", ">", first),
            self.move_bound("last_ts", "<", last)
        );
        a.map_err(|e| {
            remote(
                format!("DynamoDB UpdateItem (summary) on {}", self.table),
                e,
            )
        })?;
        f?;
        l?;
        Ok(())
    }

    /// Moves a number of the summary item to `t` if that moves it the way
    /// `op` says (`>`: earlier, `<`: later) or it is unset. Conditional, so
    /// concurrent writers cannot undo each other.
    pub(crate) async fn move_bound(
        &self,
        attr: &str,
        op: &str,
        t: i64,
    ) -> Result<(), BackendError> {
        self.set_summary_number(
            attr,
            t,
            &format!("attribute_not_exists(#t) OR #t {op} :t"),
            None,
        )
        .await
    }

    /// Sets the summary item's number `attr` (`#t`) to `t` (`:t`) if
    /// `condition` holds (`:from` is `from`, where given); leaves it as it
    /// is otherwise.
    pub(crate) async fn set_summary_number(
        &self,
        attr: &str,
        t: i64,
        condition: &str,
        from: Option<i64>,
    ) -> Result<(), BackendError> {
        let r = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::summary_key()))
            .update_expression("SET #t = :t")
            .condition_expression(condition)
            .expression_attribute_names("#t", attr)
            .expression_attribute_values(":t", n(t));
        let r = match from {
            Some(from) => r.expression_attribute_values(":from", n(from)),
            None => r,
        };
        match r.send().await {
            Ok(_) => Ok(()),
            Err(e) if error_code(&e) == Some("ConditionalCheckFailedException") => Ok(()),
            Err(e) => Err(remote(
                format!("DynamoDB UpdateItem (summary) on {}", self.table),
                e,
            )),
        }
    }

    /// Sends `put` (a `PutItem` with a condition), throttling retried with
    /// backoff; `false` when the condition does not hold.
    pub(crate) async fn put_if(
        &self,
        put: aws_sdk_dynamodb::operation::put_item::builders::PutItemFluentBuilder,
        what: &str,
    ) -> Result<bool, BackendError> {
        match with_backoff(&self.retry, || put.clone().send()).await {
            Ok(_) => Ok(true),
            Err(e)
                if crate::condition_failed(&e, |se| se.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(e) => Err(remote(
                format!("DynamoDB PutItem ({what}) on {}", self.table),
                e,
            )),
        }
    }

    /// Puts an item on condition that its `version` is still `version`
    /// (absent for 0): `false` when another writer changed it first.
    pub(crate) async fn put_versioned(
        &self,
        item: HashMap<String, AttributeValue>,
        version: u64,
        what: &str,
    ) -> Result<bool, BackendError> {
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .expression_attribute_names("#v", VERSION);
        let put = match version {
            0 => put.condition_expression("attribute_not_exists(#v)"),
            v => put
                .condition_expression("#v = :v")
                .expression_attribute_values(":v", n(v)),
        };
        self.put_if(put, what).await
    }
}
