//! The chat-node under test: either a process this benchmark starts on loopback (and stops by
//! PID), or a running node it attaches to by URL and PID. Also the process plumbing shared with
//! the workers: children start with their open-files limit raised to the hard limit.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use chatcluster_common::NodeStats;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};

use crate::measure::parse_http_response;
use crate::{Error, Result};

/// A command for `program` that first raises the soft open-files limit to the hard one (the
/// machine caps it at 20,000; a node with 10,000 clients needs more than the usual 1,024). Done
/// through `sh -c 'ulimit …; exec'` so no unsafe code runs between fork and exec; `exec` keeps
/// the PID, so the child's PID is the program's.
pub fn command_with_max_nofile(program: &Path) -> Command {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(r#"ulimit -n "$(ulimit -Hn)" 2>/dev/null; exec "$0" "$@""#)
        .arg(program)
        .kill_on_drop(true);
    cmd
}

/// Splits `http://host:port/path` (or `ws://…`) into `("host:port", "/path")`. TLS schemes are
/// refused: the benchmark only runs on loopback.
pub fn split_url(url: &str) -> Option<(String, String)> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("ws://"))?;
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    (!host.is_empty()).then(|| (host.to_string(), path.to_string()))
}

/// A chat-node to measure.
pub struct Node {
    /// WebSocket endpoint, for example `ws://127.0.0.1:8080/ws`.
    pub ws_url: String,
    /// `/stats` on the admin port.
    pub stats_url: String,
    /// Process whose RSS is measured.
    pub pid: u32,
    child: Option<Child>,
    log: Option<(tempfile::TempDir, PathBuf)>,
}

impl Node {
    /// Starts `bin` (node name `name`) on two free loopback ports with room for `capacity` connections and waits
    /// until its `/stats` answers. `extra_args` go to the node unchanged (for example buffer
    /// settings under study).
    pub async fn start(
        bin: &Path,
        name: &str,
        redis_url: &str,
        capacity: usize,
        extra_args: &[String],
    ) -> Result<Self> {
        let (ws_port, admin_port) = (testkit::free_port(), testkit::free_port());
        let dir = tempfile::tempdir().map_err(Error::io("create a temporary directory"))?;
        let log_path = dir.path().join("chat-node.log");
        let log = std::fs::File::create(&log_path).map_err(Error::io("create the node log"))?;
        let log_err = log
            .try_clone()
            .map_err(Error::io("duplicate the node log handle"))?;
        let mut cmd = command_with_max_nofile(bin);
        cmd.args(["--listen", &format!("127.0.0.1:{ws_port}")])
            .args(["--admin-listen", &format!("127.0.0.1:{admin_port}")])
            .args(["--redis-url", redis_url])
            .args(["--node-name", name])
            .args(["--capacity", &capacity.to_string()])
            .args(["--drain-grace-seconds", "1"])
            .args(extra_args)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err);
        let child = cmd.spawn().map_err(Error::io(format!(
            "start {} (build it: cargo build --release -p chat-node)",
            bin.display()
        )))?;
        let pid = child
            .id()
            .ok_or_else(|| Error::Unexpected("chat-node exited at once".into()))?;
        let node = Self {
            ws_url: format!("ws://127.0.0.1:{ws_port}/ws"),
            stats_url: format!("http://127.0.0.1:{admin_port}/stats"),
            pid,
            child: Some(child),
            log: Some((dir, log_path)),
        };
        if let Err(err) = node.wait_until(Duration::from_secs(30), |_| true).await {
            return Err(Error::Unexpected(format!(
                "{err}; node log:\n{}",
                node.log_tail()
            )));
        }
        Ok(node)
    }

    /// A node somebody else started: only measured, never stopped.
    pub fn attach(ws_url: String, stats_url: String, pid: u32) -> Self {
        Self {
            ws_url,
            stats_url,
            pid,
            child: None,
            log: None,
        }
    }

    /// The node's `/stats`, fetched with a plain HTTP/1.0 request (bounded to 2 s).
    pub async fn stats(&self) -> Result<NodeStats> {
        let (host, path) = split_url(&self.stats_url).ok_or_else(|| {
            Error::Invalid(format!(
                "stats URL {} is not http://host:port/path",
                self.stats_url
            ))
        })?;
        let fetch = async {
            let mut stream = tokio::net::TcpStream::connect(&host)
                .await
                .map_err(Error::io(format!("connect to {host}")))?;
            let request = format!("GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n");
            stream
                .write_all(request.as_bytes())
                .await
                .map_err(Error::io("send /stats request"))?;
            let mut raw = Vec::new();
            stream
                .read_to_end(&mut raw)
                .await
                .map_err(Error::io("read /stats"))?;
            Ok::<_, Error>(raw)
        };
        let raw = tokio::time::timeout(Duration::from_secs(2), fetch)
            .await
            .map_err(|_| {
                Error::Timeout(format!("{} did not answer within 2 s", self.stats_url))
            })??;
        match parse_http_response(&raw) {
            Some((200, body)) => serde_json::from_slice(body).map_err(|e| {
                Error::Unexpected(format!("{} is not NodeStats JSON: {e}", self.stats_url))
            }),
            Some((code, _)) => Err(Error::Unexpected(format!(
                "{} answered HTTP {code}",
                self.stats_url
            ))),
            None => Err(Error::Unexpected(format!(
                "{} sent no HTTP response",
                self.stats_url
            ))),
        }
    }

    /// Polls `/stats` until `done` holds, or fails after `timeout` with the last answer.
    pub async fn wait_until(
        &self,
        timeout: Duration,
        done: impl Fn(&NodeStats) -> bool,
    ) -> Result<NodeStats> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let last = self.stats().await;
            if let Ok(stats) = &last
                && done(stats)
            {
                return Ok(stats.clone());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::Timeout(format!(
                    "waiting for the node's /stats; last answer: {last:?}"
                )));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The last lines of the node's log, when this benchmark started it.
    pub fn log_tail(&self) -> String {
        let Some((_, path)) = &self.log else {
            return String::new();
        };
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Stops a node this benchmark started: SIGTERM (the node drains), SIGKILL after 15 s.
    pub async fn stop(mut self) -> Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status()
            .await;
        if tokio::time::timeout(Duration::from_secs(15), child.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                pid = self.pid,
                "chat-node ignored SIGTERM for 15 s; killing it"
            );
            child.kill().await.map_err(Error::io("kill chat-node"))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_urls_split_into_host_and_path() {
        assert_eq!(
            split_url("http://127.0.0.1:8081/stats"),
            Some(("127.0.0.1:8081".into(), "/stats".into()))
        );
        assert_eq!(split_url("http://h:1"), Some(("h:1".into(), "/".into())));
        assert_eq!(
            split_url("ws://127.0.0.1:9/ws"),
            Some(("127.0.0.1:9".into(), "/ws".into()))
        );
        assert_eq!(split_url("https://h/stats"), None);
        assert_eq!(split_url("http:///x"), None);
    }
}
