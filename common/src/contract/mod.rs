//! Contract test suites every backend must pass, so the embedded and AWS
//! adapters are held to the same behaviour. Compiled with the `contract`
//! feature; each check panics with a message saying which rule broke.

pub mod emulator;
pub mod queue;
pub mod results;
pub mod store;
