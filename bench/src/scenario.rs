//! The side-by-side scenarios (`chatcluster-bench broadcast|chat`): the same load from the same
//! load generator against chatcluster and against the Socket.IO peer, one table row per step
//! and a summary row per system, and an SVG plot of latency against load.
//!
//! - broadcast (the websocket-shootout method): one node pinned to one CPU, load workers to the
//!   other; clients are added a batch at a time, all in one room, and client 0 broadcasts to it
//!   at each step; stop when p95 exceeds the bound; report the largest count under it.
//! - chat: N nodes behind HAProxy processes, clients in rooms of 10, every client sends, the
//!   total send rate ramped (until two steps in a row fail); report the highest deliveries/s
//!   with p99 under the bound and no loss, and CPU-seconds per million deliveries of the nodes
//!   plus Redis. With `--slow-every 100`, 1% of the clients stop reading (the slow-consumer
//!   scenario).

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

use crate::adapter::System;
use crate::cluster::{Cluster, ClusterSpec};
use crate::measure::{TICKS_PER_SECOND, cpu_seconds_per_million};
use crate::run::{Fleet, LoadSpec};
use crate::svg::{Series, latency_plot};
use crate::tally::StepTotals;
use crate::{Error, Result};

/// Flags every scenario shares.
#[derive(clap::Args, Debug, Clone)]
pub struct CommonArgs {
    /// Systems to measure, in order.
    #[arg(
        long,
        env = "BENCH_SYSTEMS",
        value_enum,
        value_delimiter = ',',
        default_value = "chatcluster,socketio"
    )]
    pub systems: Vec<System>,
    /// chat-node binary (default: `chat-node` next to this binary; build it with
    /// `cargo build --release -p chat-node`).
    #[arg(long, env = "BENCH_NODE_BIN")]
    pub node_bin: Option<PathBuf>,
    /// Extra chat-node argument, repeatable.
    #[arg(
        long = "node-arg",
        env = "BENCH_NODE_ARGS",
        value_delimiter = ' ',
        allow_hyphen_values = true
    )]
    pub node_args: Vec<String>,
    /// Directory of the Socket.IO peer (run scripts/bench-setup.sh first).
    #[arg(long, env = "BENCH_SOCKETIO_DIR", default_value = "bench/socketio")]
    pub socketio_dir: PathBuf,
    /// Client source addresses, used round robin.
    #[arg(
        long,
        env = "BENCH_SOURCE_ADDRS",
        value_delimiter = ',',
        default_value = "127.0.0.2,127.0.0.3,127.0.0.4,127.0.0.5,127.0.0.6,127.0.0.7"
    )]
    pub source_addrs: Vec<Ipv4Addr>,
    /// Handshakes in flight per load worker.
    #[arg(long, env = "BENCH_CONCURRENCY", default_value_t = 64)]
    pub concurrency: usize,
    /// Filler bytes per message text.
    #[arg(long, env = "BENCH_PAD_BYTES", default_value_t = 64)]
    pub pad_bytes: usize,
    /// Write the latency-against-load plot here (SVG).
    #[arg(long, env = "BENCH_SVG")]
    pub svg: Option<PathBuf>,
    /// Upper bound on one system's whole run.
    #[arg(long, env = "BENCH_MAX_MINUTES", default_value_t = 10)]
    pub max_minutes: u64,
}

impl CommonArgs {
    pub(crate) fn cluster(
        &self,
        system: System,
        nodes: usize,
        proxies: usize,
        capacity: usize,
    ) -> Result<ClusterSpec> {
        let exe = std::env::current_exe().map_err(Error::io("find this executable"))?;
        Ok(ClusterSpec {
            system,
            nodes,
            proxies,
            node_bin: self
                .node_bin
                .clone()
                .unwrap_or_else(|| exe.with_file_name("chat-node")),
            socketio_dir: self.socketio_dir.clone(),
            node_args: self.node_args.clone(),
            capacity,
        })
    }

    pub(crate) fn load(
        &self,
        system: System,
        urls: Vec<String>,
        room_size: usize,
        slow_every: usize,
        cpus: Option<String>,
    ) -> Result<LoadSpec> {
        Ok(LoadSpec {
            system,
            urls,
            room_size,
            slow_every,
            pad_bytes: self.pad_bytes,
            no_join: false,
            source_addrs: self.source_addrs.clone(),
            concurrency: self.concurrency,
            max_seconds: self.max_minutes * 60 + 60,
            exe: std::env::current_exe().map_err(Error::io("find this executable"))?,
            cpus,
        })
    }
}

/// Flags of `chatcluster-bench broadcast`.
#[derive(clap::Args, Debug, Clone)]
pub struct BroadcastArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Clients added per step.
    #[arg(long, env = "BENCH_STEP_CLIENTS", default_value_t = 1000)]
    pub step_clients: usize,
    /// Largest client count tried.
    #[arg(long, env = "BENCH_MAX_CLIENTS", default_value_t = 30_000)]
    pub max_clients: usize,
    /// Stop when p95 delivery latency exceeds this (ms).
    #[arg(long, env = "BENCH_P95_MS", default_value_t = 250.0)]
    pub p95_ms: f64,
    /// Broadcasts per step.
    #[arg(long, env = "BENCH_BROADCASTS", default_value_t = 20)]
    pub broadcasts: u32,
    /// Broadcasts per second within a step.
    #[arg(long, env = "BENCH_BROADCAST_RATE", default_value_t = 10.0)]
    pub broadcast_rate: f64,
    /// CPU the node is pinned to (`taskset`).
    #[arg(long, env = "BENCH_NODE_CPU", default_value = "0")]
    pub node_cpu: String,
    /// CPUs the load workers are pinned to.
    #[arg(long, env = "BENCH_LOAD_CPUS", default_value = "1")]
    pub load_cpus: String,
}

/// Flags of `chatcluster-bench chat`.
#[derive(clap::Args, Debug, Clone)]
pub struct ChatArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Clients.
    #[arg(long, env = "BENCH_CLIENTS", default_value_t = 10_000)]
    pub clients: usize,
    /// Members per room.
    #[arg(long, env = "BENCH_ROOM_SIZE", default_value_t = 10)]
    pub room_size: usize,
    /// Server nodes.
    #[arg(long, env = "BENCH_NODES", default_value_t = 2)]
    pub nodes: usize,
    /// HAProxy processes in front (each carries clients / proxies; keep that under 8,900).
    #[arg(long, env = "BENCH_PROXIES", default_value_t = 2)]
    pub proxies: usize,
    /// Load-worker processes.
    #[arg(long, env = "BENCH_WORKERS", default_value_t = 4)]
    pub workers: usize,
    /// Total send rates (messages/s) to step through; deliveries/s = rate × room size.
    #[arg(
        long,
        env = "BENCH_RATES",
        value_delimiter = ',',
        default_value = "1000,2000,3000,4000,5000,6000,8000,10000,12000,15000"
    )]
    pub rates: Vec<f64>,
    /// Seconds of sending per step.
    #[arg(long, env = "BENCH_STEP_SECONDS", default_value_t = 5)]
    pub step_seconds: u64,
    /// A step passes with p99 at or under this (ms), no loss and no duplicate.
    #[arg(long, env = "BENCH_P99_MS", default_value_t = 50.0)]
    pub p99_ms: f64,
    /// Every N-th client stops reading after joining (100 = 1% slow consumers); 0 = none.
    #[arg(long, env = "BENCH_SLOW_EVERY", default_value_t = 0)]
    pub slow_every: usize,
    /// Run every rate even after two steps in a row fail (for the slow-consumer scenario).
    #[arg(long, env = "BENCH_KEEP_GOING", default_value_t = false)]
    pub keep_going: bool,
}

/// One measured step of a scenario.
#[derive(Debug, Clone)]
pub struct StepRow {
    /// Clients connected.
    pub clients: usize,
    /// Target send rate (messages/s).
    pub rate: f64,
    /// What the workers measured.
    pub totals: StepTotals,
    /// Distinct deliveries per second of sending time.
    pub deliveries_per_s: f64,
    /// Node CPU ticks used during the step.
    pub node_ticks: u64,
    /// Redis CPU ticks used during the step.
    pub redis_ticks: u64,
    /// Summed node RSS after the step (KiB).
    pub rss_kib: u64,
    /// 1-minute load average when the step ended.
    pub loadavg: f64,
}

impl StepRow {
    /// Column names of [`StepRow::line`].
    pub fn header() -> &'static str {
        "system       clients  rate/s  sent     deliv/s   p50_ms  p95_ms  p99_ms  max_ms  lost  dup  err  drop  skip  node_cpu_s  redis_cpu_s  cpu_s/M  rss_mib  load1"
    }

    /// One table line.
    pub fn line(&self, system: System) -> String {
        let t = &self.totals;
        let delivered = t.received - t.duplicates;
        format!(
            "{:<12} {:>7}  {:>6.0}  {:>7}  {:>8.0}  {:>6.1}  {:>6.1}  {:>6.1}  {:>6.1}  {:>4}  {:>3}  {:>3}  {:>4}  {:>4}  {:>10.2}  {:>11.2}  {:>7.2}  {:>7.1}  {:>5.2}",
            system.name(),
            self.clients,
            self.rate,
            t.sent,
            self.deliveries_per_s,
            t.percentile_ms(0.5),
            t.percentile_ms(0.95),
            t.percentile_ms(0.99),
            t.max_ms(),
            t.lost(),
            t.duplicates,
            t.errors,
            t.dropped,
            t.skipped,
            self.node_ticks as f64 / TICKS_PER_SECOND,
            self.redis_ticks as f64 / TICKS_PER_SECOND,
            cpu_seconds_per_million(self.node_ticks + self.redis_ticks, delivered),
            self.rss_kib as f64 / 1024.0,
            self.loadavg
        )
    }
}

/// The 1-minute load average.
pub async fn loadavg() -> f64 {
    tokio::fs::read_to_string("/proc/loadavg")
        .await
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN)
}

async fn measured_step(
    cluster: &Cluster,
    fleet: &mut Fleet,
    rate: f64,
    length: Duration,
    first_only: bool,
) -> Result<StepRow> {
    let waited = cluster.wait_quiet(Duration::from_secs(60)).await?;
    tracing::info!(waited_s = waited, "servers quiet; stepping");
    let (n0, r0) = cluster.cpu_ticks().await?;
    let totals = fleet.step(rate, length, first_only).await?;
    let (n1, r1) = cluster.cpu_ticks().await?;
    let delivered = totals.received - totals.duplicates;
    Ok(StepRow {
        clients: fleet.total(),
        rate,
        deliveries_per_s: delivered as f64 / length.as_secs_f64(),
        totals,
        node_ticks: n1 - n0,
        redis_ticks: r1 - r0,
        rss_kib: cluster.nodes_rss_kib().await?,
        loadavg: loadavg().await,
    })
}

/// Runs the broadcast scenario for each system; prints steps and a summary; returns the rows.
pub async fn run_broadcast(args: &BroadcastArgs) -> Result<Vec<(System, Vec<StepRow>)>> {
    let mut all = Vec::new();
    println!("{}", StepRow::header());
    for &system in &args.common.systems {
        let spec = args.common.cluster(system, 1, 0, args.max_clients + 1000)?;
        let cluster = Cluster::start(&spec).await?;
        cluster.pin_nodes(&args.node_cpu).await?;
        let load = args.common.load(
            system,
            cluster.client_urls.clone(),
            0,
            0,
            Some(args.load_cpus.clone()),
        )?;
        let mut fleet = Fleet::new(load);
        let limit = Duration::from_secs(args.common.max_minutes * 60);
        let mut rows = Vec::new();
        let outcome = tokio::time::timeout(limit, async {
            while fleet.total() + args.step_clients <= args.max_clients {
                let add = args.step_clients;
                let workers = add.div_ceil(crate::run::MAX_PER_LOAD_WORKER / 2).max(1);
                fleet.add(add, workers, args.max_clients).await?;
                let length =
                    Duration::from_secs_f64(f64::from(args.broadcasts) / args.broadcast_rate);
                let row =
                    measured_step(&cluster, &mut fleet, args.broadcast_rate, length, true).await?;
                println!("{}", row.line(system));
                let over = row.totals.percentile_ms(0.95) > args.p95_ms || row.totals.lost() > 0;
                rows.push(row);
                if over {
                    break;
                }
            }
            Ok::<_, Error>(())
        })
        .await;
        fleet.close().await;
        cluster.stop().await;
        match outcome {
            Ok(Ok(())) => {}
            Ok(Err(err)) => {
                tracing::error!(system = system.name(), %err, "broadcast run ended early")
            }
            Err(_) => tracing::error!(system = system.name(), "broadcast run hit --max-minutes"),
        }
        all.push((system, rows));
    }
    println!("\nsystem       largest_clients_with_p95<={}ms", args.p95_ms);
    for (system, rows) in &all {
        let best = rows
            .iter()
            .filter(|r| r.totals.percentile_ms(0.95) <= args.p95_ms && r.totals.lost() == 0)
            .map(|r| r.clients)
            .max()
            .unwrap_or(0);
        println!("{:<12} {best}", system.name());
    }
    write_plot(
        &args.common,
        "Broadcast: p95 delivery latency against clients (one node, one core)",
        "clients",
        "p95 latency (ms)",
        &all,
        |r| (r.clients as f64, r.totals.percentile_ms(0.95)),
        args.p95_ms,
    )?;
    Ok(all)
}

/// Runs the chat (or slow-consumer) scenario for each system.
pub async fn run_chat(args: &ChatArgs) -> Result<Vec<(System, Vec<StepRow>)>> {
    let mut all = Vec::new();
    println!("{}", StepRow::header());
    for &system in &args.common.systems {
        let spec = args
            .common
            .cluster(system, args.nodes, args.proxies, args.clients + 1000)?;
        let cluster = Cluster::start(&spec).await?;
        let load = args.common.load(
            system,
            cluster.client_urls.clone(),
            args.room_size,
            args.slow_every,
            None,
        )?;
        let mut fleet = Fleet::new(load);
        let limit = Duration::from_secs(args.common.max_minutes * 60);
        let mut rows = Vec::new();
        let outcome = tokio::time::timeout(limit, async {
            fleet.add(args.clients, args.workers, args.clients).await?;
            // One failing step on a shared machine can be a blip; two in a row end the ramp.
            let mut failed_in_a_row = 0;
            for &rate in &args.rates {
                let row = measured_step(&cluster, &mut fleet, rate, Duration::from_secs(args.step_seconds), false).await?;
                println!("{}", row.line(system));
                failed_in_a_row = if passes(&row, args.p99_ms) { 0 } else { failed_in_a_row + 1 };
                rows.push(row);
                if failed_in_a_row >= 2 && !args.keep_going {
                    break;
                }
            }
            if args.slow_every > 0 {
                let end = fleet.finish().await?;
                println!(
                    "{:<12} slow consumers: {} of {} closed by the server, {} with 1008; node RSS now {:.1} MiB",
                    system.name(),
                    end.slow_closed,
                    args.clients.checked_div(args.slow_every).unwrap_or(0),
                    end.slow_evicted,
                    cluster.nodes_rss_kib().await? as f64 / 1024.0
                );
            }
            Ok::<_, Error>(())
        })
        .await;
        fleet.close().await;
        cluster.stop().await;
        match outcome {
            Ok(Ok(())) => {}
            Ok(Err(err)) => tracing::error!(system = system.name(), %err, "chat run ended early"),
            Err(_) => tracing::error!(system = system.name(), "chat run hit --max-minutes"),
        }
        all.push((system, rows));
    }
    println!(
        "\nsystem       best_deliveries/s(p99<={}ms,0 lost)  cpu_s/M_at_best",
        args.p99_ms
    );
    for (system, rows) in &all {
        let best = rows
            .iter()
            .filter(|r| passes(r, args.p99_ms))
            .max_by(|a, b| a.deliveries_per_s.total_cmp(&b.deliveries_per_s));
        match best {
            Some(r) => {
                let delivered = r.totals.received - r.totals.duplicates;
                println!(
                    "{:<12} {:>8.0}  {:.2}",
                    system.name(),
                    r.deliveries_per_s,
                    cpu_seconds_per_million(r.node_ticks + r.redis_ticks, delivered)
                );
            }
            None => println!("{:<12} no step passed", system.name()),
        }
    }
    write_plot(
        &args.common,
        "Chat: p99 delivery latency against deliveries/s (2 nodes, HAProxy)",
        "deliveries/s",
        "p99 latency (ms)",
        &all,
        |r| (r.deliveries_per_s, r.totals.percentile_ms(0.99)),
        args.p99_ms,
    )?;
    Ok(all)
}

fn passes(row: &StepRow, p99_ms: f64) -> bool {
    row.totals.percentile_ms(0.99) <= p99_ms && row.totals.lost() == 0 && row.totals.duplicates == 0
}

fn write_plot(
    common: &CommonArgs,
    title: &str,
    x: &str,
    y: &str,
    all: &[(System, Vec<StepRow>)],
    point: impl Fn(&StepRow) -> (f64, f64),
    bound: f64,
) -> Result<()> {
    let Some(path) = &common.svg else {
        return Ok(());
    };
    let series: Vec<Series> = all
        .iter()
        .map(|(s, rows)| (s.name().to_string(), rows.iter().map(&point).collect()))
        .collect();
    std::fs::write(path, latency_plot(title, x, y, &series, bound, bound * 4.0))
        .map_err(Error::io(format!("write {}", path.display())))
}
