//! The systems under test, started on loopback and stopped by PID: a private Redis, N server
//! processes (chat-nodes, or Socket.IO peers from `bench/socketio/server.js`) and optionally
//! HAProxy processes in front of them with the same configuration shape for both systems
//! (sticky dynamic cookie, `balance leastconn`, `option redispatch`, HTTP health check).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};

use crate::adapter::System;
use crate::measure::{TICKS_PER_SECOND, parse_info_field, read_cpu_ticks, read_rss_kib};
use crate::node::{Node, command_with_max_nofile};
use crate::{Error, Result};

/// How to start a cluster.
#[derive(Debug, Clone)]
pub struct ClusterSpec {
    /// Which system.
    pub system: System,
    /// Server processes.
    pub nodes: usize,
    /// HAProxy processes in front (0 = clients connect to the nodes directly, round robin).
    pub proxies: usize,
    /// chat-node binary.
    pub node_bin: PathBuf,
    /// Directory of the Socket.IO peer (`server.js` and its `node_modules`).
    pub socketio_dir: PathBuf,
    /// Extra chat-node arguments.
    pub node_args: Vec<String>,
    /// chat-node capacity.
    pub capacity: usize,
}

enum Server {
    Chat(Node),
    SocketIo { pid: u32, child: Child },
}

/// A running system: Redis, servers, proxies.
pub struct Cluster {
    redis: testkit::RedisServer,
    /// Redis process id (CPU accounting).
    pub redis_pid: u32,
    servers: Vec<Server>,
    proxies: Vec<testkit::Haproxy>,
    /// Where clients connect (`ws://host:port`), used round robin.
    pub client_urls: Vec<String>,
}

impl Cluster {
    /// Starts Redis, the servers and the proxies, and waits until they answer.
    pub async fn start(spec: &ClusterSpec) -> Result<Self> {
        let redis = tokio::task::spawn_blocking(testkit::RedisServer::start)
            .await
            .map_err(|e| Error::Unexpected(format!("redis start task: {e}")))?
            .map_err(|e| Error::Unexpected(format!("cannot start redis-server: {e:#}")))?;
        let redis_pid = redis_pid(redis.port()).await?;
        let mut servers = Vec::new();
        let mut backends = Vec::new();
        for i in 0..spec.nodes {
            let name = format!("bench-{i}");
            let server = match spec.system {
                System::Chatcluster => {
                    let node = Node::start(
                        &spec.node_bin,
                        &name,
                        &redis.url(),
                        spec.capacity,
                        &spec.node_args,
                    )
                    .await?;
                    let ws = base_url(&node.ws_url);
                    let admin = crate::node::split_url(&node.stats_url).map(|(h, _)| h);
                    backends.push((
                        ws.trim_start_matches("ws://").to_string(),
                        admin.unwrap_or_default(),
                    ));
                    Server::Chat(node)
                }
                System::Socketio => {
                    let port = testkit::free_port();
                    let (pid, child) =
                        start_socketio(&spec.socketio_dir, &name, port, &redis.url())?;
                    let addr = format!("127.0.0.1:{port}");
                    backends.push((addr.clone(), addr));
                    Server::SocketIo { pid, child }
                }
            };
            servers.push(server);
        }
        let mut proxies = Vec::new();
        let mut client_urls = Vec::new();
        for _ in 0..spec.proxies {
            let port = testkit::free_port();
            let backends = backends.clone();
            let wait = std::net::SocketAddr::from(([127, 0, 0, 1], port));
            let proxy = tokio::task::spawn_blocking(move || {
                testkit::Haproxy::start(|sock| haproxy_cfg(port, &backends, sock), wait)
            })
            .await
            .map_err(|e| Error::Unexpected(format!("haproxy start task: {e}")))?
            .map_err(|e| Error::Unexpected(format!("cannot start haproxy: {e:#}")))?;
            proxies.push(proxy);
            client_urls.push(format!("ws://127.0.0.1:{port}"));
        }
        if spec.proxies == 0 {
            client_urls = backends
                .iter()
                .map(|(ws, _)| format!("ws://{ws}"))
                .collect();
        }
        let pids: Vec<u32> = servers
            .iter()
            .map(|s| match s {
                Server::Chat(node) => node.pid,
                Server::SocketIo { pid, .. } => *pid,
            })
            .collect();
        tracing::info!(
            system = spec.system.name(),
            ?pids,
            redis_pid,
            "servers started"
        );
        let cluster = Self {
            redis,
            redis_pid,
            servers,
            proxies,
            client_urls,
        };
        // Proxies need a passed health check (rise 2, inter 1s) before they route.
        if !cluster.proxies.is_empty() {
            tokio::time::sleep(Duration::from_millis(2500)).await;
        }
        Ok(cluster)
    }

    /// Server process ids.
    pub fn node_pids(&self) -> Vec<u32> {
        self.servers
            .iter()
            .map(|s| match s {
                Server::Chat(node) => node.pid,
                Server::SocketIo { pid, .. } => *pid,
            })
            .collect()
    }

    /// Pins every thread of every server to `cpus` (`taskset -a -p -c`).
    pub async fn pin_nodes(&self, cpus: &str) -> Result<()> {
        for pid in self.node_pids() {
            let status = Command::new("taskset")
                .args(["-a", "-p", "-c", cpus, &pid.to_string()])
                .stdout(Stdio::null())
                .status()
                .await
                .map_err(Error::io("run taskset"))?;
            if !status.success() {
                return Err(Error::Unexpected(format!("taskset failed for {pid}")));
            }
        }
        Ok(())
    }

    /// Summed RSS (KiB) of the servers.
    pub async fn nodes_rss_kib(&self) -> Result<u64> {
        let mut sum = 0;
        for pid in self.node_pids() {
            sum += read_rss_kib(pid).await?;
        }
        Ok(sum)
    }

    /// CPU time (clock ticks) used so far by the servers and by Redis.
    pub async fn cpu_ticks(&self) -> Result<(u64, u64)> {
        let mut nodes = 0;
        for pid in self.node_pids() {
            nodes += read_cpu_ticks(pid).await?;
        }
        Ok((nodes, read_cpu_ticks(self.redis_pid).await?))
    }

    /// Waits until the servers are quiet (under 5% of a core over 1 s, at most `limit`), so a
    /// step does not queue behind work left from the previous one (for example the presence
    /// events of clients that just joined a big room). Returns the seconds waited.
    pub async fn wait_quiet(&self, limit: Duration) -> Result<f64> {
        let started = tokio::time::Instant::now();
        let mut last = self.cpu_ticks().await?.0;
        while started.elapsed() < limit {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let now = self.cpu_ticks().await?.0;
            if ((now - last) as f64) <= TICKS_PER_SECOND * 0.05 {
                break;
            }
            last = now;
        }
        Ok(started.elapsed().as_secs_f64())
    }

    /// Stops proxies, servers (SIGTERM by PID, SIGKILL after 15 s) and Redis.
    pub async fn stop(mut self) {
        self.proxies.clear();
        for server in self.servers {
            match server {
                Server::Chat(node) => {
                    let _ = node.stop().await;
                }
                Server::SocketIo { pid, mut child } => {
                    let _ = Command::new("kill")
                        .args(["-TERM", &pid.to_string()])
                        .status()
                        .await;
                    if tokio::time::timeout(Duration::from_secs(15), child.wait())
                        .await
                        .is_err()
                    {
                        let _ = child.kill().await;
                    }
                }
            }
        }
        self.redis.stop();
    }
}

/// `ws://h:p/ws` -> `ws://h:p`.
fn base_url(ws_url: &str) -> String {
    match crate::node::split_url(ws_url) {
        Some((host, _)) => format!("ws://{host}"),
        None => ws_url.to_string(),
    }
}

fn start_socketio(dir: &Path, name: &str, port: u16, redis_url: &str) -> Result<(u32, Child)> {
    let script = dir.join("server.js");
    if !dir.join("node_modules").is_dir() {
        return Err(Error::Invalid(format!(
            "{} has no node_modules: run scripts/bench-setup.sh first",
            dir.display()
        )));
    }
    let mut cmd = command_with_max_nofile(Path::new("node"));
    cmd.arg(&script)
        .env("PORT", port.to_string())
        .env("HOST", "127.0.0.1")
        .env("REDIS_URL", redis_url)
        .env("NODE_NAME", name)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    let child = cmd.spawn().map_err(Error::io("start node server.js"))?;
    let pid = child
        .id()
        .ok_or_else(|| Error::Unexpected("node exited at once".into()))?;
    testkit::wait_for_port(
        std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_secs(20),
    )
    .map_err(|e| Error::Unexpected(format!("Socket.IO peer did not listen: {e:#}")))?;
    Ok((pid, child))
}

/// Redis's process id, from `INFO server` (testkit does not expose the child).
async fn redis_pid(port: u16) -> Result<u32> {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(Error::io("connect to redis"))?;
    stream
        .write_all(b"INFO server\r\n")
        .await
        .map_err(Error::io("send INFO"))?;
    let mut buf = vec![0; 8192];
    let mut text = String::new();
    let read = async {
        while !text.contains("process_id:") || !text.ends_with("\r\n") {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            text.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
        Ok::<_, std::io::Error>(())
    };
    tokio::time::timeout(Duration::from_secs(5), read)
        .await
        .map_err(|_| Error::Timeout("redis INFO".into()))?
        .map_err(Error::io("read INFO"))?;
    parse_info_field(&text, "process_id")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| Error::Unexpected("no process_id in redis INFO".into()))
}

/// The HAProxy configuration both systems run behind: the contract's shape (dynamic sticky
/// cookie, `leastconn`, redispatch, HTTP health check), without the sidecar's agent check,
/// which the benchmark does not start. `backends` are (traffic addr, health-check addr).
pub fn haproxy_cfg(port: u16, backends: &[(String, String)], stats_socket: &Path) -> String {
    let mut cfg = format!(
        "global\n  maxconn 9000\n  stats socket {} mode 600 level admin\n\n\
         defaults\n  mode http\n  option http-server-close\n  timeout connect 5s\n  timeout client 30s\n  \
         timeout client-fin 30s\n  timeout server 30s\n  timeout tunnel 1h\n  \
         default-server inter 1s rise 2 fall 1\n  option forwardfor\n\n\
         frontend chat\n  bind 127.0.0.1:{port}\n  maxconn 8900\n  default_backend nodes\n\n\
         backend nodes\n  balance leastconn\n  cookie CHATSRV insert indirect nocache dynamic\n  \
         dynamic-cookie-key \"bench-cookie-key\"\n  option redispatch\n  option httpchk GET /healthz\n",
        stats_socket.display()
    );
    for (i, (addr, check)) in backends.iter().enumerate() {
        let check_port = check.rsplit(':').next().unwrap_or("0");
        cfg.push_str(&format!(
            "  server n{i} {addr} check port {check_port} weight 100\n"
        ));
    }
    cfg
}
