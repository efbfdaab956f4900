//! The side-by-side idle scenario (`chatcluster-bench idle-compare`): 2 nodes of each system
//! with N idle connections each (keepalive by the servers' own pings: chat-node's WebSocket
//! pings, Engine.IO's ping/pong), memory per connection (RSS growth of the node processes) and
//! CPU while idle (node CPU over an idle window that spans at least one ping interval).

use std::time::Duration;

use crate::adapter::System;
use crate::cluster::Cluster;
use crate::measure::{TICKS_PER_SECOND, per_connection_kib};
use crate::run::Fleet;
use crate::scenario::{CommonArgs, loadavg};
use crate::{Error, Result};

/// Flags of `chatcluster-bench idle-compare`.
#[derive(clap::Args, Debug, Clone)]
pub struct IdleCompareArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Nodes per system.
    #[arg(long, env = "BENCH_NODES", default_value_t = 2)]
    pub nodes: usize,
    /// Idle connections per node.
    #[arg(long, env = "BENCH_PER_NODE", default_value_t = 15_000)]
    pub per_node: usize,
    /// Load-worker processes (each holds at most 9,000).
    #[arg(long, env = "BENCH_WORKERS", default_value_t = 4)]
    pub workers: usize,
    /// Seconds of idle CPU measurement (chat-node pings every 20 s, Engine.IO every 25 s).
    #[arg(long, env = "BENCH_IDLE_SECONDS", default_value_t = 30)]
    pub idle_seconds: u64,
    /// Seconds to let memory settle before each RSS reading.
    #[arg(long, env = "BENCH_SETTLE_SECONDS", default_value_t = 5)]
    pub settle_seconds: u64,
}

/// One system's idle figures.
#[derive(Debug, Clone)]
pub struct IdleRow {
    /// The system.
    pub system: System,
    /// Connections held over all nodes.
    pub connections: usize,
    /// Summed node RSS before (KiB).
    pub rss_before_kib: u64,
    /// Summed node RSS with every connection idle (KiB).
    pub rss_idle_kib: u64,
    /// Node CPU while idle, percent of one core (summed over nodes).
    pub idle_cpu_percent: f64,
    /// Load average at the end.
    pub loadavg: f64,
}

impl IdleRow {
    /// Column names of [`IdleRow::line`].
    pub fn header() -> &'static str {
        "system       connections  rss_before_mib  rss_idle_mib  kib_per_conn  idle_cpu_%  load1"
    }

    /// One table line.
    pub fn line(&self) -> String {
        format!(
            "{:<12} {:>11}  {:>14.1}  {:>12.1}  {:>12.2}  {:>10.2}  {:>5.2}",
            self.system.name(),
            self.connections,
            self.rss_before_kib as f64 / 1024.0,
            self.rss_idle_kib as f64 / 1024.0,
            per_connection_kib(self.rss_before_kib, self.rss_idle_kib, self.connections),
            self.idle_cpu_percent,
            self.loadavg
        )
    }
}

/// Runs the idle scenario for each system.
pub async fn run_idle_compare(args: &IdleCompareArgs) -> Result<Vec<IdleRow>> {
    let mut rows = Vec::new();
    let total = args.nodes * args.per_node;
    for &system in &args.common.systems {
        let spec = args
            .common
            .cluster(system, args.nodes, 0, args.per_node + 1000)?;
        let cluster = Cluster::start(&spec).await?;
        let mut load = args
            .common
            .load(system, cluster.client_urls.clone(), 0, 0, None)?;
        load.no_join = true;
        let mut fleet = Fleet::new(load);
        let settle = Duration::from_secs(args.settle_seconds);
        let limit = Duration::from_secs(args.common.max_minutes * 60);
        let outcome = tokio::time::timeout(limit, async {
            tokio::time::sleep(settle).await;
            let rss_before_kib = cluster.nodes_rss_kib().await?;
            fleet.add(total, args.workers, total).await?;
            tokio::time::sleep(settle).await;
            let rss_idle_kib = cluster.nodes_rss_kib().await?;
            let (n0, _) = cluster.cpu_ticks().await?;
            tokio::time::sleep(Duration::from_secs(args.idle_seconds)).await;
            let (n1, _) = cluster.cpu_ticks().await?;
            Ok::<_, Error>(IdleRow {
                system,
                connections: total,
                rss_before_kib,
                rss_idle_kib,
                idle_cpu_percent: (n1 - n0) as f64 / TICKS_PER_SECOND / args.idle_seconds as f64
                    * 100.0,
                loadavg: loadavg().await,
            })
        })
        .await;
        fleet.close().await;
        cluster.stop().await;
        let row = outcome.map_err(|_| Error::Timeout(format!("{} idle run", system.name())))??;
        if rows.is_empty() {
            println!("{}", IdleRow::header());
        }
        println!("{}", row.line());
        rows.push(row);
    }
    Ok(rows)
}
