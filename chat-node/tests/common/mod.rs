//! Shared pieces of the chat-node integration tests: in-process nodes on 127.0.0.1:0 sharing a
//! private redis-server, real tokio-tungstenite clients, and a tiny HTTP GET for the admin port.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub use chat_node::Config;
pub use testkit::RedisServer;

/// How long a test waits for any one expected frame.
pub const WAIT: Duration = Duration::from_secs(10);

/// A config for tests: fast pings, generous rate limit, short drain.
pub fn config(redis: &RedisServer, node: &str) -> Config {
    let mut c = Config::for_redis(redis.url());
    c.node_name = node.to_owned();
    c.cluster_namespace = "test".into();
    c.cluster_name = "chat".into();
    c.rate_per_second = 100_000.0;
    c.rate_burst = 100_000;
    c.drain_grace_seconds = 1.0;
    c
}

/// One chat node running in this process.
pub struct TestNode {
    pub ws: SocketAddr,
    pub admin: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    pub handle: JoinHandle<Result<(), chat_node::Error>>,
}

impl TestNode {
    /// Starts a node and waits until its subscriber reached Redis.
    pub async fn start(config: Config) -> Result<Self> {
        let node = Self::start_unready(config).await?;
        node.wait_ready(true).await?;
        Ok(node)
    }

    /// Starts a node without waiting for readiness.
    pub async fn start_unready(config: Config) -> Result<Self> {
        let ws_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let admin_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let (ws, admin) = (ws_listener.local_addr()?, admin_listener.local_addr()?);
        let (tx, rx) = oneshot::channel::<()>();
        let shutdown = async move {
            let _ = rx.await;
        };
        let handle = tokio::spawn(chat_node::run(
            config,
            ws_listener,
            admin_listener,
            shutdown,
        ));
        Ok(Self {
            ws,
            admin,
            shutdown: Some(tx),
            handle,
        })
    }

    /// Waits until `/readyz` answers 200 (`true`) or 503 (`false`).
    pub async fn wait_ready(&self, ready: bool) -> Result<()> {
        let want = if ready { 200 } else { 503 };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok((status, _)) = self.get("/readyz").await
                && status == want
            {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                bail!("/readyz never answered {want}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The WebSocket URL with a query string.
    pub fn url(&self, query: &str) -> String {
        format!("ws://{}/ws?{query}", self.ws)
    }

    /// GET on the admin port: (status, body).
    pub async fn get(&self, path: &str) -> Result<(u16, String)> {
        http(self.admin, "GET", path).await
    }

    /// The `/stats` JSON.
    pub async fn stats(&self) -> Result<Value> {
        let (_, body) = self.get("/stats").await?;
        Ok(serde_json::from_str(&body)?)
    }

    /// Triggers the shutdown future and waits for `run` to return.
    pub async fn stop(mut self) -> Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        tokio::time::timeout(Duration::from_secs(15), &mut self.handle)
            .await
            .context("run did not return")???;
        Ok(())
    }
}

/// A minimal HTTP/1.0 request: (status, body).
pub async fn http(addr: SocketAddr, method: &str, path: &str) -> Result<(u16, String)> {
    let mut s = TcpStream::connect(addr).await?;
    s.write_all(
        format!("{method} {path} HTTP/1.0\r\nHost: x\r\nContent-Length: 0\r\n\r\n").as_bytes(),
    )
    .await?;
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await??;
    let text = String::from_utf8_lossy(&buf);
    let status = text
        .split_whitespace()
        .nth(1)
        .context("no status")?
        .parse()?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A test WebSocket client.
pub struct Client {
    pub tx: SplitSink<Ws, Message>,
    pub rx: SplitStream<Ws>,
    pub welcome: Value,
}

/// Connects and reads the welcome.
pub async fn connect(url: &str) -> Result<Client> {
    let (ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .with_context(|| format!("connect {url}"))?;
    let (tx, rx) = ws.split();
    let mut client = Client {
        tx,
        rx,
        welcome: Value::Null,
    };
    client.welcome = client.recv().await?;
    if client.welcome["type"] != "welcome" {
        bail!("first frame is not a welcome: {}", client.welcome);
    }
    Ok(client)
}

/// Two nodes, `node-a` and `node-b`, sharing `redis`.
pub async fn two_nodes(redis: &RedisServer) -> Result<(TestNode, TestNode)> {
    Ok((
        TestNode::start(config(redis, "node-a")).await?,
        TestNode::start(config(redis, "node-b")).await?,
    ))
}

/// A client named `name` on `node`, joined to `room`.
pub async fn member(node: &TestNode, name: &str, room: &str) -> Result<Client> {
    let mut client = connect(&node.url(&format!("name={name}"))).await?;
    client.join(room, None).await?;
    Ok(client)
}

/// The HTTP status of a refused upgrade.
pub async fn refused_status(url: &str) -> Result<u16> {
    match tokio_tungstenite::connect_async(url).await {
        Ok(_) => bail!("upgrade to {url} was accepted"),
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => Ok(resp.status().as_u16()),
        Err(e) => bail!("unexpected error: {e}"),
    }
}

impl Client {
    /// Sends a JSON frame.
    pub async fn send(&mut self, frame: Value) -> Result<()> {
        self.tx
            .send(Message::Text(frame.to_string().into()))
            .await?;
        Ok(())
    }

    /// Sends a raw text frame.
    pub async fn send_raw(&mut self, text: &str) -> Result<()> {
        self.tx.send(Message::Text(text.to_owned().into())).await?;
        Ok(())
    }

    /// Next data frame (text as JSON; binary as `{"binary": [bytes]}`), skipping pings.
    pub async fn recv(&mut self) -> Result<Value> {
        loop {
            let msg = tokio::time::timeout(WAIT, self.rx.next())
                .await
                .context("timed out waiting for a frame")?;
            match msg.context("connection ended")?? {
                Message::Text(t) => return Ok(serde_json::from_str(&t)?),
                Message::Binary(b) => return Ok(json!({"binary": b.to_vec()})),
                Message::Close(c) => bail!("closed: {c:?}"),
                _ => {}
            }
        }
    }

    /// Next frame that is not a member_joined/member_left event.
    pub async fn recv_skip_presence(&mut self) -> Result<Value> {
        loop {
            let v = self.recv().await?;
            if v["type"] != "member_joined" && v["type"] != "member_left" {
                return Ok(v);
            }
        }
    }

    /// Next frame of `kind`, skipping others.
    pub async fn recv_type(&mut self, kind: &str) -> Result<Value> {
        loop {
            let v = self.recv().await?;
            if v["type"] == kind {
                return Ok(v);
            }
        }
    }

    /// Joins a room (optionally resuming) and returns the `joined` frame.
    pub async fn join(&mut self, room: &str, since: Option<&str>) -> Result<Value> {
        let mut frame = json!({"type": "join", "room": room});
        if let Some(since) = since {
            frame["since"] = json!(since);
        }
        self.send(frame).await?;
        let v = self.recv_skip_presence().await?;
        if v["type"] != "joined" {
            bail!("expected joined, got {v}");
        }
        Ok(v)
    }

    /// Sends a room message and waits for its ack; returns the offset.
    pub async fn say(&mut self, room: &str, id: &str, text: &str) -> Result<String> {
        self.send(json!({"type": "send", "room": room, "id": id, "text": text}))
            .await?;
        loop {
            let v = self.recv().await?;
            if v["type"] == "ack" && v["id"] == id {
                return Ok(v["offset"]
                    .as_str()
                    .context("ack without offset")?
                    .to_owned());
            }
            if v["type"] == "error" {
                bail!("send failed: {v}");
            }
        }
    }

    /// Waits for the close frame and returns its code (None: closed without a frame).
    pub async fn closed_with(&mut self) -> Result<Option<u16>> {
        loop {
            let msg = tokio::time::timeout(WAIT, self.rx.next())
                .await
                .context("timed out waiting for close")?;
            match msg {
                Some(Ok(Message::Close(frame))) => return Ok(frame.map(|f| u16::from(f.code))),
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return Ok(None),
            }
        }
    }
}
