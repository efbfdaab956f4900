//! A small real cluster on loopback for the HAProxy tests: a private Redis, chat-nodes running
//! in-process (each on its own Tokio runtime so "killing" one really closes every socket it has),
//! a sidecar per node, HAProxy configs in the operator's server-line shape, and a WebSocket
//! client that reports which node it landed on and which cookie it was given.
#![allow(dead_code)] // each test uses a different subset

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::support::Sidecar;

/// Cookie name used by every test config.
pub const COOKIE: &str = "CHATSRV";
/// Agent interval in the test configs (production uses 1s).
pub const AGENT_INTER_MS: u64 = 200;
/// Sidecar poll interval in these tests.
pub const POLL_MS: u64 = 100;

/// A chat-node on its own runtime.
pub struct ChatNode {
    pub name: String,
    pub ws: SocketAddr,
    pub admin: SocketAddr,
    runtime: Option<tokio::runtime::Runtime>,
}

impl ChatNode {
    pub fn start(name: &str, redis_url: &str, capacity: u64) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let ws_std = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let admin_std = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let ws = ws_std.local_addr().unwrap();
        let admin = admin_std.local_addr().unwrap();
        ws_std.set_nonblocking(true).unwrap();
        admin_std.set_nonblocking(true).unwrap();
        let mut config = chat_node::Config::for_redis(redis_url);
        config.node_name = name.into();
        config.capacity = capacity;
        // Long enough that the open connections a drain test watches are not closed yet.
        config.drain_grace_seconds = 60.0;
        {
            let _guard = runtime.enter();
            let ws_listener = tokio::net::TcpListener::from_std(ws_std).unwrap();
            let admin_listener = tokio::net::TcpListener::from_std(admin_std).unwrap();
            runtime.spawn(async move {
                if let Err(err) =
                    chat_node::run(config, ws_listener, admin_listener, std::future::pending())
                        .await
                {
                    eprintln!("chat-node stopped: {err}");
                }
            });
        }
        Self {
            name: name.into(),
            ws,
            admin,
            runtime: Some(runtime),
        }
    }

    pub fn stats_url(&self) -> String {
        format!("http://{}/stats", self.admin)
    }

    /// Kills the node: its runtime is dropped, so every listener and connection closes at once.
    pub fn kill(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }

    /// Starts the drain through the admin port, as Kubernetes' preStop hook does.
    pub async fn drain(&self) {
        let (status, _) = crate::support::http_get(self.admin, "/drain").await;
        assert_eq!(status, 202, "drain accepted");
    }
}

impl Drop for ChatNode {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A node with its sidecar.
pub struct Pod {
    pub node: ChatNode,
    pub sidecar: Sidecar,
}

impl Pod {
    pub async fn start(name: &str, redis_url: &str, capacity: u64) -> Self {
        Self::start_with(name, redis_url, capacity, |_| {}).await
    }

    /// Like `start`, with a chance to adjust the sidecar's configuration.
    pub async fn start_with(
        name: &str,
        redis_url: &str,
        capacity: u64,
        adjust: impl FnOnce(&mut sidecar::Config),
    ) -> Self {
        let node = ChatNode::start(name, redis_url, capacity);
        let mut config = crate::support::fast_config(&node.stats_url());
        config.poll_interval_ms = POLL_MS;
        config.poll_timeout_ms = POLL_MS;
        config.stale_after_ms = 1000;
        adjust(&mut config);
        let sidecar = Sidecar::start(config).await;
        Self { node, sidecar }
    }
}

/// The haproxy.cfg the tests run: the operator's backend and server-line shape with static
/// servers (`check port <admin>`, `agent-check agent-port <agent>`, `weight 100`, no
/// `on-marked-down shutdown-sessions`), a short `agent-inter`, and the runtime API socket.
/// `with_agent: false` drops the `agent-check` part: plain `leastconn`, for control runs.
pub fn haproxy_cfg(socket: &Path, bind_port: u16, pods: &[&Pod], with_agent: bool) -> String {
    let mut cfg = format!(
        "global
    stats socket {socket} mode 600 level admin
    setenv CHATCLUSTER_COOKIE_KEY sidecar-test-cookie-key

defaults
    mode http
    option http-server-close
    option forwardfor
    timeout connect 5s
    timeout client 30s
    timeout client-fin 30s
    timeout server 30s
    timeout tunnel 1h
    default-server inter 1s rise 2 fall 1

frontend chat
    bind 127.0.0.1:{bind_port}
    default_backend chat

backend chat
    balance leastconn
    cookie {COOKIE} insert indirect nocache dynamic
    dynamic-cookie-key \"${{CHATCLUSTER_COOKIE_KEY}}\"
    option redispatch
    option httpchk GET /healthz
",
        socket = socket.display()
    );
    for pod in pods {
        let agent = if with_agent {
            format!(
                " agent-check agent-port {} agent-inter {AGENT_INTER_MS}ms",
                pod.sidecar.agent.port()
            )
        } else {
            String::new()
        };
        cfg.push_str(&format!(
            "    server {name} {ws} check port {admin}{agent} weight 100\n",
            name = pod.node.name,
            ws = pod.node.ws,
            admin = pod.node.admin.port(),
        ));
    }
    cfg
}

/// A HAProxy in front of `pods`, listening on a free port.
pub struct Proxy {
    pub haproxy: testkit::Haproxy,
    pub addr: SocketAddr,
}

impl Proxy {
    pub fn start(pods: &[&Pod]) -> Self {
        Self::start_cfg(pods, true)
    }

    /// A HAProxy without agent checks (plain `leastconn`), as a control.
    pub fn start_without_agent(pods: &[&Pod]) -> Self {
        Self::start_cfg(pods, false)
    }

    fn start_cfg(pods: &[&Pod], with_agent: bool) -> Self {
        let port = testkit::free_port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let render = |socket: &Path| haproxy_cfg(socket, port, pods, with_agent);
        let haproxy = testkit::Haproxy::start(render, addr).unwrap();
        Self { haproxy, addr }
    }

    /// `(srv_op_state, srv_uweight)` per server name from `show servers state`
    /// (op state 2 = running, 0 = stopped).
    pub fn servers(&self) -> Vec<(String, String, String)> {
        self.haproxy
            .show_servers_state()
            .unwrap()
            .into_iter()
            .filter(|row| row.get("be_name").map(String::as_str) == Some("chat"))
            .map(|row| {
                (
                    row["srv_name"].clone(),
                    row["srv_op_state"].clone(),
                    row["srv_uweight"].clone(),
                )
            })
            .collect()
    }

    /// The `show stat` row of one server of the `chat` backend.
    pub fn stat(&self, server: &str) -> std::collections::BTreeMap<String, String> {
        self.haproxy
            .show_stat()
            .unwrap()
            .into_iter()
            .find(|row| row["pxname"] == "chat" && row["svname"] == server)
            .unwrap_or_else(|| panic!("no show stat row for {server}"))
    }

    /// Waits until `show servers state` reports `server` with `op_state` and `weight`
    /// (weight `None` = any), or panics with the last table.
    pub async fn wait_for(
        &self,
        server: &str,
        op_state: &str,
        weight: Option<&str>,
        within: Duration,
    ) {
        let start = Instant::now();
        loop {
            let servers = self.servers();
            let hit = servers.iter().any(|(name, op, w)| {
                name == server && op == op_state && weight.is_none_or(|want| w == want)
            });
            if hit {
                return;
            }
            assert!(
                start.elapsed() < within,
                "{server} never reached op_state={op_state} weight={weight:?}: {servers:?}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

/// An open WebSocket through a proxy (or directly to a node).
pub struct Client {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// The node named in the `welcome` frame.
    pub node: String,
    /// The value of the `Set-Cookie: CHATSRV=...` HAProxy sent, if any.
    pub set_cookie: Option<String>,
}

/// Opens `/ws` on `addr`, presenting `cookie` (the value of `CHATSRV`) when given, and reads the
/// `welcome` frame.
pub async fn connect(addr: SocketAddr, cookie: Option<&str>) -> anyhow::Result<Client> {
    let mut request = format!("ws://{addr}/ws").into_client_request()?;
    if let Some(value) = cookie {
        request
            .headers_mut()
            .insert("cookie", format!("{COOKIE}={value}").parse()?);
    }
    let (mut ws, response) = tokio::time::timeout(
        Duration::from_secs(5),
        tokio_tungstenite::connect_async(request),
    )
    .await??;
    let set_cookie = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.strip_prefix(&format!("{COOKIE}=")))
        .map(|v| v.split(';').next().unwrap_or_default().to_string());
    let welcome = next_text(&mut ws).await?;
    let frame: serde_json::Value = serde_json::from_str(&welcome)?;
    anyhow::ensure!(
        frame["type"] == "welcome",
        "first frame is not welcome: {welcome}"
    );
    let node = frame["node"].as_str().unwrap_or_default().to_string();
    Ok(Client {
        ws,
        node,
        set_cookie,
    })
}

async fn next_text(ws: &mut WebSocketStream<MaybeTlsStream<TcpStream>>) -> anyhow::Result<String> {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await?
            .ok_or_else(|| anyhow::anyhow!("websocket closed"))??;
        match msg {
            Message::Text(text) => return Ok(text.to_string()),
            Message::Close(frame) => anyhow::bail!("websocket closed: {frame:?}"),
            _ => continue,
        }
    }
}

impl Client {
    /// Application ping: send `{"type":"ping"}`, wait for `{"type":"pong"}`.
    pub async fn ping(&mut self) -> anyhow::Result<()> {
        self.ws.send(Message::text(r#"{"type":"ping"}"#)).await?;
        // Presence events and the like may come first.
        loop {
            if next_text(&mut self.ws).await?.contains(r#""type":"pong""#) {
                return Ok(());
            }
        }
    }

    /// Joins `room` and waits for the `joined` frame.
    pub async fn join(&mut self, room: &str) -> anyhow::Result<()> {
        self.ws
            .send(Message::text(format!(
                r#"{{"type":"join","room":"{room}"}}"#
            )))
            .await?;
        loop {
            let frame = next_text(&mut self.ws).await?;
            if frame.contains(r#""joined""#) {
                return Ok(());
            }
        }
    }

    /// Sends a room message.
    pub async fn say(&mut self, room: &str, text: &str) -> anyhow::Result<()> {
        let frame = serde_json::json!({"type": "send", "room": room, "text": text});
        self.ws.send(Message::text(frame.to_string())).await?;
        Ok(())
    }

    /// Waits for a room message with `text`, skipping other frames.
    pub async fn expect_message(&mut self, text: &str) -> anyhow::Result<()> {
        loop {
            let frame = next_text(&mut self.ws).await?;
            if frame.contains(r#""type":"message""#) && frame.contains(text) {
                return Ok(());
            }
        }
    }
}

/// Waits until a sidecar's agent line equals `want`.
pub async fn wait_line(pod: &Pod, want: &str) {
    pod.sidecar
        .wait_for_line(want, Duration::from_secs(5))
        .await;
}
