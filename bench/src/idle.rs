//! The idle-connection memory benchmark (`chatcluster-bench idle`): how much resident memory a
//! chat-node spends per open, idle WebSocket connection.
//!
//! Per run: start a fresh node (or use an attached one), read its RSS, open N connections from
//! worker processes (each well under the 20,000 open-files cap, spread over several 127.0.0.x
//! source addresses), wait until the node's `/stats` counts them, let it settle, read the RSS
//! again, then close everything and read it once more. Every wait is bounded.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::measure::{per_connection_kib, read_rss_kib, split_counts};
use crate::node::{Node, command_with_max_nofile};
use crate::worker::{WorkerEvent, WorkerProcess};
use crate::{Error, Result};

/// Sockets one worker may hold: the open-files cap is 20,000 per process, keep a wide margin.
pub const MAX_PER_WORKER: usize = 9000;

/// Flags of `chatcluster-bench idle`.
#[derive(clap::Args, Debug, Clone)]
pub struct IdleArgs {
    /// Idle WebSocket connections to open.
    #[arg(long, env = "BENCH_CONNECTIONS", default_value_t = 10_000)]
    pub connections: usize,
    /// Worker processes the connections are spread over (each holds at most 9,000).
    #[arg(long, env = "BENCH_WORKERS", default_value_t = 4)]
    pub workers: usize,
    /// Source addresses the clients bind before connecting, used round robin.
    #[arg(
        long,
        env = "BENCH_SOURCE_ADDRS",
        value_delimiter = ',',
        default_value = "127.0.0.2,127.0.0.3,127.0.0.4,127.0.0.5"
    )]
    pub source_addrs: Vec<Ipv4Addr>,
    /// Handshakes in flight at once, per worker.
    #[arg(long, env = "BENCH_CONCURRENCY", default_value_t = 64)]
    pub concurrency: usize,
    /// Each connection joins room `idle-<i % N>` after its welcome; 0 = no room (pure idle).
    #[arg(long, env = "BENCH_JOIN_ROOMS", default_value_t = 0)]
    pub join_rooms: usize,
    /// Measurements to make, each on a fresh node (attached: on the same node, where only the
    /// first run is meaningful because later ones reuse freed memory); the median is reported.
    #[arg(long, env = "BENCH_RUNS", default_value_t = 1)]
    pub runs: usize,
    /// Seconds to wait before each RSS reading, so allocations settle.
    #[arg(long, env = "BENCH_SETTLE_SECONDS", default_value_t = 3)]
    pub settle_seconds: u64,
    /// Upper bound for one run; workers exit by themselves shortly after it.
    #[arg(long, env = "BENCH_TIMEOUT_SECONDS", default_value_t = 300)]
    pub timeout_seconds: u64,
    /// chat-node binary to start (default: `chat-node` next to this binary, i.e. the same
    /// cargo profile; build it with `cargo build --release -p chat-node`).
    #[arg(long, env = "BENCH_NODE_BIN")]
    pub node_bin: Option<PathBuf>,
    /// Extra argument for the started node, repeatable (for example `--node-arg=--capacity=20000`).
    #[arg(
        long = "node-arg",
        env = "BENCH_NODE_ARGS",
        value_delimiter = ' ',
        allow_hyphen_values = true
    )]
    pub node_args: Vec<String>,
    /// Redis the started node uses; default: a private `redis-server` on a free loopback port.
    #[arg(long, env = "BENCH_REDIS_URL")]
    pub redis_url: Option<String>,
    /// Measure a running node with this PID instead of starting one.
    #[arg(long, env = "BENCH_ATTACH_PID")]
    pub attach_pid: Option<u32>,
    /// WebSocket endpoint of the attached node.
    #[arg(
        long,
        env = "BENCH_ATTACH_URL",
        default_value = "ws://127.0.0.1:8080/ws"
    )]
    pub attach_url: String,
    /// `/stats` of the attached node.
    #[arg(
        long,
        env = "BENCH_ATTACH_STATS_URL",
        default_value = "http://127.0.0.1:8081/stats"
    )]
    pub attach_stats_url: String,
}

/// What one run measured.
#[derive(Debug, Clone, PartialEq)]
pub struct RunReport {
    /// Connections held open while measuring.
    pub connections: usize,
    /// Node RSS before the clients connected (KiB).
    pub rss_before_kib: u64,
    /// Node RSS with every client connected and idle (KiB).
    pub rss_idle_kib: u64,
    /// Node RSS after every client closed (KiB): how much the node gives back.
    pub rss_closed_kib: u64,
    /// Seconds from starting the workers until `/stats` counted every connection.
    pub connect_seconds: f64,
}

impl RunReport {
    /// RSS growth per connection (KiB), the benchmark's figure.
    pub fn kib_per_connection(&self) -> f64 {
        per_connection_kib(self.rss_before_kib, self.rss_idle_kib, self.connections)
    }

    /// Column names matching [`RunReport::row`].
    pub fn header() -> &'static str {
        "run  connections  rss_before_kib  rss_idle_kib  rss_closed_kib  connect_s  kib_per_conn"
    }

    /// One table row.
    pub fn row(&self, run: usize) -> String {
        format!(
            "{run:<4} {:>11}  {:>14}  {:>12}  {:>14}  {:>9.1}  {:>12.2}",
            self.connections,
            self.rss_before_kib,
            self.rss_idle_kib,
            self.rss_closed_kib,
            self.connect_seconds,
            self.kib_per_connection()
        )
    }
}

/// Runs the benchmark `args.runs` times and returns one report per run.
pub async fn run_idle(args: &IdleArgs) -> Result<Vec<RunReport>> {
    let parts = split_counts(args.connections, args.workers);
    if let Some((_, n)) = parts.iter().find(|(_, n)| *n > MAX_PER_WORKER) {
        return Err(Error::Invalid(format!(
            "{n} connections in one worker exceed {MAX_PER_WORKER} (open files are capped at 20,000); raise --workers"
        )));
    }
    if let Some(bad) = args.source_addrs.iter().find(|a| !a.is_loopback()) {
        return Err(Error::Invalid(format!(
            "source address {bad} is not loopback (127.0.0.0/8)"
        )));
    }
    let exe = std::env::current_exe().map_err(Error::io("find this executable"))?;
    let mut reports = Vec::with_capacity(args.runs);
    if let Some(pid) = args.attach_pid {
        let node = Node::attach(args.attach_url.clone(), args.attach_stats_url.clone(), pid);
        if args.runs > 1 {
            // The allocator keeps freed memory and hands it to the next connections, so only a
            // node's first run shows the real cost; later runs measure reuse (close to 0).
            tracing::warn!(
                "attached runs after the first reuse freed memory; compare first runs only"
            );
        }
        for run in 1..=args.runs {
            reports.push(bounded_run(args, &node, &exe, run).await?);
        }
        return Ok(reports);
    }
    let bin = match &args.node_bin {
        Some(bin) => bin.clone(),
        None => exe.with_file_name("chat-node"),
    };
    // Redis only carries room traffic here; it is started once and shared by the runs.
    let (_redis, redis_url) = match &args.redis_url {
        Some(url) => (None, url.clone()),
        None => {
            let redis = tokio::task::spawn_blocking(testkit::RedisServer::start)
                .await
                .map_err(|e| Error::Unexpected(format!("redis start task: {e}")))?
                .map_err(|e| Error::Unexpected(format!("cannot start redis-server: {e:#}")))?;
            let url = redis.url();
            (Some(redis), url)
        }
    };
    for run in 1..=args.runs {
        let node = Node::start(
            &bin,
            "bench-0",
            &redis_url,
            args.connections + 1000,
            &args.node_args,
        )
        .await?;
        tracing::info!(run, pid = node.pid, url = %node.ws_url, "started chat-node");
        let report = bounded_run(args, &node, &exe, run).await;
        if report.is_err() {
            tracing::error!(log = %node.log_tail(), "node log tail");
        }
        node.stop().await?;
        reports.push(report?);
    }
    Ok(reports)
}

async fn bounded_run(args: &IdleArgs, node: &Node, exe: &Path, run: usize) -> Result<RunReport> {
    let limit = Duration::from_secs(args.timeout_seconds);
    tokio::time::timeout(limit, one_run(args, node, exe, run))
        .await
        .map_err(|_| Error::Timeout(format!("run {run} took longer than {limit:?}")))?
}

async fn one_run(args: &IdleArgs, node: &Node, exe: &Path, run: usize) -> Result<RunReport> {
    let settle = Duration::from_secs(args.settle_seconds);
    let base = node
        .wait_until(Duration::from_secs(10), |_| true)
        .await?
        .connections;
    tokio::time::sleep(settle).await;
    let rss_before_kib = read_rss_kib(node.pid).await?;

    let started = Instant::now();
    let mut workers: Vec<WorkerProcess> = Vec::new();
    for (first_index, count) in split_counts(args.connections, args.workers) {
        workers.push(spawn_worker(args, node, exe, first_index, count)?);
    }
    for worker in &mut workers {
        match worker.next_event().await? {
            WorkerEvent::Ready(_) => {}
            other => {
                return Err(Error::Unexpected(format!(
                    "worker said {other:?} instead of ready"
                )));
            }
        }
    }
    let target = base + args.connections as u64;
    node.wait_until(Duration::from_secs(30), |s| s.connections >= target)
        .await?;
    let connect_seconds = started.elapsed().as_secs_f64();
    tokio::time::sleep(settle).await;
    let rss_idle_kib = read_rss_kib(node.pid).await?;
    let still = node.stats().await?.connections;
    if still < target {
        return Err(Error::Unexpected(format!(
            "the node dropped idle connections: {still} of {target} left"
        )));
    }
    tracing::info!(
        run,
        connections = args.connections,
        rss_before_kib,
        rss_idle_kib,
        "measured; closing"
    );

    for worker in &mut workers {
        let _ = worker.tell("close").await;
    }
    for mut worker in workers {
        if let WorkerEvent::Closed { dropped, .. } = worker.next_event().await?
            && dropped > 0
        {
            tracing::warn!(
                dropped,
                "the node closed connections before the end of the run"
            );
        }
        worker.reap().await;
    }
    node.wait_until(Duration::from_secs(30), |s| s.connections <= base)
        .await?;
    tokio::time::sleep(settle).await;
    let rss_closed_kib = read_rss_kib(node.pid).await?;
    Ok(RunReport {
        connections: args.connections,
        rss_before_kib,
        rss_idle_kib,
        rss_closed_kib,
        connect_seconds,
    })
}

fn spawn_worker(
    args: &IdleArgs,
    node: &Node,
    exe: &Path,
    first_index: usize,
    count: usize,
) -> Result<WorkerProcess> {
    let sources: Vec<String> = args.source_addrs.iter().map(ToString::to_string).collect();
    let mut cmd = command_with_max_nofile(exe);
    cmd.arg("worker")
        .args(["--url", &node.ws_url])
        .args(["--count", &count.to_string()])
        .args(["--first-index", &first_index.to_string()])
        .args(["--source-addrs", &sources.join(",")])
        .args(["--concurrency", &args.concurrency.to_string()])
        .args(["--join-rooms", &args.join_rooms.to_string()])
        .args(["--max-seconds", &(args.timeout_seconds + 30).to_string()]);
    WorkerProcess::spawn(cmd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_row_carries_the_per_connection_figure() {
        let report = RunReport {
            connections: 10_000,
            rss_before_kib: 8_000,
            rss_idle_kib: 88_000,
            rss_closed_kib: 20_000,
            connect_seconds: 4.25,
        };
        assert_eq!(report.kib_per_connection(), 8.0);
        let row = report.row(2);
        assert!(row.starts_with("2 "), "{row}");
        assert!(row.trim_end().ends_with("8.00"), "{row}");
        assert_eq!(
            row.split_whitespace().count(),
            RunReport::header().split_whitespace().count()
        );
    }
}
