//! The `local` subcommand: read the ChatCluster file, pick loopback ports, build the plan, run
//! it under the supervisor, print the endpoint, keep the state file current, and on Ctrl-C or
//! SIGTERM drain and stop everything (a second signal skips the rest of the drain).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::signal::unix::{Signal, SignalKind, signal};

use super::error::Error;
use super::plan::{Plan, PlanContext, plan};
use super::scale::Scaler;
use super::state::{ChildState, LocalPorts, LocalState, NodePorts, NodeState};
use super::supervisor::{Supervisor, SupervisorOptions};
use crate::crd::ChatCluster;

/// Flags of `chatcluster-operator local`.
#[derive(Debug, Clone, clap::Args)]
pub struct LocalArgs {
    /// The ChatCluster manifest to run.
    #[arg(
        short = 'f',
        long,
        env = "CHATCLUSTER_FILE",
        default_value = "examples/chatcluster.yaml"
    )]
    pub file: PathBuf,
    /// Port HAProxy listens on for clients and the demo page, on 127.0.0.1 (0 picks a free one).
    #[arg(long, env = "CHATCLUSTER_LOCAL_PORT", default_value_t = 8000)]
    pub port: u16,
    /// Directory holding `chat-node` and `chatcluster-sidecar` (default: next to this program).
    #[arg(long, env = "CHATCLUSTER_BIN_DIR")]
    pub bin_dir: Option<PathBuf>,
    /// The haproxy program.
    #[arg(long, env = "CHATCLUSTER_HAPROXY_BIN", default_value = "haproxy")]
    pub haproxy_bin: PathBuf,
    /// The redis-server program.
    #[arg(
        long,
        env = "CHATCLUSTER_REDIS_SERVER_BIN",
        default_value = "redis-server"
    )]
    pub redis_server_bin: PathBuf,
    /// Redis URL for a spec with `redis.external` (its Secret exists only in a cluster).
    #[arg(long, env = "CHATCLUSTER_LOCAL_REDIS_URL", default_value = "")]
    pub external_redis_url: String,
    /// JWT key for a spec with `auth.jwtSecretRef` (its Secret exists only in a cluster).
    #[arg(
        long,
        env = "CHATCLUSTER_LOCAL_JWT_SECRET",
        default_value = "",
        hide_env_values = true
    )]
    pub jwt_secret: String,
    /// Directory for haproxy.cfg, Redis data and sockets (default: a temporary one, removed on exit).
    #[arg(long, env = "CHATCLUSTER_LOCAL_RUN_DIR")]
    pub run_dir: Option<PathBuf>,
    /// Write ports and process ids here as JSON once everything is ready, and again after every
    /// restart; removed on exit.
    #[arg(long, env = "CHATCLUSTER_LOCAL_STATE_FILE")]
    pub state_file: Option<PathBuf>,
    /// Milliseconds before a child that died is started again; doubles with each quick repeat,
    /// up to 30 s, like a pod's crash-loop backoff.
    #[arg(
        long,
        env = "CHATCLUSTER_LOCAL_RESTART_DELAY_MS",
        default_value_t = 500
    )]
    pub restart_delay_ms: u64,
    /// HAProxy server slots rendered beyond `spec.replicas` (never more than
    /// `spec.haproxy.serverSlots` in all), so editing `replicas` in the file scales without a
    /// reload. Each empty slot is health-checked once at start, hence not all 64 by default.
    #[arg(long, env = "CHATCLUSTER_LOCAL_SPARE_SLOTS", default_value_t = 4)]
    pub spare_slots: usize,
    /// Value of CHATCLUSTER_LOCAL_RUN on every child, to find them with `/proc/<pid>/environ`
    /// (default: `<pid>-<random>`).
    #[arg(long, env = "CHATCLUSTER_LOCAL_RUN_ID", default_value = "")]
    pub run_id: String,
    /// Seconds each start stage (Redis, nodes, HAProxy) may take to become ready.
    #[arg(
        long,
        env = "CHATCLUSTER_LOCAL_READY_TIMEOUT_SECONDS",
        default_value_t = 60
    )]
    pub ready_timeout_seconds: u64,
}

/// Runs local mode until Ctrl-C or SIGTERM, then drains and stops every child.
pub async fn run(args: LocalArgs) -> Result<(), Error> {
    let cc = load(&args.file)?;
    // Listen before anything starts: a signal during startup must still stop what started.
    let mut signals = Signals::new()?;
    let run_id = non_empty(&args.run_id)
        .unwrap_or_else(|| format!("{}-{:08x}", std::process::id(), rand::random::<u32>()));
    let temporary = args.run_dir.is_none();
    let run_dir = args
        .run_dir
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join(format!("chatcluster-local-{run_id}")));
    let replicas = usize::try_from(cc.spec.replicas).unwrap_or(0);
    // One port set per HAProxy server slot, so `replicas` can change without a reload.
    let max_slots = usize::try_from(cc.spec.haproxy.server_slots).unwrap_or(0);
    let slots = replicas.max(max_slots.min(replicas + args.spare_slots));
    let ports = choose_ports(args.port, slots).map_err(|source| Error::Io {
        path: "127.0.0.1:0".into(),
        source,
    })?;
    let ctx = PlanContext {
        bin_dir: bin_dir(args.bin_dir.as_deref()),
        haproxy_bin: args.haproxy_bin.clone(),
        redis_server_bin: args.redis_server_bin.clone(),
        run_dir: run_dir.clone(),
        run_id: run_id.clone(),
        external_redis_url: non_empty(&args.external_redis_url),
        jwt_secret: non_empty(&args.jwt_secret),
        cookie_key: crate::desired::secret::generate_cookie_key(),
    };
    let plan = plan(&cc, &ports, &ctx)?;
    write_files(&plan)?;
    let mut options = SupervisorOptions {
        ready_timeout: Duration::from_secs(args.ready_timeout_seconds),
        ..SupervisorOptions::default()
    };
    options.backoff.initial = Duration::from_millis(args.restart_delay_ms);
    options.backoff.max = options.backoff.max.max(options.backoff.initial);
    let mut supervisor = Supervisor::new(options);
    supervisor.reserve_width(plan.slot_children.iter().flatten().map(|c| c.name.as_str()));
    tracing::info!(run_id, run_dir = %run_dir.display(), nodes = replicas, "starting local mode");
    let started = tokio::select! {
        result = supervisor.start(plan.children.clone()) => Some(result),
        () = signals.recv() => None,
    };
    let result = 'serve: {
        match started {
            Some(Ok(())) => {}
            Some(Err(err)) => break 'serve Err(err),
            None => {
                tracing::info!("stopping before everything was ready");
                break 'serve Ok(());
            }
        }
        let mut scaler = Scaler::new(&args.file, &cc, &plan.haproxy_socket);
        scaler.disable_spare_slots(slots).await;
        let timeout = Duration::from_secs(args.ready_timeout_seconds);
        tokio::select! {
            result = scaler.wait_all_up(timeout) => {
                if let Err(err) = result {
                    break 'serve Err(err);
                }
            }
            () = signals.recv() => break 'serve Ok(()),
        }
        let state = |sup: &Supervisor, replicas: usize| {
            state(&plan, &ports, &run_id, &run_dir, sup, replicas)
        };
        announce(&state(&supervisor, replicas), replicas);
        let state_file = args.state_file.as_deref();
        if let Some(path) = state_file
            && let Err(err) = state(&supervisor, replicas).write(path)
        {
            break 'serve Err(err);
        }
        let mut watch = tokio::time::interval(Duration::from_secs(1));
        loop {
            let changed = tokio::select! {
                () = signals.recv() => break,
                () = supervisor.changed() => true,
                _ = watch.tick() => scaler.poll(&plan, &mut supervisor).await,
            };
            if let (true, Some(path)) = (changed, state_file)
                && let Err(err) = state(&supervisor, scaler.replicas).write(path)
            {
                break 'serve Err(err);
            }
        }
        tracing::info!("stopping: draining chat nodes, then stopping the rest");
        Ok(())
    };
    stop(&mut supervisor, &mut signals).await;
    if let Some(path) = &args.state_file {
        let _ = std::fs::remove_file(path);
    }
    if temporary {
        let _ = std::fs::remove_dir_all(&run_dir);
    }
    result
}

/// Drains and stops every child; a second signal cuts the drain short.
async fn stop(supervisor: &mut Supervisor, signals: &mut Signals) {
    let kill = supervisor.kill_switch();
    let shutdown = supervisor.shutdown();
    tokio::pin!(shutdown);
    tokio::select! {
        () = &mut shutdown => return,
        () = signals.recv() => {
            tracing::warn!("second signal: killing every child now");
            kill.cancel();
        }
    }
    shutdown.await;
}

/// Reads and parses a ChatCluster file (a missing namespace means `default`).
pub(super) fn load(path: &Path) -> Result<ChatCluster, Error> {
    let manifest = |reason: String| Error::Manifest {
        path: path.to_owned(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| manifest(e.to_string()))?;
    // The same parsing as `render`: kind checked, unknown keys (typos) refused.
    crate::render::parse_chatcluster(&text, "default").map_err(|e| manifest(e.to_string()))
}

fn non_empty(value: &str) -> Option<String> {
    (!value.is_empty()).then(|| value.to_owned())
}

/// `--bin-dir`, or the directory of this executable (where cargo puts the sibling binaries).
fn bin_dir(flag: Option<&Path>) -> PathBuf {
    if let Some(dir) = flag {
        return dir.to_owned();
    }
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(Path::to_path_buf))
        .unwrap_or_default()
}

/// Picks free loopback ports: all listeners are held at once so no two picks collide, then
/// released for the children to bind.
fn choose_ports(frontend: u16, replicas: usize) -> std::io::Result<LocalPorts> {
    let mut held = Vec::new();
    let mut pick = || -> std::io::Result<u16> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        held.push(listener);
        Ok(port)
    };
    let frontend = if frontend == 0 { pick()? } else { frontend };
    let stats = pick()?;
    let redis = pick()?;
    let nodes = (0..replicas)
        .map(|_| {
            Ok(NodePorts {
                ws: pick()?,
                admin: pick()?,
                agent: pick()?,
                http: pick()?,
            })
        })
        .collect::<std::io::Result<_>>()?;
    Ok(LocalPorts {
        frontend,
        stats,
        redis,
        nodes,
    })
}

fn write_files(plan: &Plan) -> Result<(), Error> {
    for dir in &plan.dirs {
        std::fs::create_dir_all(dir).map_err(|source| Error::Io {
            path: dir.clone(),
            source,
        })?;
    }
    for (path, content) in &plan.files {
        std::fs::write(path, content).map_err(|source| Error::Io {
            path: path.clone(),
            source,
        })?;
    }
    Ok(())
}

fn state(
    plan: &Plan,
    ports: &LocalPorts,
    run_id: &str,
    run_dir: &Path,
    supervisor: &Supervisor,
    replicas: usize,
) -> LocalState {
    let status = |name: &str| supervisor.status(name).unwrap_or_default();
    LocalState {
        operator_pid: std::process::id(),
        run_id: run_id.to_owned(),
        run_dir: run_dir.to_owned(),
        endpoint: plan.endpoint.clone(),
        demo_url: plan.demo_url.clone(),
        ports: ports.clone(),
        haproxy_socket: plan.haproxy_socket.clone(),
        redis_url: plan.redis_url.clone(),
        nodes: plan
            .nodes
            .iter()
            .take(replicas)
            .map(|n| NodeState {
                name: n.name.clone(),
                ports: n.ports,
                pid: status(&n.name).pid,
                sidecar_pid: status(&format!("{}-sidecar", n.name)).pid,
            })
            .collect(),
        children: plan
            .children
            .iter()
            .filter(|c| {
                !plan
                    .slot_children
                    .iter()
                    .flatten()
                    .any(|s| s.name == c.name)
            })
            .chain(plan.slot_children.iter().take(replicas).flatten())
            .map(|c| {
                let s = status(&c.name);
                ChildState {
                    name: c.name.clone(),
                    pid: s.pid,
                    starts: s.starts,
                }
            })
            .collect(),
    }
}

/// The lines a person running local mode looks for.
fn announce(state: &LocalState, replicas: usize) {
    use std::io::Write;
    let message = format!(
        "\nchatcluster is running locally: {replicas} chat nodes behind HAProxy\n\
         \x20 endpoint:      {}\n\
         \x20 demo page:     {}  (open it in two browser tabs and chat)\n\
         \x20 HAProxy stats: http://127.0.0.1:{}/stats\n\
         Press Ctrl-C to drain the nodes and stop everything.\n",
        state.endpoint, state.demo_url, state.ports.stats
    );
    let _ = writeln!(std::io::stdout().lock(), "{message}");
    tracing::info!(endpoint = %state.endpoint, demo = %state.demo_url, "ready");
}

/// Ctrl-C and SIGTERM, registered once up front so neither ever falls back to the default
/// action (which would kill local mode and orphan its children).
struct Signals {
    interrupt: Signal,
    terminate: Signal,
}

impl Signals {
    fn new() -> Result<Self, Error> {
        let io = |source| Error::Io {
            path: "signal handler".into(),
            source,
        };
        Ok(Self {
            interrupt: signal(SignalKind::interrupt()).map_err(io)?,
            terminate: signal(SignalKind::terminate()).map_err(io)?,
        })
    }

    async fn recv(&mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => tracing::info!("received Ctrl-C"),
            _ = self.terminate.recv() => tracing::info!("received SIGTERM"),
        }
    }
}
