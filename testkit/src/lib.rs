//! Test harness pieces shared by the crates' integration tests: a private `redis-server`, a
//! private `haproxy`, free loopback ports and the paths of the workspace's built binaries.
//!
//! Every process started here binds 127.0.0.1, lives in its own temporary directory, and is
//! stopped by PID when its handle is dropped, so a failing test leaves nothing behind.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// A loopback port that was free a moment ago (bind to port 0, read it, release it).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0")
}

/// Waits until something accepts TCP connections on `addr`, or fails after `timeout`.
pub fn wait_for_port(addr: SocketAddr, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("nothing listens on {addr} after {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sends SIGKILL to a child and reaps it. Used for crash tests and for cleanup.
fn kill_child(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// A private `redis-server` on a free loopback port, with its data in a temporary directory.
///
/// `stop` and `start_again` let a test take Redis away and bring it back on the same port.
pub struct RedisServer {
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts `redis-server` (it must be on PATH; the test script installs it).
    pub fn start() -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let mut server = Self {
            port: free_port(),
            dir,
            child: None,
        };
        server.start_again()?;
        Ok(server)
    }

    /// `redis://127.0.0.1:<port>/`
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// The TCP port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Kills the server (SIGKILL, like a crash). Data in memory is lost; persistence is off.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill_child(&mut child);
        }
    }

    /// Starts the server again on the same port (after `stop`).
    pub fn start_again(&mut self) -> Result<()> {
        if self.child.is_some() {
            return Ok(());
        }
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port"])
            .arg(self.port.to_string())
            .args([
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "yes",
            ])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context(
                "cannot start redis-server; is it installed (apt-get install redis-server)?",
            )?;
        self.child = Some(child);
        wait_for_port(
            SocketAddr::from(([127, 0, 0, 1], self.port)),
            Duration::from_secs(10),
        )
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Runs `haproxy -c -f <file>` and returns its output on failure.
pub fn haproxy_check(cfg_path: &Path) -> Result<()> {
    haproxy_check_with_env(cfg_path, &[])
}

/// `haproxy -c -f <file>` with extra environment variables, for configurations that read
/// `"${VAR}"` (the operator's `dynamic-cookie-key "${CHATCLUSTER_COOKIE_KEY}"`).
pub fn haproxy_check_with_env(cfg_path: &Path, env: &[(&str, &str)]) -> Result<()> {
    let out = Command::new("haproxy")
        .envs(env.iter().copied())
        .arg("-c")
        .arg("-f")
        .arg(cfg_path)
        .output()
        .context("cannot run haproxy; is it installed (apt-get install haproxy)?")?;
    if !out.status.success() {
        bail!(
            "haproxy -c rejected {}:\n{}{}",
            cfg_path.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// A private `haproxy` running a given configuration, in the foreground (`-db`).
///
/// The configuration must pass `haproxy -c` (checked before start). `stats_socket` is the path
/// handed to the configuration for the runtime API, inside the process's temporary directory.
pub struct Haproxy {
    dir: tempfile::TempDir,
    child: Child,
}

impl Haproxy {
    /// Writes the configuration produced by `render(stats_socket_path)`, checks it, starts
    /// haproxy and waits until `wait_addr` accepts connections.
    pub fn start(render: impl FnOnce(&Path) -> String, wait_addr: SocketAddr) -> Result<Self> {
        Self::start_with_env(render, wait_addr, &[])
    }

    /// [`Haproxy::start`] with extra environment variables for haproxy (for example the
    /// `CHATCLUSTER_COOKIE_KEY` the operator's configurations read).
    pub fn start_with_env(
        render: impl FnOnce(&Path) -> String,
        wait_addr: SocketAddr,
        env: &[(&str, &str)],
    ) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let socket = dir.path().join("admin.sock");
        let cfg = dir.path().join("haproxy.cfg");
        std::fs::write(&cfg, render(&socket))?;
        haproxy_check_with_env(&cfg, env)?;
        let child = Command::new("haproxy")
            .envs(env.iter().copied())
            .arg("-db")
            .arg("-f")
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start haproxy")?;
        let proxy = Self { dir, child };
        wait_for_port(wait_addr, Duration::from_secs(10))?;
        Ok(proxy)
    }

    /// Path of the runtime API socket given to the configuration.
    pub fn stats_socket(&self) -> PathBuf {
        self.dir.path().join("admin.sock")
    }

    /// Sends one runtime API command (for example `show stat` or `show servers state`) and
    /// returns the whole answer.
    pub fn command(&self, cmd: &str) -> Result<String> {
        let mut stream = std::os::unix::net::UnixStream::connect(self.stats_socket())
            .context("connect to haproxy stats socket")?;
        stream.write_all(cmd.as_bytes())?;
        stream.write_all(b"\n")?;
        let mut out = String::new();
        for line in BufReader::new(stream).lines() {
            out.push_str(&line?);
            out.push('\n');
        }
        Ok(out)
    }

    /// `show stat` as one map per row (keys are the CSV header's field names: `pxname`,
    /// `svname`, `status`, `weight`, `scur`, `last_agt`, ...).
    pub fn show_stat(&self) -> Result<Vec<std::collections::BTreeMap<String, String>>> {
        Ok(parse_show_stat(&self.command("show stat")?))
    }

    /// `show servers state` as one map per server (keys: `be_name`, `srv_name`, `srv_op_state`,
    /// `srv_admin_state`, `srv_uweight`, ...).
    pub fn show_servers_state(&self) -> Result<Vec<std::collections::BTreeMap<String, String>>> {
        Ok(parse_show_servers_state(
            &self.command("show servers state")?,
        ))
    }

    /// OS process id, for tests that signal haproxy.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        kill_child(&mut self.child);
    }
}

/// Parses the CSV of the runtime API's `show stat` (header line starts with `# `).
pub fn parse_show_stat(csv: &str) -> Vec<std::collections::BTreeMap<String, String>> {
    let mut lines = csv.lines().filter(|l| !l.trim().is_empty());
    let Some(header) = lines.next() else {
        return Vec::new();
    };
    let names: Vec<&str> = header.trim_start_matches("# ").split(',').collect();
    lines
        .map(|line| {
            names
                .iter()
                .zip(line.split(','))
                .filter(|(name, _)| !name.is_empty())
                .map(|(name, value)| ((*name).to_string(), value.to_string()))
                .collect()
        })
        .collect()
}

/// Parses `show servers state` (a version line, a `# field ...` header, then one line per
/// server with space-separated values).
pub fn parse_show_servers_state(text: &str) -> Vec<std::collections::BTreeMap<String, String>> {
    let mut names: Vec<&str> = Vec::new();
    let mut rows = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if let Some(header) = line.strip_prefix("# ") {
            names = header.split_whitespace().collect();
        } else if !names.is_empty() {
            let row = names
                .iter()
                .zip(line.split_whitespace())
                .map(|(name, value)| ((*name).to_string(), value.to_string()))
                .collect();
            rows.push(row);
        }
    }
    rows
}

/// Path of a binary built from this workspace (`target/<profile>/<name>`), found next to the
/// running test executable. Fails with a hint when it has not been built yet.
pub fn workspace_bin(name: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    // target/<profile>/deps/<test-binary> -> target/<profile>/<name>
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .context("test executable has no target/<profile> directory")?;
    let path = profile_dir.join(name);
    if !path.exists() {
        bail!(
            "{} is missing: run `cargo build --workspace --bins` first",
            path.display()
        );
    }
    Ok(path)
}

/// Process ids of every live process whose environment holds `key=value`.
///
/// Local mode marks each child with a per-run variable that grandchildren inherit, so a test can
/// prove that nothing it started is still running, whatever became of the parent.
pub fn processes_with_env(key: &str, value: &str) -> Vec<u32> {
    let needle = format!("{key}={value}");
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            // Zombies keep their entry until reaped but are no longer running.
            let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let running = state
                .rsplit_once(") ")
                .is_some_and(|(_, rest)| !rest.starts_with('Z'));
            running
                && std::fs::read(format!("/proc/{pid}/environ"))
                    .is_ok_and(|env| env.split(|b| *b == 0).any(|var| var == needle.as_bytes()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_runtime_api_tables() {
        let stat = "# pxname,svname,status,weight,\nbe,a,UP,100,\nbe,b,DOWN (agent),0,\n\n";
        let rows = parse_show_stat(stat);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1]["svname"], "b");
        assert_eq!(rows[1]["status"], "DOWN (agent)");
        let state = "1\n# be_id be_name srv_id srv_name srv_op_state\n3 be 1 a 2\n3 be 2 b 0\n";
        let rows = parse_show_servers_state(state);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0]["srv_name"], "a");
        assert_eq!(rows[1]["srv_op_state"], "0");
    }

    #[test]
    fn redis_server_stops_and_starts_on_the_same_port() {
        let mut redis = RedisServer::start().expect("start redis");
        let addr = SocketAddr::from(([127, 0, 0, 1], redis.port()));
        assert!(TcpStream::connect(addr).is_ok());
        redis.stop();
        assert!(
            TcpStream::connect(addr).is_err(),
            "stopped redis still accepts"
        );
        redis.start_again().unwrap();
        assert!(TcpStream::connect(addr).is_ok());
    }
}
