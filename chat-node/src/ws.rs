//! The public port: `/` serves the demo page, `/ws` upgrades to a chat connection. Everything
//! that can refuse a client (draining or full: 503, bad identity: 401/400, not a WebSocket
//! request: 400/426) is decided here, before the upgrade.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};

use crate::admin::text;
use crate::auth;
use crate::node::Node;

/// The demo chat page.
const DEMO_HTML: &str = include_str!("demo.html");

/// tungstenite buffers sized for many mostly idle connections. The read buffer is allocated
/// (and zero-filled) up front for every connection, so it is small: 1 KiB holds any typical chat
/// frame, and larger frames still work (tungstenite reserves a frame's full length once its
/// header is read; they just take more read calls). The write buffer only coalesces the frames of
/// one batch before the writer's flush. Message and frame size are capped at
/// `--max-message-bytes` (larger closes with 1009). See docs/benchmarks.md for the figures.
pub fn ws_config(max_message_bytes: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(1024)
        .write_buffer_size(4096)
        .max_message_size(Some(max_message_bytes))
        .max_frame_size(Some(max_message_bytes))
}

fn header_has_token(req: &Request<Incoming>, name: header::HeaderName, token: &str) -> bool {
    req.headers()
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// Answers one request on the public port.
pub async fn handle(
    node: Arc<Node>,
    mut req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/" | "/index.html") => {
            return Ok(Response::builder()
                .header(header::CONTENT_TYPE, "text/html; charset=utf-8")
                .body(Full::new(Bytes::from_static(DEMO_HTML.as_bytes())))
                .expect("static response"));
        }
        (&Method::GET, "/ws") => {}
        (_, "/ws") => {
            return Ok(text(
                StatusCode::METHOD_NOT_ALLOWED,
                "use GET with a WebSocket upgrade\n",
            ));
        }
        _ => {
            return Ok(text(
                StatusCode::NOT_FOUND,
                "not found; the chat endpoint is /ws\n",
            ));
        }
    }
    if !header_has_token(&req, header::UPGRADE, "websocket")
        || !header_has_token(&req, header::CONNECTION, "upgrade")
    {
        return Ok(text(
            StatusCode::BAD_REQUEST,
            "expected a WebSocket upgrade request\n",
        ));
    }
    if req
        .headers()
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_none_or(|v| v != "13")
    {
        return Ok(Response::builder()
            .status(StatusCode::UPGRADE_REQUIRED)
            .header(header::SEC_WEBSOCKET_VERSION, "13")
            .body(Full::new(Bytes::from_static(
                b"WebSocket version 13 required\n",
            )))
            .expect("static response"));
    }
    let Some(key) = req
        .headers()
        .get(header::SEC_WEBSOCKET_KEY)
        .map(|k| derive_accept_key(k.as_bytes()))
    else {
        return Ok(text(StatusCode::BAD_REQUEST, "missing Sec-WebSocket-Key\n"));
    };
    if node.is_draining() {
        node.metrics.refused(503);
        return Ok(text(
            StatusCode::SERVICE_UNAVAILABLE,
            "node is draining; connect to another node\n",
        ));
    }
    let Some(slot) = node.try_slot() else {
        node.metrics.refused(503);
        return Ok(text(
            StatusCode::SERVICE_UNAVAILABLE,
            "node is full; connect to another node\n",
        ));
    };
    let verifier = node.verifier.as_ref();
    let identity = match auth::identify(verifier, req.uri().query(), req.headers()) {
        Ok(identity) => identity,
        Err(refusal) => {
            node.metrics.refused(refusal.status.as_u16());
            return Ok(text(refusal.status, refusal.message));
        }
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    let config = ws_config(node.config.max_message_bytes);
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                let ws = WebSocketStream::from_raw_socket(
                    TokioIo::new(upgraded),
                    Role::Server,
                    Some(config),
                )
                .await;
                crate::session::serve(node, ws, identity, slot).await;
            }
            Err(err) => tracing::debug!(%err, "upgrade failed"),
        }
    });
    Ok(Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::UPGRADE, "websocket")
        .header(header::CONNECTION, "Upgrade")
        .header(header::SEC_WEBSOCKET_ACCEPT, key)
        .body(Full::new(Bytes::new()))
        .expect("static response"))
}
