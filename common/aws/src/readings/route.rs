//! Routing a query to key ranges: which index (the table by day,
//! `by_country`, `by_cell`) and which keys a query or `latest` reads, and
//! the pages each range yields.

use super::*;

/// Which key range a query reads.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Route {
    /// The whole day (or the whole latest partition).
    All,
    /// One country's range of the `by_country` index.
    Country(String),
    /// The place's grid cells, on the `by_cell` index.
    Cells(Vec<u32>),
}

impl Route {
    /// The cheapest read: a small place's cells, else the country, else
    /// everything (a large place is then filtered after reading).
    pub(crate) fn of(place: Option<&Place>, country: Option<&str>) -> Route {
        if let Some(cells) = place.and_then(Place::cells).filter(|c| !c.is_empty()) {
            return Route::Cells(cells);
        }
        match country {
            Some(c) => Route::Country(c.to_owned()),
            None => Route::All,
        }
    }
}

/// One `Query`, to be paginated to the end.
#[derive(Debug, Clone, Default)]
pub(crate) struct Fetch {
    /// What it reads, for error messages (`2018-06-03`, `latest cell 7`).
    what: String,
    index: Option<&'static str>,
    key_condition: &'static str,
    names: HashMap<String, String>,
    values: HashMap<String, AttributeValue>,
    limit: Option<i32>,
}

impl Fetch {
    pub(crate) fn name(mut self, placeholder: &str, name: &str) -> Self {
        self.names.insert(placeholder.to_owned(), name.to_owned());
        self
    }

    pub(crate) fn value(mut self, placeholder: &str, value: AttributeValue) -> Self {
        self.values.insert(placeholder.to_owned(), value);
        self
    }
}

impl DynamoReadingStore {
    /// Streams the readings of `query` into `tx`, day by day, with a few
    /// days being fetched at once.
    pub(crate) async fn run_query(
        &self,
        query: &Query,
        tx: &mpsc::Sender<Result<Reading, BackendError>>,
    ) -> Result<(), BackendError> {
        // Nothing filters in DynamoDB (it would not lower the read units,
        // and the items are packed: `item.rs`); an empty index range
        // reads nothing.
        if query.aqi_bounds().is_none() {
            return Ok(());
        }
        if query.start > query.end {
            return Ok(());
        }
        let route = Route::of(query.place.as_ref(), query.country.as_deref());
        let in_flight = match &route {
            Route::Cells(cells) => (CELL_FETCHES_IN_FLIGHT / cells.len()).clamp(1, DAYS_IN_FLIGHT),
            _ => DAYS_IN_FLIGHT,
        };
        let (first, last) = (query.start.0.div_euclid(DAY), query.end.0.div_euclid(DAY));
        let mut next = first;
        let mut fetching = VecDeque::new();
        loop {
            while fetching.len() < in_flight && next <= last {
                let lo = if next == first {
                    query.start.0.rem_euclid(DAY)
                } else {
                    0
                };
                let hi = if next == last {
                    query.end.0.rem_euclid(DAY)
                } else {
                    DAY - 1
                };
                let day = day_name(next)?;
                fetching.push_back(self.spawn_day(&route, &day, (lo, hi)));
                next += 1;
            }
            let Some(mut pages) = fetching.pop_front() else {
                return Ok(());
            };
            while let Some(page) = pages.recv().await {
                for r in page? {
                    // The reference decides everything the key ranges
                    // do not: the index, sensor types, the exact place,
                    // the country (a key range also admits a country
                    // that starts with this one followed by '#').
                    if !query.matches(&r) {
                        continue;
                    }
                    if tx.send(Ok(r)).await.is_err() {
                        // The consumer went away: dropping the receivers
                        // stops the fetches.
                        return Ok(());
                    }
                }
            }
        }
    }

    /// Fetches one day's candidate readings, in key order.
    pub(crate) fn spawn_day(&self, route: &Route, day: &str, (lo, hi): (i64, i64)) -> Pages {
        let base = Fetch {
            what: day.to_owned(),
            ..Fetch::default()
        };
        match route {
            Route::All => self.spawn_fetch(
                Fetch {
                    key_condition: "#day = :day AND #sk BETWEEN :from AND :to",
                    ..base
                }
                .name("#day", PARTITION_KEY)
                .name("#sk", SORT_KEY)
                .value(":day", s(day))
                .value(":from", s(format!("{lo:05}#")))
                .value(":to", s(format!("{hi:05}#~"))),
            ),
            Route::Country(country) => self.spawn_fetch(
                Fetch {
                    index: Some(BY_COUNTRY_INDEX),
                    key_condition: "#day = :day AND #sk BETWEEN :from AND :to",
                    ..base
                }
                .name("#day", PARTITION_KEY)
                .name("#sk", COUNTRY_SORT_KEY)
                .value(":day", s(day))
                .value(":from", s(format!("{country}#{lo:05}#")))
                .value(":to", s(format!("{country}#{hi:05}#~"))),
            ),
            Route::Cells(cells) => {
                let fetches = cells
                    .iter()
                    .map(|&cell| {
                        Fetch {
                            what: format!("{day} cell {cell}"),
                            index: Some(BY_CELL_INDEX),
                            key_condition: "#ck = :ck AND #sk BETWEEN :from AND :to",
                            limit: Some(CELL_PAGE_ITEMS),
                            ..Fetch::default()
                        }
                        .name("#ck", CELL_KEY)
                        .name("#sk", SORT_KEY)
                        .value(":ck", s(cell_key_of(day, cell)))
                        .value(":from", s(format!("{lo:05}#")))
                        .value(":to", s(format!("{hi:05}#~")))
                    })
                    .collect();
                self.spawn_merge(fetches, time_then_sensor)
            }
        }
    }

    /// Fetches one `Query` page by page into a small channel (so a fetch
    /// that runs ahead holds at most a few pages).
    pub(crate) fn spawn_fetch(&self, fetch: Fetch) -> Pages {
        let (tx, rx) = mpsc::channel(PAGES_AHEAD);
        let this = self.clone();
        tokio::spawn(async move {
            let mut start_key = None;
            loop {
                match this.query_page(&fetch, start_key.take()).await {
                    Ok((page, next)) => {
                        if tx.send(Ok(page)).await.is_err() {
                            return;
                        }
                        match next {
                            Some(k) => start_key = Some(k),
                            None => return,
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                }
            }
        });
        rx
    }

    /// One `Query` page.
    pub(crate) async fn query_page(
        &self,
        fetch: &Fetch,
        start_key: Option<HashMap<String, AttributeValue>>,
    ) -> Result<(Vec<Reading>, Option<HashMap<String, AttributeValue>>), BackendError> {
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .set_index_name(fetch.index.map(str::to_owned))
            .consistent_read(self.consistent_reads && fetch.index.is_none())
            .key_condition_expression(fetch.key_condition)
            .set_expression_attribute_names(Some(fetch.names.clone()))
            .set_expression_attribute_values(Some(fetch.values.clone()))
            .set_limit(fetch.limit)
            .set_exclusive_start_key(start_key)
            .send()
            .await
            .map_err(|e| {
                remote(
                    format!("DynamoDB Query on {} ({})", self.table, fetch.what),
                    e,
                )
            })?;
        let page = out
            .items
            .unwrap_or_default()
            .into_iter()
            .map(|item| reading_of_item(&self.table, item))
            .collect::<Result<Vec<_>, _>>()?;
        let next = out.last_evaluated_key.filter(|k| !k.is_empty());
        Ok((page, next))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use airq_core::place::{Bbox, Near};
    #[test]
    fn routes_prefer_a_small_place_then_the_country() {
        let city = Place::Near(Near {
            lat: 48.78,
            lon: 9.18,
            radius_km: 10.0,
        });
        let continent = Place::Bbox(Bbox {
            min_lon: -10.0,
            min_lat: 35.0,
            max_lon: 30.0,
            max_lat: 60.0,
        });
        assert!(matches!(Route::of(Some(&city), Some("DE")), Route::Cells(c) if c.len() <= 6));
        assert_eq!(
            Route::of(Some(&continent), Some("DE")),
            Route::Country("DE".into())
        );
        assert_eq!(Route::of(Some(&continent), None), Route::All);
        assert_eq!(Route::of(None, None), Route::All);
    }
}
