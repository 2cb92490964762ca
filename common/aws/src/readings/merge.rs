//! Fan-out and merge: the pages of several key ranges (a day's cells)
//! merged into one stream in key order.

use super::*;

/// A source of pages of readings in key order.
pub(crate) type Pages = mpsc::Receiver<Result<Vec<Reading>, BackendError>>;

/// The merge order of readings (by time, then sensor).
pub(crate) fn time_then_sensor(r: &Reading) -> (i64, u64) {
    (r.timestamp.0, r.sensor_id)
}

impl DynamoReadingStore {
    /// Fetches several `Query`s, each in key order, and merges them into
    /// one sequence in `key` order (no reading is in two of them: a reading
    /// has one cell).
    pub(crate) fn spawn_merge(
        &self,
        fetches: Vec<Fetch>,
        key: fn(&Reading) -> (i64, u64),
    ) -> Pages {
        let sources: Vec<Pages> = fetches.into_iter().map(|f| self.spawn_fetch(f)).collect();
        let (tx, rx) = mpsc::channel(PAGES_AHEAD);
        tokio::spawn(async move {
            if let Err(e) = merge(sources, key, &tx).await {
                let _ = tx.send(Err(e)).await;
            }
        });
        rx
    }
}

/// Merges sources that are each in `key` order into `tx`, in `key` order,
/// in chunks of [`MERGE_CHUNK`].
pub(crate) async fn merge(
    mut sources: Vec<Pages>,
    key: fn(&Reading) -> (i64, u64),
    tx: &mpsc::Sender<Result<Vec<Reading>, BackendError>>,
) -> Result<(), BackendError> {
    /// The next non-empty page of a source, or `None` at its end.
    pub(crate) async fn refill(src: &mut Pages) -> Result<Option<VecDeque<Reading>>, BackendError> {
        while let Some(page) = src.recv().await {
            let page = page?;
            if !page.is_empty() {
                return Ok(Some(page.into()));
            }
        }
        Ok(None)
    }
    let mut buffers: Vec<VecDeque<Reading>> = Vec::with_capacity(sources.len());
    let mut heap = BinaryHeap::new();
    for (i, src) in sources.iter_mut().enumerate() {
        let buf = refill(src).await?.unwrap_or_default();
        if let Some(front) = buf.front() {
            heap.push(Reverse((key(front), i)));
        }
        buffers.push(buf);
    }
    let mut out = Vec::with_capacity(MERGE_CHUNK);
    while let Some(Reverse((_, i))) = heap.pop() {
        let (Some(buf), Some(src)) = (buffers.get_mut(i), sources.get_mut(i)) else {
            continue;
        };
        if let Some(r) = buf.pop_front() {
            out.push(r);
        }
        if buf.is_empty() {
            if let Some(page) = refill(src).await? {
                *buf = page;
            }
        }
        if let Some(front) = buf.front() {
            heap.push(Reverse((key(front), i)));
        }
        if out.len() >= MERGE_CHUNK {
            let chunk = std::mem::replace(&mut out, Vec::with_capacity(MERGE_CHUNK));
            if tx.send(Ok(chunk)).await.is_err() {
                return Ok(());
            }
        }
    }
    if !out.is_empty() {
        let _ = tx.send(Ok(out)).await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::readings::item::tests::reading;
    #[tokio::test]
    async fn merging_keeps_key_order_across_sources() {
        let mut sources = Vec::new();
        let mut all = Vec::new();
        for src in 0..5u64 {
            let (tx, rx) = mpsc::channel(100);
            let mut rs: Vec<Reading> = (0..40u64)
                .filter(|i| i % 5 == src || i % 7 == 0 && src == 0)
                .map(|i| reading(1000 + (i as i64 / 3), 100 * src + i))
                .collect();
            rs.sort_by_key(time_then_sensor);
            all.extend(rs.clone());
            // Pages of uneven sizes, an empty one among them.
            for page in rs.chunks(3) {
                tx.send(Ok(page.to_vec())).await.unwrap();
                tx.send(Ok(Vec::new())).await.unwrap();
            }
            sources.push(rx);
        }
        let (tx, mut rx) = mpsc::channel(1000);
        merge(sources, time_then_sensor, &tx).await.unwrap();
        drop(tx);
        let mut got = Vec::new();
        while let Some(page) = rx.recv().await {
            got.extend(page.unwrap());
        }
        all.sort_by_key(time_then_sensor);
        assert_eq!(got, all);
    }
    #[tokio::test]
    async fn a_failing_source_fails_the_merge() {
        let (tx1, rx1) = mpsc::channel(4);
        let (tx2, rx2) = mpsc::channel(4);
        tx1.send(Ok(vec![reading(1, 1)])).await.unwrap();
        tx2.send(Err(BackendError::Corrupt("x".into())))
            .await
            .unwrap();
        drop((tx1, tx2));
        let (tx, _rx) = mpsc::channel(4);
        assert!(merge(vec![rx1, rx2], time_then_sensor, &tx).await.is_err());
    }
}
