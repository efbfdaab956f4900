//! Scaling while local mode runs: the ChatCluster file is watched, and a changed `spec.replicas`
//! starts or drains chat-node + sidecar pairs in HAProxy's spare server slots. As in a cluster,
//! where the slots are filled from DNS, HAProxy is never reloaded: an empty slot is put in
//! maintenance through the runtime API and enabled when a node starts in it.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::plan::Plan;
use super::supervisor::Supervisor;
use crate::crd::ChatCluster;

/// The backend the renderer puts the chat nodes in (`backend chat_nodes`, servers `chat1..`).
pub const BACKEND: &str = "chat_nodes";

/// HAProxy's server name for slot `ordinal` (0-based).
pub fn server_name(ordinal: usize) -> String {
    format!("{BACKEND}/chat{}", ordinal + 1)
}

/// Watches the file and applies replica changes.
pub struct Scaler {
    file: PathBuf,
    modified: Option<SystemTime>,
    applied: ChatCluster,
    socket: PathBuf,
    /// Chat nodes running now (slots `0..replicas`).
    pub replicas: usize,
}

impl Scaler {
    /// Starts from the ChatCluster local mode was started with.
    pub fn new(file: &Path, cc: &ChatCluster, haproxy_socket: &Path) -> Self {
        Self {
            file: file.to_owned(),
            modified: modified(file),
            applied: cc.clone(),
            socket: haproxy_socket.to_owned(),
            replicas: usize::try_from(cc.spec.replicas).unwrap_or(0),
        }
    }

    /// Puts every slot without a node in maintenance, like an unfilled `server-template` slot.
    pub async fn disable_spare_slots(&self, slots: usize) {
        for ordinal in self.replicas..slots {
            command(
                &self.socket,
                &format!("disable server {}", server_name(ordinal)),
            )
            .await;
        }
    }

    /// Re-reads the file when it changed and applies a new `spec.replicas`; returns whether the
    /// set of nodes changed.
    pub async fn poll(&mut self, plan: &Plan, supervisor: &mut Supervisor) -> bool {
        let now = modified(&self.file);
        if now == self.modified {
            return false;
        }
        self.modified = now;
        let cc = match super::run::load(&self.file).and_then(|cc| {
            crate::crd::validate(&cc).map_err(|e| super::Error::Unsupported(e.to_string()))?;
            Ok(cc)
        }) {
            Ok(cc) => cc,
            Err(err) => {
                tracing::warn!(%err, "ignoring the changed ChatCluster file");
                return false;
            }
        };
        let mut same_but_replicas = cc.spec.clone();
        same_but_replicas.replicas = self.applied.spec.replicas;
        if same_but_replicas != self.applied.spec {
            tracing::warn!(
                "only spec.replicas is applied while local mode runs; restart it for other changes"
            );
        }
        let wanted = usize::try_from(cc.spec.replicas).unwrap_or(0);
        let slots = plan.slot_children.len();
        if wanted > slots {
            tracing::warn!(
                wanted,
                slots,
                "replicas exceed the HAProxy server slots; restart local mode"
            );
            return false;
        }
        self.applied.spec.replicas = cc.spec.replicas;
        let before = self.replicas;
        if wanted > before {
            tracing::info!(from = before, to = wanted, "scaling up");
            for ordinal in before..wanted {
                supervisor.add(plan.slot_children[ordinal].clone());
                command(
                    &self.socket,
                    &format!("enable server {}", server_name(ordinal)),
                )
                .await;
            }
        } else if wanted < before {
            tracing::info!(
                from = before,
                to = wanted,
                "scaling down: draining the last nodes"
            );
            let names: Vec<String> = plan.slot_children[wanted..before]
                .iter()
                .flatten()
                .map(|c| c.name.clone())
                .collect();
            supervisor.retire(&names);
        }
        self.replicas = wanted;
        wanted != before
    }
}

/// Servers of [`BACKEND`] among `wanted` that HAProxy does not yet route to at full weight:
/// not `UP`, not yet health- and agent-checked (HAProxy starts servers `UP` before any check),
/// or with a weight other than the configured 100 (at start no node has clients, so a healthy
/// node's sidecar reports 100%; less means it is not fully ready, e.g. no Redis link yet).
pub fn servers_not_ready(show_stat: &str, wanted: &[String]) -> Vec<String> {
    let mut lines = show_stat.lines();
    let header: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .trim_start_matches("# ")
        .split(',')
        .collect();
    let column = |name| header.iter().position(|h| *h == name);
    let columns = [
        "pxname",
        "svname",
        "status",
        "check_status",
        "agent_status",
        "weight",
    ]
    .map(column);
    let [
        Some(px),
        Some(sv),
        Some(status),
        Some(check),
        Some(agent),
        Some(weight),
    ] = columns
    else {
        return wanted.to_vec();
    };
    let ready: Vec<&str> = lines
        .map(|l| l.split(',').collect::<Vec<_>>())
        .filter(|f| {
            let field = |i: usize| f.get(i).copied().unwrap_or_default();
            field(px) == BACKEND
                && field(status).starts_with("UP")
                && field(check) == "L7OK"
                && field(agent) == "L7OK"
                && field(weight) == "100"
        })
        .filter_map(|f| f.get(sv).copied())
        .collect();
    wanted
        .iter()
        .filter(|w| !ready.contains(&w.as_str()))
        .cloned()
        .collect()
}

impl Scaler {
    /// Waits until HAProxy routes to every running node at full weight (see
    /// [`servers_not_ready`]), so placement is right from the first client on.
    pub async fn wait_all_up(&self, timeout: std::time::Duration) -> Result<(), super::Error> {
        let wanted: Vec<String> = (1..=self.replicas).map(|n| format!("chat{n}")).collect();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let answer = runtime_api(&self.socket, "show stat")
                .await
                .unwrap_or_default();
            let missing = servers_not_ready(&answer, &wanted);
            if missing.is_empty() {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(super::Error::NotReady {
                    waiting: missing
                        .iter()
                        .map(|s| format!("haproxy server {s}"))
                        .collect(),
                    timeout,
                });
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    }
}

fn modified(file: &Path) -> Option<SystemTime> {
    std::fs::metadata(file).and_then(|m| m.modified()).ok()
}

/// Sends one runtime API command and returns HAProxy's answer.
async fn runtime_api(socket: &Path, cmd: &str) -> std::io::Result<String> {
    let mut stream = tokio::net::UnixStream::connect(socket).await?;
    stream.write_all(format!("{cmd}\n").as_bytes()).await?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await?;
    Ok(answer)
}

/// One runtime API command; failures are logged, not fatal (HAProxy may be restarting).
async fn command(socket: &Path, cmd: &str) {
    match runtime_api(socket, cmd).await {
        Ok(answer) if answer.trim().is_empty() => tracing::debug!(cmd, "haproxy runtime API"),
        Ok(answer) => tracing::warn!(cmd, answer = answer.trim(), "haproxy runtime API"),
        Err(err) => tracing::warn!(cmd, %err, "haproxy runtime API unreachable"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_are_ready_only_when_up_checked_and_at_full_weight() {
        let stat = "# pxname,svname,status,check_status,agent_status,weight\n\
                    chat,FRONTEND,OPEN,,,\n\
                    chat_nodes,chat1,UP,L7OK,L7OK,100\n\
                    chat_nodes,chat2,DOWN,L7OK,L7STS,0\n\
                    chat_nodes,chat3,UP,INI,INI,100\n\
                    chat_nodes,chat4,UP,L7OK,L7OK,1\n\
                    other,chat5,UP,L7OK,L7OK,100\n";
        let wanted: Vec<String> = (1..=5).map(|n| format!("chat{n}")).collect();
        assert_eq!(
            servers_not_ready(stat, &wanted),
            ["chat2", "chat3", "chat4", "chat5"]
        );
        assert_eq!(servers_not_ready("", &wanted), wanted);
        assert_eq!(server_name(0), "chat_nodes/chat1");
    }
}
