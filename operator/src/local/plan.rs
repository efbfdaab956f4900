//! The local plan, a pure function: from a ChatCluster, the chosen loopback ports and where the
//! programs live, to the children local mode runs and the files it writes. It is the local
//! counterpart of the desired state: the same node names, the same chat-node settings the
//! StatefulSet gives its containers, and HAProxy's configuration from the same renderer (with
//! static discovery of the local nodes instead of DNS).

use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::core::v1::Container;

use crate::crd::ChatCluster;
use crate::defaults::OperatorDefaults;
use crate::desired::desired_state;
use crate::haproxy_cfg::{
    COOKIE_KEY_ENV, Discovery, HaproxyParams, StaticServer, render_haproxy_cfg,
};

use super::child::{ChildSpec, StopPolicy};
use super::error::Error;
use super::probe::Probe;
use super::state::{LocalPorts, NodePorts, RUN_ENV};

/// Start stages: Redis first, then the chat nodes with their sidecars, then HAProxy.
pub const STAGE_REDIS: u8 = 0;
/// See [`STAGE_REDIS`].
pub const STAGE_NODES: u8 = 1;
/// See [`STAGE_REDIS`].
pub const STAGE_PROXY: u8 = 2;

/// Everything about this machine the plan needs besides the ChatCluster and the ports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanContext {
    /// Directory holding `chat-node` and `chatcluster-sidecar`.
    pub bin_dir: PathBuf,
    /// The `haproxy` program.
    pub haproxy_bin: PathBuf,
    /// The `redis-server` program.
    pub redis_server_bin: PathBuf,
    /// Directory for haproxy.cfg, Redis data and the HAProxy socket.
    pub run_dir: PathBuf,
    /// Value of [`RUN_ENV`] on every child.
    pub run_id: String,
    /// The Redis URL when the spec names an external Redis (its Secret only exists in a cluster).
    pub external_redis_url: Option<String>,
    /// The JWT key when the spec references one (same reason).
    pub jwt_secret: Option<String>,
    /// HAProxy's dynamic-cookie key (a Secret in a cluster).
    pub cookie_key: String,
}

/// One chat node as HAProxy's static discovery sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalNode {
    /// Node (pod) name.
    pub name: String,
    /// Its ports.
    pub ports: NodePorts,
}

/// What local mode runs and writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Children in start order: Redis, the pairs of the first `spec.replicas` slots, HAProxy.
    pub children: Vec<ChildSpec>,
    /// The chat-node + sidecar pair of every server slot, running or not (for scaling).
    pub slot_children: Vec<Vec<ChildSpec>>,
    /// Directories to create before starting.
    pub dirs: Vec<PathBuf>,
    /// Files to write before starting: (path, content).
    pub files: Vec<(PathBuf, String)>,
    /// Every server slot's node, in ordinal order; the first `spec.replicas` run.
    pub nodes: Vec<LocalNode>,
    /// The Redis URL the nodes use.
    pub redis_url: String,
    /// `ws://127.0.0.1:<frontend>/ws`
    pub endpoint: String,
    /// `http://127.0.0.1:<frontend>/`
    pub demo_url: String,
    /// HAProxy's runtime API socket.
    pub haproxy_socket: PathBuf,
}

/// Builds the plan: the desired state's chat-node and sidecar containers become local children
/// (their environment kept, with loopback listen addresses, the node's name and local secrets
/// filled in), and HAProxy gets the renderer's configuration with static discovery.
pub fn plan(cc: &ChatCluster, ports: &LocalPorts, ctx: &PlanContext) -> Result<Plan, Error> {
    let spec = &cc.spec;
    let replicas = usize::try_from(spec.replicas).unwrap_or(0);
    if ports.nodes.len() < replicas {
        return Err(Error::Unsupported(format!(
            "{replicas} replicas do not fit in {} server slots",
            ports.nodes.len()
        )));
    }
    let desired = desired_state(cc, &OperatorDefaults::default())
        .map_err(|e| Error::Unsupported(e.to_string()))?;
    let pod = desired
        .chat_node
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .ok_or_else(|| Error::Unsupported("the chat-node StatefulSet has no pod spec".into()))?;
    let container = |name: &str| {
        pod.containers
            .iter()
            .find(|c| c.name == name)
            .ok_or_else(|| Error::Unsupported(format!("the chat-node pod has no {name} container")))
    };
    let (chat_node, sidecar) = (container("chat-node")?, container("sidecar")?);
    let run_env = vec![(RUN_ENV.to_owned(), ctx.run_id.clone())];
    let mut children = Vec::new();
    let redis_url = match (&spec.redis.external, &ctx.external_redis_url) {
        (Some(_), Some(url)) => url.clone(),
        (Some(ext), None) => {
            return Err(Error::Unsupported(format!(
                "spec.redis.external reads the URL from Secret {}/{}, which does not exist on this \
                 machine; pass it with --external-redis-url",
                ext.url_secret_ref.name, ext.url_secret_ref.key
            )));
        }
        (None, _) => {
            children.push(redis_child(cc, ports.redis, ctx, &run_env));
            format!("redis://127.0.0.1:{}/", ports.redis)
        }
    };
    if let (Some(r), None) = (&spec.auth.jwt_secret_ref, &ctx.jwt_secret) {
        return Err(Error::Unsupported(format!(
            "spec.auth.jwtSecretRef reads the key from Secret {}/{}, which does not exist on this \
             machine; pass it with --jwt-secret",
            r.name, r.key
        )));
    }
    let grace = Duration::from_secs(u64::try_from(spec.drain_grace_seconds).unwrap_or(0));
    // Pod names of the StatefulSet: `<statefulset>-<ordinal>`.
    let statefulset = desired
        .chat_node
        .metadata
        .name
        .as_deref()
        .unwrap_or("chat-node");
    let nodes: Vec<LocalNode> = ports
        .nodes
        .iter()
        .enumerate()
        .map(|(i, p)| LocalNode {
            name: format!("{statefulset}-{i}"),
            ports: *p,
        })
        .collect();
    let mut slot_children = Vec::with_capacity(nodes.len());
    for node in &nodes {
        let mut pair = Vec::with_capacity(2);
        let p = node.ports;
        let mut overrides = vec![
            ("CHAT_LISTEN", format!("127.0.0.1:{}", p.ws)),
            ("CHAT_ADMIN_LISTEN", format!("127.0.0.1:{}", p.admin)),
            ("CHAT_NODE_NAME", node.name.clone()),
            ("CHAT_REDIS_URL", redis_url.clone()),
            ("CHAT_LOG_FORMAT", "text".to_owned()),
        ];
        if let Some(secret) = &ctx.jwt_secret {
            overrides.push(("CHAT_JWT_SECRET", secret.clone()));
        }
        pair.push(ChildSpec {
            name: node.name.clone(),
            program: ctx.bin_dir.join("chat-node"),
            args: Vec::new(),
            env: container_env(chat_node, &overrides, &run_env)?,
            probe: Probe::Http {
                addr: loopback(p.admin),
                path: "/readyz".into(),
            },
            stop: StopPolicy::Drain { grace },
            stage: STAGE_NODES,
        });
        let overrides = [
            (
                "SIDECAR_STATS_URL",
                format!("http://127.0.0.1:{}/stats", p.admin),
            ),
            ("SIDECAR_AGENT_LISTEN", format!("127.0.0.1:{}", p.agent)),
            ("SIDECAR_HTTP_LISTEN", format!("127.0.0.1:{}", p.http)),
            ("SIDECAR_LOG_FORMAT", "text".to_owned()),
        ];
        pair.push(ChildSpec {
            name: format!("{}-sidecar", node.name),
            program: ctx.bin_dir.join("chatcluster-sidecar"),
            args: Vec::new(),
            env: container_env(sidecar, &overrides, &run_env)?,
            probe: Probe::Http {
                addr: loopback(p.http),
                path: "/healthz".into(),
            },
            stop: StopPolicy::Terminate,
            stage: STAGE_NODES,
        });
        slot_children.push(pair);
    }
    children.extend(slot_children.iter().take(replicas).flatten().cloned());
    let haproxy_socket = ctx.run_dir.join("haproxy.sock");
    let haproxy_cfg_path = ctx.run_dir.join("haproxy.cfg");
    let params = HaproxyParams::from_spec(
        cc.metadata.name.as_deref().unwrap_or("chat"),
        spec,
        &format!("127.0.0.1:{}", ports.frontend),
        &format!("127.0.0.1:{}", ports.stats),
        &haproxy_socket.display().to_string(),
    );
    let servers = nodes
        .iter()
        .map(|n| StaticServer {
            addr: loopback(n.ports.ws),
            check_port: n.ports.admin,
            agent_port: n.ports.agent,
        })
        .collect();
    let haproxy_cfg = render_haproxy_cfg(&params, &Discovery::Static(servers));
    let mut haproxy_env = run_env.clone();
    haproxy_env.push((COOKIE_KEY_ENV.to_owned(), ctx.cookie_key.clone()));
    children.push(ChildSpec {
        name: "haproxy".into(),
        program: ctx.haproxy_bin.clone(),
        args: vec![
            "-db".into(),
            "-f".into(),
            haproxy_cfg_path.display().to_string(),
        ],
        env: haproxy_env,
        // HAProxy's monitor URI on the stats listener: up once the config is loaded and every
        // listener (the client port included) is bound, without noise in the client log.
        probe: Probe::Http {
            addr: loopback(ports.stats),
            path: "/healthz".into(),
        },
        stop: StopPolicy::Terminate,
        stage: STAGE_PROXY,
    });
    Ok(Plan {
        children,
        slot_children,
        dirs: vec![ctx.run_dir.join("redis")],
        files: vec![(haproxy_cfg_path, haproxy_cfg)],
        nodes,
        redis_url,
        endpoint: format!("ws://127.0.0.1:{}/ws", ports.frontend),
        demo_url: format!("http://127.0.0.1:{}/", ports.frontend),
        haproxy_socket,
    })
}

/// A container's environment as local process environment: literal values kept, `overrides`
/// replacing what only makes sense in a pod (listen addresses, the downward-API pod name, Secret
/// references). A reference left without a local value is an error naming the variable.
fn container_env(
    container: &Container,
    overrides: &[(&str, String)],
    run_env: &[(String, String)],
) -> Result<Vec<(String, String)>, Error> {
    let mut env = run_env.to_vec();
    for var in container.env.iter().flatten() {
        let value = match (overrides.iter().find(|(k, _)| *k == var.name), &var.value) {
            (Some((_, v)), _) => v.clone(),
            (None, Some(v)) => v.clone(),
            (None, None) => {
                return Err(Error::Unsupported(format!(
                    "{} of container {} has no local value",
                    var.name, container.name
                )));
            }
        };
        env.push((var.name.clone(), value));
    }
    Ok(env)
}

fn loopback(port: u16) -> std::net::SocketAddr {
    std::net::SocketAddr::from(([127, 0, 0, 1], port))
}

/// The managed Redis on loopback, in-memory unless `spec.redis.storage` asks for persistence
/// (then an append-only file in the run directory survives a Redis restart, like the volume).
fn redis_child(
    cc: &ChatCluster,
    port: u16,
    ctx: &PlanContext,
    env: &[(String, String)],
) -> ChildSpec {
    let appendonly = if cc.spec.redis.storage.is_some() {
        "yes"
    } else {
        "no"
    };
    let dir = ctx.run_dir.join("redis").display().to_string();
    let port_text = port.to_string();
    let args = [
        ("--bind", "127.0.0.1"),
        ("--port", &port_text),
        ("--save", ""),
        ("--appendonly", appendonly),
        ("--protected-mode", "yes"),
        ("--dir", &dir),
        // Keep argv and the environment as they are: a retitled process can lose the run marker.
        ("--set-proc-title", "no"),
    ];
    ChildSpec {
        name: "redis".into(),
        program: ctx.redis_server_bin.clone(),
        args: args
            .iter()
            .flat_map(|(k, v)| [(*k).to_owned(), (*v).to_owned()])
            .collect(),
        env: env.to_vec(),
        probe: Probe::RedisPing(loopback(port)),
        stop: StopPolicy::Terminate,
        stage: STAGE_REDIS,
    }
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
