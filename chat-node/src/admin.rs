//! The admin port: `/healthz` (process alive), `/readyz` (takes new clients: Redis reachable and
//! not draining), `/metrics` (Prometheus text), `/stats` (`NodeStats` JSON for the sidecar) and
//! `/drain` (GET or POST starts the drain, the Kubernetes preStop hook).

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;

use crate::node::Node;

/// Answers one admin request.
pub async fn handle(
    node: Arc<Node>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let response = match (req.method(), req.uri().path()) {
        (&Method::GET, "/healthz") => text(StatusCode::OK, "ok\n"),
        (&Method::GET, "/readyz") => {
            if node.is_draining() {
                text(StatusCode::SERVICE_UNAVAILABLE, "draining\n")
            } else if !node.redis_connected() {
                text(StatusCode::SERVICE_UNAVAILABLE, "redis unreachable\n")
            } else {
                text(StatusCode::OK, "ready\n")
            }
        }
        (&Method::GET, "/metrics") => Response::builder()
            .header(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )
            .body(Full::new(Bytes::from(node.metrics.render())))
            .expect("static response"),
        (&Method::GET, "/stats") => {
            let body = serde_json::to_vec(&node.stats()).expect("stats serialise");
            Response::builder()
                .header(header::CONTENT_TYPE, "application/json")
                .body(Full::new(Bytes::from(body)))
                .expect("static response")
        }
        (&Method::GET | &Method::POST, "/drain") => {
            node.start_drain("admin /drain");
            text(StatusCode::ACCEPTED, "draining\n")
        }
        (_, "/healthz" | "/readyz" | "/metrics" | "/stats" | "/drain") => {
            text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n")
        }
        _ => text(
            StatusCode::NOT_FOUND,
            "not found; try /healthz /readyz /metrics /stats /drain\n",
        ),
    };
    Ok(response)
}

/// A plain-text response.
pub fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .expect("static response")
}
