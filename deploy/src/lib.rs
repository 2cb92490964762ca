//! `airq-deploy`'s library: what the command and the tests share.
//!
//! Provisioning is admin code (it creates and deletes tables, queues and a
//! bucket), so it lives here, beside the command that runs it, and not in
//! the backend crates every service links. It reads the resources' shape
//! from `airq_aws::schema`, as the adapters do.

#[cfg(feature = "emulator")]
pub mod emulator;
#[cfg(feature = "aws")]
pub mod migrate;
#[cfg(feature = "aws")]
pub mod provision;
