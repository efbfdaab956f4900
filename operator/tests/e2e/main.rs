//! End-to-end tests of the whole system in `local` mode: `chatcluster-operator local` runs a real
//! `redis-server`, real chat-nodes with their sidecars and a real `haproxy` on loopback, and real
//! WebSocket clients (and, for the demo page, a real headless browser) talk to it through
//! HAProxy. They need the workspace binaries built (`cargo build --workspace --bins`).
//!
//! The tests run one at a time (see [`serial`]): each starts its own local mode, and timing
//! figures such as reconnect times mean little when several clusters share two cores.

mod browser;
mod chat;
mod client;
mod delivery;
mod harness;
mod lifecycle;
mod routing;
mod scaling;

/// The lock each test holds while it runs, so the tests run one at a time.
pub static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
