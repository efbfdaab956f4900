//! The `chat-node` binary: parses flags, sets up logging, binds the two listeners and runs the
//! node until SIGTERM/Ctrl-C has drained it.

use anyhow::Context;
use clap::Parser;

/// The chatcluster WebSocket chat server.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(flatten)]
    config: chat_node::Config,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let Cli { config } = Cli::parse();
    chatcluster_common::init_tracing(config.log_format);
    let ws = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {} (--listen)", config.listen))?;
    let admin = tokio::net::TcpListener::bind(config.admin_listen)
        .await
        .with_context(|| format!("cannot listen on {} (--admin-listen)", config.admin_listen))?;
    chat_node::run(config, ws, admin, chatcluster_common::shutdown_signal()).await?;
    Ok(())
}
