//! Every port a running system uses, connected to one backend.

use crate::alert::AlertStore;
use crate::keys::KeyStore;
use crate::queue::Queue;
use crate::results::ResultStore;
use crate::store::ReadingStore;
use std::sync::Arc;

/// Every port, connected (by `airq-cli`'s `BackendArgs::connect`, or by a
/// test that wires adapters itself).
#[derive(Clone)]
pub struct Backend {
    pub readings: Arc<dyn ReadingStore>,
    pub results: Arc<dyn ResultStore>,
    /// Gateway → workers.
    pub request_send: Arc<dyn Queue>,
    /// Where requests that kept failing end up.
    pub request_send_dlq: Arc<dyn Queue>,
    /// Workers → gateway.
    pub request_receive: Arc<dyn Queue>,
    pub request_receive_dlq: Arc<dyn Queue>,
    /// API keys (hashed), shared by every gateway.
    pub keys: Arc<dyn KeyStore>,
    /// Alerts and their deliveries; `None` on a backend without them (AWS,
    /// for now), where the alert endpoints answer 501.
    pub alerts: Option<Arc<dyn AlertStore>>,
    /// Where it is, for logs (a path or a region).
    pub location: String,
}
