//! Contract test suites every backend must pass, so the embedded and AWS
//! adapters are held to the same behaviour, and the sample data and query
//! strategy they run on. A dev-dependency only: nothing here ships in a
//! binary. Each check panics with a message saying which rule broke.

pub mod aggregate;
pub mod alerts;
pub mod changes;
pub mod generate;
pub mod keys;
pub mod live;
pub mod queue;
pub mod results;
pub mod sample;
pub mod store;
