//! The chatcluster sidecar: the routing agent next to each chat-node. It polls the node's
//! `/stats`, answers HAProxy agent checks with a weight and a state derived from the node's real
//! connection count, and exposes its own `/metrics`, `/healthz` and `/state`.
//!
//! Modules: [`reply`] decides the agent line (pure, and the place that records which HAProxy
//! words were chosen and why), [`poller`] fetches `/stats`, [`state`] holds what the poller saw,
//! [`agent`] and [`http`] are the two servers, [`metrics`] the Prometheus registry, [`config`]
//! the flags.
//!
//! # Shutdown
//!
//! HAProxy keeps a server's last agent-reported state when it cannot connect to the agent at all
//! (checked on 2.6: the agent status becomes `L4CON` and nothing else changes). So if the sidecar
//! closed its agent port at SIGTERM, HAProxy would go on treating a draining node as `up`. After
//! the shutdown future resolves, [`run`] therefore keeps polling and answering (the node's
//! `draining` flag becomes `down #draining`, its disappearance `down #unreachable`) until the
//! chat-node has been unreachable for `--shutdown-linger-ms` (so every HAProxy has asked at least
//! once more), or until `--shutdown-deadline-ms` has passed; only then do the servers stop.

#![forbid(unsafe_code)]

pub mod agent;
pub mod config;
pub mod error;
pub mod http;
pub mod metrics;
pub mod poller;
pub mod reply;
pub mod state;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use config::Config;
pub use error::{Error, Result};
pub use reply::{DownReason, Hysteresis, Observation, Reply, agent_reply};

/// Runs the sidecar on already bound listeners until `shutdown` resolves and the chat-node is
/// gone (or the shutdown deadline passes); see the module docs for the shutdown rule.
pub async fn run(
    config: Config,
    agent_listener: TcpListener,
    http_listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let client = poller::StatsClient::new(&config.stats_url)?;
    let shared = Arc::new(state::Shared::new(
        config.stale_after(),
        config.full_release_percent,
    ));
    let stop = CancellationToken::new();
    tracing::info!(
        stats_url = %config.stats_url,
        agent = %agent_listener.local_addr()?,
        http = %http_listener.local_addr()?,
        "sidecar started"
    );

    let poller = tokio::spawn(poller::run(
        client,
        Arc::clone(&shared),
        config.poll_interval(),
        config.poll_timeout(),
        stop.clone(),
    ));
    let agent = tokio::spawn(agent::serve(
        agent_listener,
        Arc::clone(&shared),
        stop.clone(),
    ));
    let http = tokio::spawn(http::serve(
        http_listener,
        Arc::clone(&shared),
        stop.clone(),
    ));

    shutdown.await;
    shared.set_terminating();
    tracing::info!("shutdown requested; answering agent checks until the chat-node is gone");
    wait_until_node_gone(
        &shared,
        config.shutdown_linger(),
        config.shutdown_deadline(),
    )
    .await;

    stop.cancel();
    for task in [poller, agent, http] {
        if let Err(err) = task.await {
            tracing::error!(%err, "sidecar task panicked");
        }
    }
    tracing::info!("sidecar stopped");
    Ok(())
}

/// Returns once polls have failed for `linger` in a row, or after `deadline`.
async fn wait_until_node_gone(shared: &state::Shared, linger: Duration, deadline: Duration) {
    let started = Instant::now();
    loop {
        if shared
            .unreachable_for()
            .is_some_and(|gone_for| gone_for >= linger)
        {
            tracing::info!("chat-node is gone; stopping");
            return;
        }
        if started.elapsed() >= deadline {
            tracing::warn!(
                ?deadline,
                "chat-node still answers after the shutdown deadline; stopping"
            );
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
