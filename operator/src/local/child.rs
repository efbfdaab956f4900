//! One supervised child process, the local stand-in for a pod: it is spawned in its own process
//! group, its output lines are prefixed with its name, it is restarted with exponential backoff
//! when it dies, and it is stopped by signalling its process group (SIGTERM, a bounded wait, then
//! SIGKILL) so that grandchildren such as HAProxy workers go with it.
//!
//! Every signal goes to a process id the supervisor spawned itself; nothing is found or killed by
//! name.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::probe::Probe;

/// How long a child that is not drained gets between SIGTERM and SIGKILL.
pub const TERMINATE_WAIT: Duration = Duration::from_secs(5);
/// Extra time a draining child gets beyond its grace period before SIGKILL.
pub const DRAIN_MARGIN: Duration = Duration::from_secs(3);

/// Everything needed to run one child: the local equivalent of a container spec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChildSpec {
    /// Unique name, used as the log prefix (`chat-node-0`, `haproxy`).
    pub name: String,
    /// Program to execute (a path, or a name looked up on `PATH`).
    pub program: PathBuf,
    /// Command-line arguments.
    pub args: Vec<String>,
    /// Environment variables added to the operator's own environment.
    pub env: Vec<(String, String)>,
    /// When the child counts as ready.
    pub probe: Probe,
    /// How the child is stopped.
    pub stop: StopPolicy,
    /// Start order: every child of stage `n` is ready before stage `n + 1` starts.
    pub stage: u8,
}

/// How a child is stopped when local mode shuts down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopPolicy {
    /// SIGTERM starts a drain that may take up to `grace`; these children stop first, while the
    /// proxy in front of them still runs, like a pod's preStop + termination grace period.
    Drain {
        /// The drain grace period the child was configured with.
        grace: Duration,
    },
    /// SIGTERM, then SIGKILL after [`TERMINATE_WAIT`].
    Terminate,
}

impl StopPolicy {
    /// How long to wait after SIGTERM before SIGKILL.
    pub fn wait(self) -> Duration {
        match self {
            StopPolicy::Drain { grace } => grace + DRAIN_MARGIN,
            StopPolicy::Terminate => TERMINATE_WAIT,
        }
    }
}

/// Restart delays for a child that keeps dying, like Kubernetes' CrashLoopBackOff.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Delay after the first failure.
    pub initial: Duration,
    /// Upper bound of the delay.
    pub max: Duration,
    /// A child that ran at least this long before dying starts again from `initial`.
    pub reset_after: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(500),
            max: Duration::from_secs(30),
            reset_after: Duration::from_secs(10),
        }
    }
}

impl Backoff {
    /// Delay before restart number `failures` (1-based) of a run of consecutive failures.
    pub fn delay(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(16);
        self.initial.saturating_mul(1 << doublings).min(self.max)
    }
}

/// What the supervisor knows about one child at a moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChildStatus {
    /// Process id while the child runs.
    pub pid: Option<u32>,
    /// How many times the child was spawned.
    pub starts: u32,
    /// How many times it exited (or failed to spawn) without being asked to stop.
    pub unexpected_exits: u32,
    /// The last exit, in words (`exit status: 1`, `signal: 9 (SIGKILL)`).
    pub last_exit: Option<String>,
    /// Set when the program could not be started at all (missing binary, permissions).
    pub spawn_error: Option<String>,
}

/// How child output lines are prefixed (`<name> | line`, names right-aligned).
#[derive(Debug, Clone)]
pub struct LogPrefix {
    /// Width the names are padded to, so the columns line up.
    pub width: usize,
}

/// Handles the supervisor keeps for a running child loop.
pub(crate) struct ChildControl {
    /// Ask the child to stop (SIGTERM + wait per its policy).
    pub stop: CancellationToken,
    /// Skip the remaining wait and SIGKILL now (second Ctrl-C).
    pub kill_now: CancellationToken,
}

/// Runs one child until `control.stop` is cancelled: spawn, wait, restart with backoff.
pub(crate) async fn run_child(
    spec: Arc<ChildSpec>,
    backoff: Backoff,
    prefix: LogPrefix,
    status: watch::Sender<ChildStatus>,
    control: ChildControl,
) {
    let mut failures = 0u32;
    loop {
        if control.stop.is_cancelled() {
            return;
        }
        let started = Instant::now();
        match spawn(&spec, &prefix) {
            Err(err) => {
                tracing::error!(child = %spec.name, program = %spec.program.display(), %err, "cannot start child");
                status.send_modify(|s| {
                    s.unexpected_exits += 1;
                    s.spawn_error = Some(format!("{}: {err}", spec.program.display()));
                });
            }
            Ok(mut child) => {
                let pid = child.id();
                status.send_modify(|s| {
                    s.pid = pid;
                    s.starts += 1;
                    s.spawn_error = None;
                });
                tracing::debug!(child = %spec.name, ?pid, "child started");
                tokio::select! {
                    exit = child.wait() => {
                        // Take any grandchildren down with it before a restart.
                        signal_group(pid, rustix::process::Signal::KILL);
                        let exit = exit.map_or_else(|e| e.to_string(), |s| s.to_string());
                        tracing::warn!(child = %spec.name, ?pid, %exit, "child exited");
                        status.send_modify(|s| {
                            s.pid = None;
                            s.unexpected_exits += 1;
                            s.last_exit = Some(exit);
                        });
                    }
                    () = control.stop.cancelled() => {
                        let exit = stop(&mut child, &spec, &control.kill_now).await;
                        status.send_modify(|s| {
                            s.pid = None;
                            s.last_exit = Some(exit);
                        });
                        return;
                    }
                }
            }
        }
        failures = if started.elapsed() >= backoff.reset_after {
            1
        } else {
            failures + 1
        };
        let delay = backoff.delay(failures);
        tracing::info!(child = %spec.name, ?delay, failures, "restarting child after backoff");
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = control.stop.cancelled() => return,
        }
    }
}

/// Spawns the process in its own process group with piped, prefixed output.
fn spawn(spec: &ChildSpec, prefix: &LogPrefix) -> std::io::Result<Child> {
    let mut cmd = Command::new(&spec.program);
    cmd.args(&spec.args)
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own group: a terminal's Ctrl-C reaches only the supervisor, which then stops the
        // children in order (drain first), and a group signal also reaches grandchildren.
        .process_group(0)
        // Safety net if the supervisor itself unwinds: the child gets SIGKILL.
        .kill_on_drop(true);
    let mut child = cmd.spawn()?;
    let label = format!("{:>width$} |", spec.name, width = prefix.width);
    if let Some(out) = child.stdout.take() {
        tokio::spawn(forward_lines(out, label.clone(), false));
    }
    if let Some(err) = child.stderr.take() {
        tokio::spawn(forward_lines(err, label, true));
    }
    Ok(child)
}

/// Copies a child's output to ours line by line, each line prefixed with the child's name.
async fn forward_lines(stream: impl AsyncRead + Unpin, label: String, to_stderr: bool) {
    use std::io::Write;
    let mut reader = BufReader::new(stream);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                let text = String::from_utf8_lossy(&line);
                let text = text.trim_end_matches(['\r', '\n']);
                // One write per line keeps lines from different children whole.
                let _ = if to_stderr {
                    writeln!(std::io::stderr().lock(), "{label} {text}")
                } else {
                    writeln!(std::io::stdout().lock(), "{label} {text}")
                };
            }
        }
    }
}

/// SIGTERM to the child's group, wait per policy (or until `kill_now`), then SIGKILL.
async fn stop(child: &mut Child, spec: &ChildSpec, kill_now: &CancellationToken) -> String {
    let pid = child.id();
    let wait = spec.stop.wait();
    tracing::info!(child = %spec.name, ?pid, ?wait, "stopping child");
    signal_group(pid, rustix::process::Signal::TERM);
    let exit = tokio::select! {
        exit = child.wait() => Some(exit),
        () = tokio::time::sleep(wait) => {
            tracing::warn!(child = %spec.name, ?pid, "child did not stop in time; killing it");
            None
        }
        () = kill_now.cancelled() => None,
    };
    signal_group(pid, rustix::process::Signal::KILL);
    let exit = match exit {
        Some(exit) => exit,
        None => child.wait().await,
    };
    exit.map_or_else(|e| e.to_string(), |s| s.to_string())
}

/// Sends `signal` to the process group led by `pid` (the child's own group, see [`spawn`]).
fn signal_group(pid: Option<u32>, signal: rustix::process::Signal) {
    let Some(pid) = pid
        .and_then(|p| i32::try_from(p).ok())
        .and_then(rustix::process::Pid::from_raw)
    else {
        return;
    };
    // ESRCH (group already gone) is the normal case after an exit.
    let _ = rustix::process::kill_process_group(pid, signal);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let b = Backoff {
            initial: Duration::from_millis(500),
            max: Duration::from_secs(4),
            reset_after: Duration::from_secs(10),
        };
        let delays: Vec<_> = (1..=6).map(|n| b.delay(n).as_millis()).collect();
        assert_eq!(delays, [500, 1000, 2000, 4000, 4000, 4000]);
        assert_eq!(b.delay(0), Duration::from_millis(500));
        assert_eq!(b.delay(u32::MAX), Duration::from_secs(4));
    }

    #[test]
    fn draining_children_get_their_grace_plus_a_margin() {
        let drain = StopPolicy::Drain {
            grace: Duration::from_secs(30),
        };
        assert_eq!(drain.wait(), Duration::from_secs(30) + DRAIN_MARGIN);
        assert_eq!(StopPolicy::Terminate.wait(), TERMINATE_WAIT);
    }
}
