//! The chatcluster operator as a library; `main.rs` only parses flags and calls in here.
//!
//! - [`crd`]: the `ChatCluster` custom resource types, CRD generation, offline validation and
//!   test fixtures.
//! - [`defaults`]: operator-wide defaults (images) from flags.
//! - [`desired`]: the pure desired state, ChatCluster -> Kubernetes objects.
//! - [`haproxy_cfg`]: the pure `haproxy.cfg` renderer (DNS or static discovery).
//! - [`render`]: the `render` subcommand's multi-document YAML.
#![forbid(unsafe_code)]

pub mod crd;
pub mod defaults;
pub mod desired;
pub mod haproxy_cfg;
pub mod local;
pub mod render;

pub mod admin;
pub mod apply;
pub mod controller;
pub mod error;
pub mod leader;
pub mod metrics;
pub mod rbac;
pub mod status;
