//! The controller side of the load generator: a [`Fleet`] of load-worker processes
//! (re-executions of this binary, each under the open-files cap, optionally pinned to CPUs with
//! `taskset`) that together hold the clients, and runs steps on all of them at once, merging
//! their reports into [`StepTotals`].

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::adapter::System;
use crate::measure::split_counts;
use crate::node::command_with_max_nofile;
use crate::tally::{RoomLayout, StepReport, StepTotals};
use crate::worker::{WorkerEvent, WorkerProcess};
use crate::{Error, Result};

/// Connections one load worker holds at most (open files are capped at 20,000 per process).
pub const MAX_PER_LOAD_WORKER: usize = 9000;

/// What a batch of clients looks like.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    /// Protocol of the system under test.
    pub system: System,
    /// Base URLs (`ws://host:port`); connection `i` uses `urls[i % len]`.
    pub urls: Vec<String>,
    /// Members per room (0 = one room for all).
    pub room_size: usize,
    /// Every N-th connection is a slow consumer (0 = none).
    pub slow_every: usize,
    /// Filler bytes per message.
    pub pad_bytes: usize,
    /// Clients connect without joining a room (idle scenario).
    pub no_join: bool,
    /// Client source addresses.
    pub source_addrs: Vec<Ipv4Addr>,
    /// Handshakes in flight per worker.
    pub concurrency: usize,
    /// Worker processes' own time limit.
    pub max_seconds: u64,
    /// This binary (the test harness passes the built `chatcluster-bench`).
    pub exe: PathBuf,
    /// CPU list for `taskset -c` (for example `1`), or none.
    pub cpus: Option<String>,
}

/// Load workers holding clients `0..total`, added in batches.
pub struct Fleet {
    spec: LoadSpec,
    workers: Vec<(WorkerProcess, usize, usize)>,
    total: usize,
}

impl Fleet {
    /// An empty fleet.
    pub fn new(spec: LoadSpec) -> Self {
        Self {
            spec,
            workers: Vec::new(),
            total: 0,
        }
    }

    /// Clients held.
    pub fn total(&self) -> usize {
        self.total
    }

    /// The room layout of the clients held.
    pub fn layout(&self, total: usize) -> RoomLayout {
        RoomLayout {
            total,
            room_size: self.spec.room_size,
            slow_every: self.spec.slow_every,
        }
    }

    /// Opens `count` more clients over `processes` new workers (the total is known in advance so
    /// the room layout does not change: `planned_total`), and waits until all are joined.
    pub async fn add(
        &mut self,
        count: usize,
        processes: usize,
        planned_total: usize,
    ) -> Result<()> {
        let parts = split_counts(count, processes);
        if let Some((_, n)) = parts.iter().find(|(_, n)| *n > MAX_PER_LOAD_WORKER) {
            return Err(Error::Invalid(format!(
                "{n} connections in one worker exceed {MAX_PER_LOAD_WORKER}; use more workers"
            )));
        }
        let mut started = Vec::new();
        for (offset, n) in parts {
            let first = self.total + offset;
            let worker = WorkerProcess::spawn(self.command(first, n, planned_total))?;
            started.push((worker, first, n));
        }
        let limit = Duration::from_secs(120);
        for (worker, _, _) in &mut started {
            match tokio::time::timeout(limit, worker.next_event()).await {
                Ok(Ok(WorkerEvent::Ready(_))) => {}
                Ok(Ok(other)) => {
                    return Err(Error::Unexpected(format!("worker said {other:?}")));
                }
                Ok(Err(err)) => return Err(err),
                Err(_) => return Err(Error::Timeout("workers opening connections".into())),
            }
        }
        self.total += count;
        self.workers.extend(started);
        Ok(())
    }

    fn command(&self, first: usize, count: usize, total: usize) -> tokio::process::Command {
        let s = &self.spec;
        let mut cmd = match &s.cpus {
            Some(cpus) => {
                let mut cmd = command_with_max_nofile(Path::new("taskset"));
                cmd.args(["-c", cpus]).arg(&s.exe);
                cmd
            }
            None => command_with_max_nofile(&s.exe),
        };
        let sources: Vec<String> = s.source_addrs.iter().map(ToString::to_string).collect();
        cmd.arg("load-worker")
            .args(["--system", s.system.name()])
            .args(["--urls", &s.urls.join(",")])
            .args(["--count", &count.to_string()])
            .args(["--first-index", &first.to_string()])
            .args(["--total", &total.to_string()])
            .args(["--room-size", &s.room_size.to_string()])
            .args(["--slow-every", &s.slow_every.to_string()])
            .args(["--pad-bytes", &s.pad_bytes.to_string()])
            .args(["--source-addrs", &sources.join(",")])
            .args(["--concurrency", &s.concurrency.to_string()])
            .args(["--max-seconds", &s.max_seconds.to_string()]);
        if s.no_join {
            cmd.arg("--no-join");
        }
        cmd
    }

    /// Sends `rate` messages per second in total for `length` (from every reading client, or
    /// only from client 0 with `first_only`), waits for the deliveries and merges the reports.
    pub async fn step(
        &mut self,
        rate: f64,
        length: Duration,
        first_only: bool,
    ) -> Result<StepTotals> {
        let who = if first_only { "first" } else { "all" };
        let total = self.total.max(1) as f64;
        for (worker, first, n) in &mut self.workers {
            let share = if first_only {
                if *first == 0 { rate } else { 0.0 }
            } else {
                rate * *n as f64 / total
            };
            worker
                .tell(&format!("step {share:.3} {} {who}", length.as_millis()))
                .await?;
        }
        self.collect(length + Duration::from_secs(60)).await
    }

    /// Asks every worker for its final report (slow consumers' fates included).
    pub async fn finish(&mut self) -> Result<StepTotals> {
        for (worker, _, _) in &mut self.workers {
            worker.tell("finish").await?;
        }
        self.collect(Duration::from_secs(60)).await
    }

    async fn collect(&mut self, limit: Duration) -> Result<StepTotals> {
        let mut reports = Vec::new();
        for (worker, _, _) in &mut self.workers {
            let event = tokio::time::timeout(limit, worker.next_event())
                .await
                .map_err(|_| Error::Timeout("waiting for a worker's report".into()))??;
            let WorkerEvent::Report(json) = event else {
                return Err(Error::Unexpected(format!(
                    "expected a report, got {event:?}"
                )));
            };
            let report: StepReport = serde_json::from_str(&json)
                .map_err(|e| Error::Unexpected(format!("bad worker report: {e}")))?;
            reports.push(report);
        }
        Ok(StepTotals::merge(&self.layout(self.total), &reports))
    }

    /// Closes every client and reaps the workers.
    pub async fn close(mut self) {
        for (worker, _, _) in &mut self.workers {
            let _ = worker.tell("close").await;
        }
        for (mut worker, _, _) in self.workers {
            let _ = tokio::time::timeout(Duration::from_secs(10), worker.next_event()).await;
            worker.reap().await;
        }
    }
}
