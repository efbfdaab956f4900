//! Runs `chatcluster-operator local` as a real process for a test: writes the ChatCluster file,
//! starts local mode on free ports with a state file, waits until the state file says every part
//! is ready, and on drop stops it with SIGTERM (then SIGKILL and a sweep by run id, so a failing
//! test leaves nothing behind).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use chatcluster_operator::local::state::{LocalState, RUN_ENV};

/// A ChatCluster for local tests: `replicas` nodes, a short drain grace, anonymous users.
pub fn cluster_yaml(name: &str, replicas: u32, drain_grace_seconds: u32) -> String {
    format!(
        "apiVersion: chatcluster.io/v1alpha1\nkind: ChatCluster\nmetadata:\n  name: {name}\n  namespace: e2e\n\
         spec:\n  replicas: {replicas}\n  drainGraceSeconds: {drain_grace_seconds}\n  auth:\n    anonymous: true\n"
    )
}

/// Directory for what a test leaves for humans (logs, screenshots): `target/e2e/<test>`.
pub fn output_dir(test: &str) -> PathBuf {
    let dir = testkit::workspace_bin("chatcluster-operator")
        .ok()
        .and_then(|p| p.parent().and_then(Path::parent).map(Path::to_path_buf))
        .unwrap_or_else(std::env::temp_dir)
        .join("e2e")
        .join(test);
    std::fs::create_dir_all(&dir).expect("create test output dir");
    dir
}

/// A running local mode.
pub struct LocalCluster {
    child: Option<Child>,
    manifest: PathBuf,
    state_file: PathBuf,
    /// The state as it was when everything was first ready.
    pub state: LocalState,
    _dir: tempfile::TempDir,
    /// Where the operator's output goes (`<output_dir>/local.log`).
    pub log: PathBuf,
}

impl LocalCluster {
    /// Starts local mode with `yaml` and waits until it is ready.
    pub fn start(test: &str, yaml: &str) -> Result<Self> {
        Self::start_with(test, yaml, &[])
    }

    /// [`LocalCluster::start`] with extra `local` flags.
    pub fn start_with(test: &str, yaml: &str, flags: &[&str]) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let manifest = dir.path().join("chatcluster.yaml");
        std::fs::write(&manifest, yaml)?;
        let state_file = dir.path().join("state.json");
        let operator = testkit::workspace_bin("chatcluster-operator")?;
        let bin_dir = operator.parent().context("binary dir")?.to_path_buf();
        let log = output_dir(test).join("local.log");
        let out = std::fs::File::create(&log)?;
        let child = Command::new(&operator)
            .arg("local")
            .arg("-f")
            .arg(&manifest)
            .args(["--port", "0", "--ready-timeout-seconds", "60"])
            .arg("--state-file")
            .arg(&state_file)
            .arg("--bin-dir")
            .arg(&bin_dir)
            .arg("--run-dir")
            .arg(dir.path().join("run"))
            .args(flags)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .context("start chatcluster-operator local")?;
        let mut cluster = Self {
            child: Some(child),
            manifest: manifest.clone(),
            state_file: state_file.clone(),
            state: placeholder_state(),
            _dir: dir,
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            if let Ok(state) = LocalState::read(&state_file) {
                cluster.state = state;
                return Ok(cluster);
            }
            if let Some(status) = cluster
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok())
                .flatten()
            {
                bail!(
                    "local mode exited ({status}) before it was ready; see {}",
                    cluster.log.display()
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "local mode not ready after 90s; see {}",
                    cluster.log.display()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The state file as it is now (process ids change when children restart).
    pub fn current(&self) -> LocalState {
        LocalState::read(&self.state_file).unwrap_or_else(|_| self.state.clone())
    }

    /// The ChatCluster file local mode runs (edit it to scale).
    pub fn manifest(&self) -> &Path {
        &self.manifest
    }

    /// `ws://127.0.0.1:<port>/ws`
    pub fn endpoint(&self) -> &str {
        &self.state.endpoint
    }

    /// Every live process of this run: those carrying the run's environment marker, and those
    /// in the process group of a child the state file ever listed (redis-server rewrites its
    /// process title over its environment, so the marker alone does not find it).
    pub fn live_processes(&self) -> Vec<u32> {
        let mut live = testkit::processes_with_env(RUN_ENV, &self.state.run_id);
        let groups: Vec<u32> = self.state.children.iter().filter_map(|c| c.pid).collect();
        for pid in processes_in_groups(&groups) {
            if !live.contains(&pid) {
                live.push(pid);
            }
        }
        live.sort_unstable();
        live
    }

    /// Sends `signal` to local mode and waits (up to `within`) for it to exit; returns its status.
    pub fn stop_with(
        &mut self,
        signal: Signal,
        within: Duration,
    ) -> Result<std::process::ExitStatus> {
        let mut child = self.child.take().context("already stopped")?;
        send_signal(child.id(), signal);
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!("local mode did not exit within {within:?} after {signal:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Live (non-zombie) processes whose process group is one of `groups`.
pub fn processes_in_groups(groups: &[u32]) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            // After the `(comm)`: state, ppid, pgrp, ...
            let Some((_, rest)) = stat.rsplit_once(") ") else {
                return false;
            };
            let fields: Vec<&str> = rest.split(' ').collect();
            fields.first().is_some_and(|s| *s != "Z")
                && fields
                    .get(2)
                    .and_then(|g| g.parse::<u32>().ok())
                    .is_some_and(|g| groups.contains(&g))
        })
        .collect()
}

fn placeholder_state() -> LocalState {
    serde_json::from_value(serde_json::json!({
        "operator_pid": 0, "run_id": "", "run_dir": "", "endpoint": "", "demo_url": "",
        "ports": {"frontend": 0, "stats": 0, "redis": 0, "nodes": []},
        "haproxy_socket": "", "redis_url": "", "nodes": [], "children": []
    }))
    .expect("placeholder state")
}

/// Signals the tests send.
#[derive(Debug, Clone, Copy)]
pub enum Signal {
    /// Ctrl-C.
    Int,
    /// What Kubernetes and service managers send.
    Term,
    /// A crash.
    Kill,
}

/// Sends `signal` to process `pid` (a process this test started, directly or through local mode).
pub fn send_signal(pid: u32, signal: Signal) {
    let sig = match signal {
        Signal::Int => rustix::process::Signal::INT,
        Signal::Term => rustix::process::Signal::TERM,
        Signal::Kill => rustix::process::Signal::KILL,
    };
    if let Some(pid) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    {
        let _ = rustix::process::kill_process(pid, sig);
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        if self.child.is_some() {
            let _ = self.stop_with(Signal::Term, Duration::from_secs(20));
        }
        // Whatever survived (only after a bug): kill by the pids of this run.
        for pid in self.live_processes() {
            send_signal(pid, Signal::Kill);
        }
    }
}

impl LocalCluster {
    /// Runs one HAProxy runtime API command on local mode's HAProxy and returns the answer.
    pub fn haproxy_command(&self, cmd: &str) -> Result<String> {
        use std::io::{Read, Write};
        let mut stream = std::os::unix::net::UnixStream::connect(&self.state.haproxy_socket)
            .context("connect to haproxy's runtime API socket")?;
        stream.write_all(format!("{cmd}\n").as_bytes())?;
        let mut out = String::new();
        stream.read_to_string(&mut out)?;
        Ok(out)
    }

    /// `show stat` rows of the chat-node backend's servers: (server name, column -> value).
    pub fn backend_servers(&self) -> Result<Vec<std::collections::BTreeMap<String, String>>> {
        let rows = testkit::parse_show_stat(&self.haproxy_command("show stat")?);
        Ok(rows
            .into_iter()
            .filter(|r| {
                r.get("pxname").is_some_and(|p| p == "chat_nodes")
                    && r.get("svname").is_some_and(|s| s != "BACKEND")
            })
            .collect())
    }

    /// The sidecar's `/state` JSON for node `index`.
    pub async fn sidecar_state(&self, index: usize) -> Result<serde_json::Value> {
        let port = self.state.nodes[index].ports.http;
        http_get_json(port, "/state").await
    }

    /// The chat-node's `/stats` JSON for node `index`.
    pub async fn node_stats(&self, index: usize) -> Result<serde_json::Value> {
        let port = self.state.nodes[index].ports.admin;
        http_get_json(port, "/stats").await
    }
}

/// A tiny HTTP/1.1 GET on 127.0.0.1, enough for the JSON admin endpoints.
pub async fn http_get_json(port: u16, path: &str) -> Result<serde_json::Value> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await?;
    let text = String::from_utf8_lossy(&response);
    let (_, body) = text.split_once("\r\n\r\n").context("no HTTP body")?;
    serde_json::from_str(body.trim()).with_context(|| format!("not JSON: {body}"))
}
