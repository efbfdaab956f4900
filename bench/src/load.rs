//! A load worker process (`chatcluster-bench load-worker`, started by [`crate::run`], not by
//! hand). It opens its share of connections (from 127.0.0.x source addresses, through the
//! system's [`Protocol`] adapter), joins each to its room, then runs the steps its controller
//! asks for: send timestamped, sequence-numbered messages at a given rate for a given time,
//! wait until deliveries stop arriving, and report what every reading receiver measured.
//!
//! Lines in (stdin): `step <msgs/s> <millis> <all|first>`, `finish`, `close`. Lines out
//! (stdout): `ready <n>`, `report <json>` per step and for `finish`, `closed <n> dropped <m>`.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWrite, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

use crate::adapter::{Stamp, System};
use crate::client::{Conn, Shared, Tally, now_us, open_all, read_slow_ends};
use crate::tally::{RoomLayout, StepReport, histogram_pairs};
use crate::worker::WorkerEvent;
use crate::{Error, Result};

/// Flags of `chatcluster-bench load-worker`.
#[derive(clap::Args, Debug, Clone)]
pub struct LoadWorkerArgs {
    /// Protocol of the system under test.
    #[arg(long, env = "BENCH_SYSTEM", value_enum, default_value = "chatcluster")]
    pub system: System,
    /// Base URLs (`ws://host:port`); connection `i` uses `urls[i % len]`.
    #[arg(
        long,
        env = "BENCH_URLS",
        value_delimiter = ',',
        default_value = "ws://127.0.0.1:8080"
    )]
    pub urls: Vec<String>,
    /// Connections this worker opens.
    #[arg(long, env = "BENCH_WORKER_COUNT", default_value_t = 100)]
    pub count: usize,
    /// Global index of this worker's first connection.
    #[arg(long, env = "BENCH_WORKER_FIRST_INDEX", default_value_t = 0)]
    pub first_index: usize,
    /// Connections over all workers (for the room layout).
    #[arg(long, env = "BENCH_TOTAL", default_value_t = 100)]
    pub total: usize,
    /// Members per room; 0 = one room for every connection.
    #[arg(long, env = "BENCH_ROOM_SIZE", default_value_t = 10)]
    pub room_size: usize,
    /// Every N-th connection stops reading after joining (a slow consumer); 0 = none.
    #[arg(long, env = "BENCH_SLOW_EVERY", default_value_t = 0)]
    pub slow_every: usize,
    /// Filler bytes added to each message text.
    #[arg(long, env = "BENCH_PAD_BYTES", default_value_t = 64)]
    pub pad_bytes: usize,
    /// Connect only: join no room (the idle scenario).
    #[arg(long, env = "BENCH_NO_JOIN", default_value_t = false)]
    pub no_join: bool,
    /// Source addresses to bind before connecting, used round robin.
    #[arg(
        long,
        env = "BENCH_SOURCE_ADDRS",
        value_delimiter = ',',
        default_value = "127.0.0.1"
    )]
    pub source_addrs: Vec<Ipv4Addr>,
    /// Handshakes in flight at once.
    #[arg(long, env = "BENCH_CONCURRENCY", default_value_t = 64)]
    pub concurrency: usize,
    /// The worker exits after this many seconds, whatever happens.
    #[arg(long, env = "BENCH_WORKER_MAX_SECONDS", default_value_t = 600)]
    pub max_seconds: u64,
}

impl LoadWorkerArgs {
    pub(crate) fn layout(&self) -> RoomLayout {
        RoomLayout {
            total: self.total,
            room_size: self.room_size,
            slow_every: self.slow_every,
        }
    }
}

/// Runs a load worker until `close`, EOF or its deadline.
pub async fn run_load_worker(
    args: &LoadWorkerArgs,
    input: impl AsyncBufRead + Unpin,
    mut output: impl AsyncWrite + Unpin,
) -> Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(args.max_seconds);
    let shared = Arc::new(Shared {
        tally: Mutex::new(Tally::new()),
        received: AtomicU64::new(0),
        dropped: AtomicU64::new(0),
    });
    let mut conns = match tokio::time::timeout_at(deadline, open_all(args, &shared)).await {
        Ok(Ok(conns)) => conns,
        Ok(Err(err)) => return fail(&mut output, err).await,
        Err(_) => return fail(&mut output, Error::Timeout("opening connections".into())).await,
    };
    say(&mut output, &WorkerEvent::Ready(conns.len())).await?;
    let mut lines = input.lines();
    let mut slow = (0, 0);
    loop {
        let line = match tokio::time::timeout_at(deadline, lines.next_line()).await {
            Ok(Ok(Some(line))) => line,
            _ => break,
        };
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["step", rate, millis, who] => {
                let rate: f64 = rate.parse().unwrap_or(0.0);
                let millis: u64 = millis.parse().unwrap_or(0);
                let first_only = *who == "first";
                let skipped = send_for(
                    args,
                    &mut conns,
                    rate,
                    Duration::from_millis(millis),
                    first_only,
                )
                .await;
                drain(&shared, deadline).await;
                let mut report = take_report(&shared, &mut conns, slow);
                report.skipped = skipped;
                let json = serde_json::to_string(&report)
                    .map_err(|e| Error::Unexpected(format!("report JSON: {e}")))?;
                say(&mut output, &WorkerEvent::Report(json)).await?;
            }
            ["finish"] => {
                slow = read_slow_ends(&mut conns).await;
                let report = take_report(&shared, &mut conns, slow);
                let json = serde_json::to_string(&report)
                    .map_err(|e| Error::Unexpected(format!("report JSON: {e}")))?;
                say(&mut output, &WorkerEvent::Report(json)).await?;
            }
            ["close"] => break,
            _ => tracing::warn!(%line, "unknown command"),
        }
    }
    let total = conns.len();
    let dropped = shared.dropped.load(Ordering::Relaxed) as usize;
    for conn in &conns {
        let _ = conn.out.try_send(Message::Close(None));
    }
    drop(conns);
    say(
        &mut output,
        &WorkerEvent::Closed {
            closed: total.saturating_sub(dropped),
            dropped,
        },
    )
    .await
}

async fn fail(output: &mut (impl AsyncWrite + Unpin), err: Error) -> Result<()> {
    say(output, &WorkerEvent::Failed(err.to_string())).await?;
    Err(err)
}

async fn say(output: &mut (impl AsyncWrite + Unpin), event: &WorkerEvent) -> Result<()> {
    let line = format!("{}\n", event.to_line());
    output
        .write_all(line.as_bytes())
        .await
        .map_err(Error::io("write to the controller"))?;
    output
        .flush()
        .await
        .map_err(Error::io("write to the controller"))
}

/// Sends `rate` messages per second for `length`, round robin over this worker's senders
/// (reading connections still open; with `first_only`, global connection 0 alone).
async fn send_for(
    args: &LoadWorkerArgs,
    conns: &mut [Conn],
    rate: f64,
    length: Duration,
    first_only: bool,
) -> u64 {
    let senders: Vec<usize> = (0..conns.len())
        .filter(|&i| !conns[i].slow && (!first_only || conns[i].index == 0))
        .collect();
    if senders.is_empty() || rate <= 0.0 {
        tokio::time::sleep(length).await;
        return 0;
    }
    let protocol = args.system.protocol();
    let start = Instant::now();
    let mut ticker = tokio::time::interval(Duration::from_millis(5));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let (mut done, mut next, mut skipped) = (0u64, 0usize, 0u64);
    loop {
        ticker.tick().await;
        let elapsed = start.elapsed().min(length);
        let due = (rate * elapsed.as_secs_f64()) as u64;
        while done < due {
            let conn = &mut conns[senders[next % senders.len()]];
            next += 1;
            done += 1;
            if !conn.alive.load(Ordering::Relaxed) {
                continue;
            }
            let stamp = Stamp {
                sender: conn.index as u32,
                seq: conn.next_seq,
                sent_us: now_us(),
            };
            let frame = protocol.send(&conn.room, done, &stamp.encode(args.pad_bytes));
            if conn.out.try_send(Message::text(frame)).is_ok() {
                conn.next_seq += 1;
                conn.sent_in_step += 1;
            } else {
                skipped += 1;
            }
        }
        if elapsed >= length {
            break;
        }
    }
    skipped
}

/// Waits until no delivery arrived for 500 ms (at most 15 s, never past the deadline).
async fn drain(shared: &Shared, deadline: tokio::time::Instant) {
    let limit = (tokio::time::Instant::now() + Duration::from_secs(15)).min(deadline);
    let mut last = shared.received.load(Ordering::Relaxed);
    let mut quiet_since = tokio::time::Instant::now();
    while tokio::time::Instant::now() < limit {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = shared.received.load(Ordering::Relaxed);
        if now != last {
            last = now;
            quiet_since = tokio::time::Instant::now();
        } else if quiet_since.elapsed() >= Duration::from_millis(500) {
            return;
        }
    }
}

fn take_report(shared: &Shared, conns: &mut [Conn], slow: (u64, u64)) -> StepReport {
    let tally = std::mem::replace(
        &mut *shared.tally.lock().unwrap_or_else(|p| p.into_inner()),
        Tally::new(),
    );
    let sent = conns
        .iter_mut()
        .filter(|c| c.sent_in_step > 0)
        .map(|c| (c.index as u32, std::mem::take(&mut c.sent_in_step)))
        .collect();
    StepReport {
        sent,
        skipped: 0,
        received: tally.received,
        duplicates: tally.duplicates,
        latency_us: histogram_pairs(&tally.latency),
        errors: tally.errors,
        dropped: shared.dropped.load(Ordering::Relaxed),
        slow_closed: slow.0,
        slow_evicted: slow.1,
    }
}
