//! The chatcluster operator as a library; `main.rs` only parses flags and calls in here.
//!
//! - [`crd`]: the `ChatCluster` custom resource types, CRD generation, offline validation and
//!   test fixtures.
//! - [`defaults`]: operator-wide defaults (images) from flags.
#![forbid(unsafe_code)]

pub mod crd;
pub mod defaults;

pub mod admin;
pub mod apply;
pub mod error;
pub mod leader;
pub mod metrics;
pub mod rbac;
pub mod status;
