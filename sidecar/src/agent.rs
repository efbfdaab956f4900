//! The HAProxy agent-check server: on each TCP connection, write one reply line decided from the
//! latest shared state, half-close, and wait briefly for HAProxy to close its side. Nothing here
//! touches the chat-node, so a slow node never delays an answer.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::state::Shared;

/// Longest time one agent connection may take (write the line, then wait for HAProxy's close).
const CONNECTION_BUDGET: Duration = Duration::from_secs(1);

/// Accepts agent checks until `stop` is cancelled, then waits for the connections in flight.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>, stop: CancellationToken) {
    let tracker = TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                let shared = Arc::clone(&shared);
                let check = async move {
                    let result = tokio::time::timeout(CONNECTION_BUDGET, answer(stream, &shared));
                    match result.await {
                        Ok(Ok(())) => {}
                        Ok(Err(err)) => tracing::debug!(%err, "agent connection failed"),
                        Err(_) => tracing::debug!("agent connection timed out"),
                    }
                };
                tracker.spawn(check.instrument(tracing::debug_span!("agent_check", %peer)));
            }
            Err(err) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(%err, "agent accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    tracker.close();
    tracker.wait().await;
    tracing::debug!("agent server stopped");
}

async fn answer(mut stream: TcpStream, shared: &Shared) -> std::io::Result<()> {
    let reply = shared.reply_now();
    shared.metrics.agent_check_served();
    stream.write_all(format!("{reply}\n").as_bytes()).await?;
    stream.shutdown().await?;
    // Read until HAProxy closes, so unread bytes (an `agent-send` string) never turn our close
    // into a reset that could discard the reply.
    let mut sink = [0u8; 256];
    while stream.read(&mut sink).await? > 0 {}
    Ok(())
}
