//! The sidecar's HTTP server: `/metrics` (Prometheus text), `/healthz` (the process is alive) and
//! `/state` (JSON of the reply HAProxy would get now and the stats behind it).

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::state::Shared;

/// Serves HTTP until `stop` is cancelled; open connections finish their current request.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>, stop: CancellationToken) {
    let tracker = TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(err) => {
                tracing::warn!(%err, "http accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let shared = Arc::clone(&shared);
        let stop = stop.clone();
        let connection = async move {
            let service = service_fn(move |req| {
                let shared = Arc::clone(&shared);
                async move { Ok::<_, Infallible>(route(&req, &shared)) }
            });
            let conn = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            let result = tokio::select! {
                result = conn.as_mut() => result,
                () = stop.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(err) = result {
                tracing::debug!(%err, "http connection failed");
            }
        };
        tracker.spawn(connection.instrument(tracing::debug_span!("http_connection", %peer)));
    }
    tracker.close();
    tracker.wait().await;
}

fn respond(
    status: StatusCode,
    content_type: &str,
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, content_type)
        .body(Full::new(body.into()))
        .expect("static headers are valid")
}

fn route(req: &Request<Incoming>, shared: &Shared) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return respond(StatusCode::METHOD_NOT_ALLOWED, "text/plain", "use GET\n");
    }
    match req.uri().path() {
        "/metrics" => respond(
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            shared.metrics.encode(),
        ),
        "/healthz" => respond(StatusCode::OK, "text/plain", "ok\n"),
        "/state" => respond(StatusCode::OK, "application/json", state_json(shared)),
        _ => respond(
            StatusCode::NOT_FOUND,
            "text/plain",
            "try /metrics, /healthz or /state\n",
        ),
    }
}

fn state_json(shared: &Shared) -> String {
    let snap = shared.snapshot();
    let value = serde_json::json!({
        "reply": snap.reply.to_string(),
        "state": snap.reply.state(),
        "weight_percent": snap.reply.weight_percent(),
        "stats": snap.stats,
        "stats_age_ms": snap.stats_age.map(|a| u64::try_from(a.as_millis()).unwrap_or(u64::MAX)),
        "last_error": snap.last_error,
        "terminating": snap.terminating,
    });
    format!("{value}\n")
}
