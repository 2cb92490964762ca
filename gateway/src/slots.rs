//! Places for long-lived requests (event streams, waiting polls, live
//! streams), bounded on the gateway and per client: what the followers of
//! results ([`crate::follow`]) and the live streams ([`crate::live_feed`])
//! each hold one of while open.

use airq_core::ClientId;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Who holds the places of one kind, at most `max_total` in all and
/// `per_client_max` per client.
pub struct Slots {
    total: Arc<Semaphore>,
    max_total: usize,
    per_client_max: usize,
    /// Places held per client, only while held (so at most `max_total`
    /// entries).
    per_client: Mutex<HashMap<ClientId, usize>>,
}

/// No place: `max` reached by `whose` (`"this client"`, answered 429, or
/// `"this gateway"`, 503).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full {
    pub max: usize,
    pub whose: &'static str,
}

/// A place; given back when dropped.
pub struct Slot {
    _permit: OwnedSemaphorePermit,
    owner: Arc<Slots>,
    client: ClientId,
}

impl Slots {
    pub fn new(max_total: usize, per_client_max: usize) -> Arc<Self> {
        Arc::new(Slots {
            total: Arc::new(Semaphore::new(max_total)),
            max_total,
            per_client_max,
            per_client: Mutex::default(),
        })
    }

    fn per_client(&self) -> std::sync::MutexGuard<'_, HashMap<ClientId, usize>> {
        self.per_client
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// A place for `client`, if the gateway and the client's share have one.
    pub fn take(self: &Arc<Self>, client: &ClientId) -> Result<Slot, Full> {
        let permit = self.total.clone().try_acquire_owned().map_err(|_| Full {
            max: self.max_total,
            whose: "this gateway",
        })?;
        let mut held = self.per_client();
        let n = held.entry(*client).or_insert(0);
        if *n >= self.per_client_max {
            return Err(Full {
                max: self.per_client_max,
                whose: "this client",
            });
        }
        *n += 1;
        Ok(Slot {
            _permit: permit,
            owner: self.clone(),
            client: *client,
        })
    }

    /// Places held now.
    pub fn held(&self) -> usize {
        self.max_total - self.total.available_permits()
    }

    /// Clients holding a place now.
    #[cfg(test)]
    pub fn clients(&self) -> usize {
        self.per_client().len()
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut held = self.owner.per_client();
        if let Some(n) = held.get_mut(&self.client) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                held.remove(&self.client);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn client(n: u128) -> ClientId {
        ClientId::Key(Uuid::from_u128(n))
    }

    #[test]
    fn places_are_bounded_per_client_and_in_all_and_given_back() {
        let s = Slots::new(3, 2);
        let a1 = s.take(&client(1)).expect("a's first");
        let _a2 = s.take(&client(1)).expect("a's second");
        assert_eq!(
            s.take(&client(1)).err(),
            Some(Full {
                max: 2,
                whose: "this client"
            })
        );
        let b1 = s.take(&client(2)).expect("b's first");
        assert_eq!(
            s.take(&client(2)).err(),
            Some(Full {
                max: 3,
                whose: "this gateway"
            })
        );
        assert_eq!(s.held(), 3);
        drop(a1);
        assert_eq!(s.held(), 2);
        let _b2 = s.take(&client(2)).expect("a place came free");
        drop(b1);
        drop(_b2);
        assert_eq!(s.clients(), 1, "only a keeps an entry");
    }
}
