//! Polls the chat-node's `/stats` on a fixed interval with a short timeout and stores each result
//! in the shared state. The poller is the only code that talks to the chat-node, so a slow node
//! delays nothing but the next poll.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chatcluster_common::NodeStats;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};
use crate::state::Shared;

/// An HTTP/1 client bound to one `/stats` URL.
#[derive(Debug, Clone)]
pub struct StatsClient {
    client: Client<HttpConnector, Empty<Bytes>>,
    uri: http::Uri,
}

impl StatsClient {
    /// Checks `url` (it must be `http://host:port/path`) and builds a client for it.
    pub fn new(url: &str) -> Result<Self> {
        let invalid = |reason: &str| Error::InvalidStatsUrl {
            url: url.into(),
            reason: reason.into(),
        };
        let uri: http::Uri = url
            .parse()
            .map_err(|e: http::uri::InvalidUri| invalid(&e.to_string()))?;
        if uri.scheme_str() != Some("http") {
            return Err(invalid(
                "only http:// is supported (the chat-node is on localhost)",
            ));
        }
        if uri.authority().is_none() {
            return Err(invalid("it has no host"));
        }
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        // A fresh connection per poll (a few per second on loopback): a pooled keep-alive
        // connection that the node closes while idle can race with the next request and fail
        // it, which would flap the reply to `down #unreachable` for one poll.
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(0)
            .build(connector);
        Ok(Self { client, uri })
    }

    /// One request: `GET <url>`, expecting 200 and a `NodeStats` body. No timeout here; the
    /// caller bounds it.
    pub async fn fetch(&self) -> Result<NodeStats> {
        let request = http::Request::get(self.uri.clone())
            .header(http::header::ACCEPT, "application/json")
            .body(Empty::new())
            .expect("a GET with a valid URI is a valid request");
        let response = self
            .client
            .request(request)
            .await
            .map_err(Error::StatsUnreachable)?;
        let status = response.status();
        if status != http::StatusCode::OK {
            return Err(Error::StatsStatus(status));
        }
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(Error::StatsBody)?
            .to_bytes();
        serde_json::from_slice(&body).map_err(Error::StatsDecode)
    }

    /// `fetch` bounded by `timeout`.
    pub async fn fetch_within(&self, timeout: Duration) -> Result<NodeStats> {
        match tokio::time::timeout(timeout, self.fetch()).await {
            Ok(result) => result,
            Err(_) => Err(Error::StatsTimeout(timeout)),
        }
    }
}

/// Polls until `stop` is cancelled: one request per `interval` (a slow request delays the next
/// tick instead of piling up), each bounded by `timeout`.
pub async fn run(
    client: StatsClient,
    shared: Arc<Shared>,
    interval: Duration,
    timeout: Duration,
    stop: CancellationToken,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = ticker.tick() => {}
        }
        let result = tokio::select! {
            () = stop.cancelled() => break,
            result = client.fetch_within(timeout) => result,
        };
        match result {
            Ok(stats) => shared.record_success(stats),
            Err(err) => {
                tracing::debug!(%err, reason = err.metric_label(), "poll of /stats failed");
                shared.record_failure(err.metric_label(), err.to_string());
            }
        }
    }
    tracing::debug!("poller stopped");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_urls_it_cannot_poll() {
        for url in [
            "https://127.0.0.1/stats",
            "/stats",
            "not a url",
            "http:///stats",
        ] {
            let err = StatsClient::new(url).unwrap_err();
            assert!(matches!(err, Error::InvalidStatsUrl { .. }), "{url}: {err}");
            assert!(
                err.to_string().contains("http://127.0.0.1:8081/stats"),
                "says what to do"
            );
        }
        assert!(StatsClient::new("http://127.0.0.1:8081/stats").is_ok());
    }

    #[tokio::test]
    async fn refused_connection_is_an_unreachable_error() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let client = StatsClient::new(&format!("http://127.0.0.1:{port}/stats")).unwrap();
        let err = client
            .fetch_within(Duration::from_secs(2))
            .await
            .unwrap_err();
        assert_eq!(err.metric_label(), "connect", "{err}");
    }
}
