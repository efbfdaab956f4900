//! The operator's admin HTTP server: `/healthz` (the process runs), `/readyz` (the CRD check
//! passed and, with leader election, the controller loop is running or waiting as a standby),
//! and `/metrics` (Prometheus text). It takes an already bound listener and a shutdown future so
//! tests run it on `127.0.0.1:0`.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::metrics::Metrics;

/// What the admin endpoints report; shared with the controller.
#[derive(Clone, Default)]
pub struct AdminState {
    ready: Arc<AtomicBool>,
    /// The process-wide metrics served on `/metrics`.
    pub metrics: Metrics,
}

impl AdminState {
    /// State with the given metrics, not ready yet.
    pub fn new(metrics: Metrics) -> Self {
        Self {
            ready: Arc::default(),
            metrics,
        }
    }

    /// Marks the operator ready (or not) for `/readyz`.
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
    }

    /// Whether `/readyz` answers 200.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }
}

/// Answers one admin request: pure apart from reading the shared state.
pub fn respond(state: &AdminState, path: &str) -> (StatusCode, &'static str, String) {
    const TEXT: &str = "text/plain; charset=utf-8";
    match path {
        "/healthz" => (StatusCode::OK, TEXT, "ok\n".into()),
        "/readyz" if state.is_ready() => (StatusCode::OK, TEXT, "ready\n".into()),
        "/readyz" => (StatusCode::SERVICE_UNAVAILABLE, TEXT, "not ready\n".into()),
        "/metrics" => (
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            state.metrics.encode(),
        ),
        _ => (
            StatusCode::NOT_FOUND,
            TEXT,
            "not found: try /healthz, /readyz or /metrics\n".into(),
        ),
    }
}

/// Serves the admin endpoints on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    state: AdminState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    tokio::pin!(shutdown);
    loop {
        let (stream, _peer) = tokio::select! {
            () = &mut shutdown => return Ok(()),
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(err) => {
                    // Running out of file descriptors is transient: log and keep serving.
                    tracing::warn!(%err, "admin accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let state = state.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let (status, content_type, body) = respond(&state, req.uri().path());
                let response = Response::builder()
                    .status(status)
                    .header(hyper::header::CONTENT_TYPE, content_type)
                    .body(Full::new(Bytes::from(body)))
                    .expect("static response parts are valid");
                async move { Ok::<_, Infallible>(response) }
            });
            if let Err(err) = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(%err, "admin connection ended with an error");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readyz_follows_the_ready_flag() {
        let state = AdminState::default();
        assert_eq!(
            respond(&state, "/readyz").0,
            StatusCode::SERVICE_UNAVAILABLE
        );
        state.set_ready(true);
        assert_eq!(respond(&state, "/readyz").0, StatusCode::OK);
        assert_eq!(respond(&state, "/healthz").0, StatusCode::OK);
        assert_eq!(respond(&state, "/nope").0, StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn serves_metrics_over_http_and_stops_on_shutdown() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = AdminState::default();
        state.metrics.failure("kube_conflict");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, state, async {
            let _ = stopped.await;
        }));
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut reply = String::new();
        stream.read_to_string(&mut reply).await.unwrap();
        assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
        assert!(reply.contains("reason=\"kube_conflict\""), "{reply}");
        stop.send(()).unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(5), server)
            .await
            .expect("server stops on shutdown")
            .unwrap()
            .unwrap();
    }
}
