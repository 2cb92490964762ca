//! The one duration syntax of every flag and variable, defined in
//! [`airq_core::duration`] (API fields take it too).

pub use airq_core::duration::parse;
