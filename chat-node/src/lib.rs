//! chat-node: the chatcluster WebSocket chat server. Nodes scale horizontally through Redis:
//! per-room pub/sub channels for live traffic, a capped stream per room for history and resume
//! (written in the same Lua script as the publish, so every node sees one order), and presence
//! hashes shared by all nodes.
//!
//! Modules: `config` (flags), `run` here (listeners, background tasks, drain), `ws` (public port,
//! upgrade decisions) and `admin` (health, metrics, stats, drain), `session` + `writer` (one
//! connection's two halves), `hub` (local rooms/users/connections and fan-out), `subscriber`
//! (the Redis pub/sub connection, reconnect and gap fill), `store` (Redis commands and scripts),
//! `presence`, and the pure parts: `protocol` + `frames`, `keys`, `offset`, `auth`,
//! `ratelimit`, `drain`.

mod admin;
mod auth;
mod config;
mod drain;
mod error;
mod frames;
mod hub;
mod keys;
mod metrics;
mod node;
mod offset;
mod presence;
pub mod protocol;
mod ratelimit;
mod session;
mod store;
mod subscriber;
mod writer;
mod ws;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub use config::Config;
pub use error::Error;
pub use offset::Offset;

use node::Node;

/// `Result` with this crate's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Extra time after the grace period for the last close handshakes.
const DRAIN_MARGIN: Duration = Duration::from_secs(2);

/// Runs a node on already bound listeners until `shutdown` resolves (or `/drain` is called) and
/// the drain has finished: every connection closed, or the grace period plus a short margin
/// passed. Redis need not be reachable at start; the node keeps retrying.
pub async fn run(
    config: Config,
    ws_listener: TcpListener,
    admin_listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    if config.outbound_queue == 0 || config.max_message_bytes < 64 || config.rate_burst == 0 {
        return Err(Error::Config(
            "--outbound-queue and --rate-burst must be at least 1 and --max-message-bytes at least 64".into(),
        ));
    }
    if config.jwt_secret.as_deref().is_some_and(str::is_empty) {
        // An empty HS256 key lets anyone mint tokens; refuse rather than guess what was meant.
        return Err(Error::Config(
            "--jwt-secret (CHAT_JWT_SECRET) is set but empty; set a secret, or unset it for anonymous mode".into(),
        ));
    }
    let redis =
        redis::Client::open(config.redis_url.as_str()).map_err(|source| Error::RedisUrl {
            url: config.redis_url.clone(),
            source,
        })?;
    let keys = keys::Keys::new(config.redis_prefix());
    let store =
        store::Store::new(redis.clone(), keys, config.history_length).map_err(|source| {
            Error::RedisUrl {
                url: config.redis_url.clone(),
                source,
            }
        })?;
    let (sub_tx, sub_rx) = mpsc::unbounded_channel();
    let (presence_tx, presence_rx) = mpsc::unbounded_channel();
    let verifier = config.jwt_secret.as_deref().map(auth::Verifier::new);
    let node = Arc::new(Node::new(
        config,
        redis,
        store,
        hub::Hub::new(sub_tx.clone()),
        presence_tx,
        verifier,
    ));
    let ws_addr = ws_listener.local_addr().map_err(Error::Listener)?;
    let admin_addr = admin_listener.local_addr().map_err(Error::Listener)?;
    tracing::info!(
        node = %node.config.node_name,
        ws = %ws_addr,
        admin = %admin_addr,
        prefix = %node.config.redis_prefix(),
        anonymous = node.verifier.is_none(),
        "chat-node started"
    );

    let stop = CancellationToken::new();
    tokio::spawn(subscriber::run(node.clone(), sub_tx, sub_rx, stop.clone()));
    tokio::spawn(presence::run(node.clone(), presence_rx, stop.clone()));
    let n = node.clone();
    tokio::spawn(serve_http(admin_listener, stop.clone(), move |req| {
        admin::handle(n.clone(), req)
    }));
    let n = node.clone();
    tokio::spawn(serve_http(ws_listener, stop.clone(), move |req| {
        ws::handle(n.clone(), req)
    }));

    tokio::select! {
        () = shutdown => node.start_drain("shutdown signal"),
        () = node.drain.cancelled() => {}
    }
    drain_connections(&node).await;
    if let Err(err) = node.store.reap(&node.config.node_name).await {
        tracing::warn!(%err, "could not remove this node's presence from redis");
    }
    stop.cancel();
    tracing::info!("chat-node stopped");
    Ok(())
}

/// Closes every connection with 1001, spread over the grace period, and waits until they are
/// gone or the deadline passes.
async fn drain_connections(node: &Arc<Node>) {
    let grace = node.config.drain_grace();
    let start = tokio::time::Instant::now();
    let deadline = start + grace + DRAIN_MARGIN;
    let conns = node.hub.connections();
    let times = drain::schedule(conns.len(), grace);
    tracing::info!(connections = conns.len(), ?grace, "closing connections");
    let closer = tokio::spawn(async move {
        for (conn, at) in conns.into_iter().zip(times) {
            tokio::time::sleep_until(start + at).await;
            conn.close(1001);
        }
    });
    while node.connection_count() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    closer.abort();
    // Connections that raced the drain (upgraded just before it started) are closed now.
    for conn in node.hub.connections() {
        conn.close(1001);
    }
    if node.connection_count() > 0 {
        tracing::warn!(
            left = node.connection_count(),
            "drain deadline passed with connections open"
        );
    }
}

/// Accepts HTTP/1 connections (with upgrades) until `stop` is cancelled.
async fn serve_http<F, Fut>(listener: TcpListener, stop: CancellationToken, handler: F)
where
    F: Fn(hyper::Request<hyper::body::Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<
            Output = Result<
                hyper::Response<http_body_util::Full<bytes::Bytes>>,
                std::convert::Infallible,
            >,
        > + Send
        + 'static,
{
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(err) => {
                // Out of file descriptors and similar: back off instead of spinning.
                tracing::warn!(%err, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let handler = handler.clone();
        tokio::spawn(async move {
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), service_fn(handler))
                .with_upgrades();
            if let Err(err) = conn.await {
                tracing::debug!(%err, "http connection ended with an error");
            }
        });
    }
}
