//! Test helpers for the sidecar's integration tests: a fake chat-node `/stats` server whose
//! answer the test controls, an in-process sidecar on loopback ports, and tiny clients for the
//! agent port and the HTTP port.
#![allow(dead_code)] // each test file uses a different subset

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use chatcluster_common::NodeStats;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::{JoinHandle, JoinSet};

/// What the fake `/stats` endpoint does.
#[derive(Debug, Clone)]
pub enum Behavior {
    /// 200 with this JSON.
    Serve(NodeStats),
    /// Accept the request and never answer.
    Hang,
    /// Answer with this status and an empty body.
    Status(u16),
}

/// A fake chat-node admin port serving `/stats`.
pub struct FakeNode {
    pub addr: SocketAddr,
    behavior: Arc<Mutex<Behavior>>,
    server: Option<JoinHandle<()>>,
}

pub fn stats(connections: u64, capacity: u64) -> NodeStats {
    NodeStats {
        node: "fake".into(),
        connections,
        capacity,
        draining: false,
        redis_connected: true,
    }
}

impl FakeNode {
    pub async fn start(initial: Behavior) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let behavior = Arc::new(Mutex::new(initial));
        let shared = Arc::clone(&behavior);
        let server = tokio::spawn(async move {
            // Connection tasks live in this set, so aborting the server aborts them too and a
            // stopped fake refuses and resets like a dead process.
            let mut connections = JoinSet::new();
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let behavior = Arc::clone(&shared);
                connections.spawn(async move {
                    let service = service_fn(move |_req| {
                        let behavior = behavior.lock().unwrap().clone();
                        async move {
                            match behavior {
                                Behavior::Serve(stats) => {
                                    let body = serde_json::to_vec(&stats).unwrap();
                                    Ok::<_, Infallible>(hyper::Response::new(Full::new(
                                        Bytes::from(body),
                                    )))
                                }
                                Behavior::Hang => std::future::pending().await,
                                Behavior::Status(code) => {
                                    let mut resp = hyper::Response::new(Full::new(Bytes::new()));
                                    *resp.status_mut() = http::StatusCode::from_u16(code).unwrap();
                                    Ok(resp)
                                }
                            }
                        }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self {
            addr,
            behavior,
            server: Some(server),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}/stats", self.addr)
    }

    pub fn set(&self, behavior: Behavior) {
        *self.behavior.lock().unwrap() = behavior;
    }

    /// Stops serving: the port refuses connections from now on.
    pub async fn stop(&mut self) {
        if let Some(server) = self.server.take() {
            server.abort();
            let _ = server.await;
        }
    }
}

impl Drop for FakeNode {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }
}

/// A sidecar running in-process on loopback ports.
pub struct Sidecar {
    pub agent: SocketAddr,
    pub http: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    pub task: JoinHandle<sidecar::Result<()>>,
}

/// A sidecar config with short intervals for tests.
pub fn fast_config(stats_url: &str) -> sidecar::Config {
    let mut config = sidecar::Config::for_stats_url(stats_url);
    config.poll_interval_ms = 50;
    config.poll_timeout_ms = 100;
    config.stale_after_ms = 500;
    config.shutdown_linger_ms = 300;
    config.shutdown_deadline_ms = 5_000;
    config
}

impl Sidecar {
    pub async fn start(config: sidecar::Config) -> Self {
        let agent_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let http_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let agent = agent_listener.local_addr().unwrap();
        let http = http_listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(sidecar::run(
            config,
            agent_listener,
            http_listener,
            async move {
                let _ = rx.await;
            },
        ));
        Self {
            agent,
            http,
            shutdown: Some(tx),
            task,
        }
    }

    /// Resolves the shutdown future (like SIGTERM).
    pub fn terminate(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }

    /// One agent check, as HAProxy does it: connect, read the line until the sidecar closes.
    pub async fn agent_line(&self) -> String {
        agent_line(self.agent).await
    }

    /// Polls the agent port until its line equals `want`, or panics after `within`.
    pub async fn wait_for_line(&self, want: &str, within: Duration) -> Duration {
        let start = Instant::now();
        loop {
            let line = self.agent_line().await;
            if line == want {
                return start.elapsed();
            }
            assert!(
                start.elapsed() < within,
                "agent still says {line:?}, want {want:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub async fn get(&self, path: &str) -> (u16, String) {
        http_get(self.http, path).await
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub async fn agent_line(addr: SocketAddr) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(2), stream.read_to_string(&mut out))
        .await
        .expect("agent answers and closes")
        .unwrap();
    assert!(out.ends_with('\n'), "one line, newline-terminated: {out:?}");
    out.trim_end().to_string()
}

/// A minimal HTTP/1.0-style GET; returns status and body.
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut raw = String::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_string(&mut raw))
        .await
        .expect("http answer")
        .unwrap();
    let status = raw.split(' ').nth(1).unwrap().parse().unwrap();
    let body = raw
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}
