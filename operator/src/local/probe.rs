//! Readiness probes for local children, the local stand-in for Kubernetes readiness probes:
//! a TCP connect, an HTTP `GET` that must answer 200, or a Redis `PING` that must answer `+PONG`.
//!
//! The probes speak just enough of each protocol by hand so that local mode needs no HTTP or
//! Redis client library, and each attempt is bounded by a short timeout.

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long one probe attempt may take before it counts as "not ready".
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(1);

/// What "ready" means for one child.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Probe {
    /// Something accepts TCP connections on the address.
    Tcp(SocketAddr),
    /// `GET <path>` on the address answers with status 200.
    Http {
        /// Address of the HTTP server.
        addr: SocketAddr,
        /// Request path, for example `/readyz`.
        path: String,
    },
    /// A Redis server on the address answers `PING` with `+PONG`.
    RedisPing(SocketAddr),
    /// Ready as soon as the process runs (for children without a port).
    Started,
}

impl Probe {
    /// Runs one attempt; `true` when the child is ready.
    pub async fn check(&self) -> bool {
        tokio::time::timeout(ATTEMPT_TIMEOUT, self.attempt())
            .await
            .unwrap_or(false)
    }

    async fn attempt(&self) -> bool {
        match self {
            Probe::Started => true,
            Probe::Tcp(addr) => TcpStream::connect(addr).await.is_ok(),
            Probe::Http { addr, path } => {
                let request =
                    format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
                matches!(exchange(*addr, request.as_bytes()).await, Some(reply) if is_http_ok(&reply))
            }
            Probe::RedisPing(addr) => {
                matches!(exchange(*addr, b"PING\r\n").await, Some(reply) if reply.starts_with(b"+PONG"))
            }
        }
    }
}

/// True when an HTTP response starts with a 200 status line.
fn is_http_ok(reply: &[u8]) -> bool {
    let line = reply.split(|b| *b == b'\n').next().unwrap_or_default();
    let mut words = line.split(|b| *b == b' ');
    matches!(
        (words.next(), words.next()),
        (Some(version), Some(b"200")) if version.starts_with(b"HTTP/1.")
    )
}

/// Connects, writes `request`, and returns the first bytes of the answer.
async fn exchange(addr: SocketAddr, request: &[u8]) -> Option<Vec<u8>> {
    let mut stream = TcpStream::connect(addr).await.ok()?;
    stream.write_all(request).await.ok()?;
    let mut buf = vec![0u8; 256];
    let n = stream.read(&mut buf).await.ok()?;
    buf.truncate(n);
    Some(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    #[test]
    fn http_status_line_must_say_200() {
        assert!(is_http_ok(b"HTTP/1.1 200 OK\r\n\r\n"));
        assert!(is_http_ok(b"HTTP/1.0 200 OK\r\n"));
        assert!(!is_http_ok(b"HTTP/1.1 503 Service Unavailable\r\n"));
        assert!(!is_http_ok(b"+PONG\r\n"));
        assert!(!is_http_ok(b""));
    }

    async fn one_shot_server(reply: &'static [u8]) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let mut buf = [0u8; 256];
                let _ = stream.read(&mut buf).await;
                let _ = stream.write_all(reply).await;
            }
        });
        addr
    }

    #[tokio::test]
    async fn probes_tell_ready_from_not_ready() {
        let ok = one_shot_server(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").await;
        let busy = one_shot_server(b"HTTP/1.1 503 Service Unavailable\r\n\r\n").await;
        let pong = one_shot_server(b"+PONG\r\n").await;
        let http = |addr| Probe::Http {
            addr,
            path: "/readyz".into(),
        };
        assert!(http(ok).check().await);
        assert!(!http(busy).check().await);
        assert!(Probe::RedisPing(pong).check().await);
        assert!(!Probe::RedisPing(ok).check().await);
        assert!(Probe::Tcp(ok).check().await);
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        assert!(!Probe::Tcp(closed).check().await);
        assert!(!http(closed).check().await);
    }
}
