//! The HTTP handlers of the API's endpoints (routed in [`crate::api`]).

pub mod alerts;
pub mod health;
pub mod latest;
pub mod meta;
pub mod result_events;
pub mod results;
pub mod stream;
pub mod submit;
