//! `chatcluster-sidecar`: parses flags, binds the two listeners and runs the sidecar until
//! SIGTERM/Ctrl-C (then until the chat-node is gone; see the library docs).

use anyhow::Context;
use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = sidecar::Config::parse();
    chatcluster_common::init_tracing(config.log_format);
    let agent = tokio::net::TcpListener::bind(config.agent_listen)
        .await
        .with_context(|| format!("cannot bind the agent port {}", config.agent_listen))?;
    let http = tokio::net::TcpListener::bind(config.http_listen)
        .await
        .with_context(|| format!("cannot bind the HTTP port {}", config.http_listen))?;
    sidecar::run(config, agent, http, chatcluster_common::shutdown_signal()).await?;
    Ok(())
}
