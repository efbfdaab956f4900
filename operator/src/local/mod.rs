//! `local` mode: the same ChatCluster as in a cluster, realized with processes on this machine
//! instead of Kubernetes objects. [`plan`] turns a ChatCluster and a set of chosen loopback ports
//! into the list of children (a `redis-server` unless the spec names an external Redis, one
//! chat-node + sidecar pair per replica with the settings the StatefulSet gives its containers,
//! and `haproxy` with a config from the in-cluster renderer using static discovery); the
//! [`supervisor`] runs them like pods: ordered start, readiness, restart with backoff, drain on
//! shutdown, and nothing left behind. [`run`] ties them together for the `local` subcommand.

pub mod child;
pub mod error;
pub mod plan;
pub mod probe;
pub mod scale;
pub mod state;
pub mod supervisor;

mod run;
#[cfg(test)]
mod supervisor_tests;

pub use child::{Backoff, ChildSpec, ChildStatus, StopPolicy};
pub use error::Error;
pub use probe::Probe;
pub use run::{LocalArgs, run};
pub use supervisor::{Supervisor, SupervisorOptions};
