//! A load worker process (`chatcluster-bench load-worker`, started by [`crate::run`], not by
//! hand). It opens its share of connections (from 127.0.0.x source addresses, through the
//! system's [`Protocol`] adapter), joins each to its room, then runs the steps its controller
//! asks for: send timestamped, sequence-numbered messages at a given rate for a given time,
//! wait until deliveries stop arriving, and report what every reading receiver measured.
//!
//! Lines in (stdin): `step <msgs/s> <millis> <all|first>`, `finish`, `close`. Lines out
//! (stdout): `ready <n>`, `report <json>` per step and for `finish`, `closed <n> dropped <m>`.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::adapter::{Inbound, Protocol, Stamp, System};
use crate::measure::source_for;
use crate::node::split_url;
use crate::tally::{RoomLayout, SeqSet, StepReport, histogram_pairs, new_histogram};
use crate::worker::WorkerEvent;
use crate::{Error, Result};

type Ws = WebSocketStream<TcpStream>;

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
    fn layout(&self) -> RoomLayout {
        RoomLayout {
            total: self.total,
            room_size: self.room_size,
            slow_every: self.slow_every,
        }
    }
}

/// Measurements shared by the reader tasks of one worker.
struct Shared {
    tally: Mutex<Tally>,
    received: AtomicU64,
    dropped: AtomicU64,
}

struct Tally {
    latency: Histogram<u64>,
    received: u64,
    duplicates: u64,
    errors: u64,
}

impl Tally {
    fn new() -> Self {
        Self {
            latency: new_histogram(),
            received: 0,
            duplicates: 0,
            errors: 0,
        }
    }
}

/// One open connection, as the sending loop sees it.
struct Conn {
    index: usize,
    room: String,
    out: mpsc::Sender<Message>,
    alive: Arc<AtomicBool>,
    next_seq: u32,
    sent_in_step: u32,
    /// A slow consumer's unread stream, read only at `finish`.
    unread: Option<SplitStream<Ws>>,
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
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
        .filter(|&i| conns[i].unread.is_none() && (!first_only || conns[i].index == 0))
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

/// Reads what the slow consumers left unread (bounded to 10 s overall) to learn whether the
/// server closed them, and with which code. Returns (closed, closed with 1008).
async fn read_slow_ends(conns: &mut [Conn]) -> (u64, u64) {
    let reads = conns
        .iter_mut()
        .filter_map(|c| c.unread.take())
        .map(|mut stream| async move {
            let read = async {
                while let Some(frame) = stream.next().await {
                    match frame {
                        Ok(Message::Close(Some(close))) => {
                            return (true, close.code == CloseCode::Policy);
                        }
                        Ok(Message::Close(None)) | Err(_) => return (true, false),
                        Ok(_) => {}
                    }
                }
                (true, false)
            };
            // A slow consumer still open has nothing more to read after its buffered frames.
            tokio::time::timeout(Duration::from_secs(3), read)
                .await
                .unwrap_or((false, false))
        });
    let ends: Vec<(bool, bool)> = tokio::time::timeout(
        Duration::from_secs(10),
        futures_util::future::join_all(reads),
    )
    .await
    .unwrap_or_default();
    (
        ends.iter().filter(|e| e.0).count() as u64,
        ends.iter().filter(|e| e.1).count() as u64,
    )
}

async fn open_all(args: &LoadWorkerArgs, shared: &Arc<Shared>) -> Result<Vec<Conn>> {
    let mut addrs = Vec::new();
    for url in &args.urls {
        let (host, _) =
            split_url(url).ok_or_else(|| Error::Invalid(format!("{url} is not ws://host:port")))?;
        let addr = tokio::net::lookup_host(&host)
            .await
            .map_err(Error::io(format!("resolve {host}")))?
            .find(SocketAddr::is_ipv4)
            .ok_or_else(|| Error::Invalid(format!("{host} has no IPv4 address")))?;
        addrs.push((host, addr));
    }
    let layout = args.layout();
    let opened: Vec<Result<Conn>> = futures_util::stream::iter(0..args.count)
        .map(|i| {
            let index = args.first_index + i;
            let (host, addr) = addrs[index % addrs.len()].clone();
            let shared = shared.clone();
            async move {
                let mut attempt = 0;
                loop {
                    match open_one(args, &layout, &host, addr, index, &shared).await {
                        Ok(conn) => return Ok(conn),
                        Err(err) if attempt < 3 => {
                            tracing::debug!(index, %err, "connection failed; retrying");
                            attempt += 1;
                            tokio::time::sleep(Duration::from_millis(250 << attempt)).await;
                        }
                        Err(err) => return Err(err),
                    }
                }
            }
        })
        .buffer_unordered(args.concurrency.max(1))
        .collect()
        .await;
    let mut conns = opened.into_iter().collect::<Result<Vec<_>>>()?;
    conns.sort_by_key(|c| c.index);
    Ok(conns)
}

async fn open_one(
    args: &LoadWorkerArgs,
    layout: &RoomLayout,
    host: &str,
    addr: SocketAddr,
    index: usize,
    shared: &Arc<Shared>,
) -> Result<Conn> {
    let protocol = args.system.protocol();
    let slow = layout.is_slow(index);
    let source = source_for(&args.source_addrs, index);
    let socket = TcpSocket::new_v4().map_err(Error::io("create a socket"))?;
    if slow {
        // A small receive window makes the server's side back up quickly once we stop reading.
        let _ = socket.set_recv_buffer_size(4096);
    }
    socket
        .bind(SocketAddr::new(source.into(), 0))
        .map_err(Error::io(format!("bind source address {source}")))?;
    let stream = socket
        .connect(addr)
        .await
        .map_err(Error::io(format!("connect {source} -> {addr}")))?;
    let _ = stream.set_nodelay(true);
    let url = format!("ws://{host}{}", protocol.path(&format!("c-{index}")));
    let config = WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0);
    let (mut ws, _) =
        tokio_tungstenite::client_async_with_config(url.as_str(), stream, Some(config))
            .await
            .map_err(|e| Error::WebSocket {
                url: url.clone(),
                source: Box::new(e),
            })?;
    let room = layout.room_name(index);
    await_event(&mut ws, protocol, |e| *e == Inbound::Ready).await?;
    send_text(&mut ws, protocol.join(&room)).await?;
    await_event(
        &mut ws,
        protocol,
        |e| matches!(e, Inbound::Joined(r) if *r == room),
    )
    .await?;

    let (sink, stream) = ws.split();
    let (out, rx) = mpsc::channel(256);
    let alive = Arc::new(AtomicBool::new(true));
    tokio::spawn(write_loop(sink, rx));
    let unread = if slow {
        Some(stream)
    } else {
        tokio::spawn(read_loop(
            stream,
            protocol,
            out.clone(),
            shared.clone(),
            alive.clone(),
        ));
        None
    };
    Ok(Conn {
        index,
        room,
        out,
        alive,
        next_seq: 0,
        sent_in_step: 0,
        unread,
    })
}

async fn send_text(ws: &mut Ws, text: String) -> Result<()> {
    ws.send(Message::text(text))
        .await
        .map_err(|e| Error::Unexpected(format!("send during setup: {e}")))
}

/// Reads setup frames until `done` accepts one (10 s bound), answering what the protocol
/// requires (Engine.IO open and ping).
async fn await_event(
    ws: &mut Ws,
    protocol: &dyn Protocol,
    done: impl Fn(&Inbound) -> bool,
) -> Result<()> {
    let wait = async {
        while let Some(frame) = ws.next().await {
            let frame = frame.map_err(|e| Error::Unexpected(format!("during setup: {e}")))?;
            let Message::Text(text) = frame else { continue };
            let event = protocol.classify(text.as_str());
            if done(&event) {
                return Ok(());
            }
            match event {
                Inbound::Reply(reply) => send_text(ws, reply).await?,
                Inbound::Error(why) => {
                    return Err(Error::Unexpected(format!("during setup: {why}")));
                }
                _ => {}
            }
        }
        Err(Error::Unexpected("closed during setup".into()))
    };
    tokio::time::timeout(Duration::from_secs(10), wait)
        .await
        .map_err(|_| Error::Timeout("setup (welcome/join) took over 10 s".into()))?
}

async fn write_loop(mut sink: SplitSink<Ws, Message>, mut rx: mpsc::Receiver<Message>) {
    while let Some(message) = rx.recv().await {
        let closing = matches!(message, Message::Close(_));
        if sink.send(message).await.is_err() || closing {
            break;
        }
    }
}

/// Reads a reading connection until it ends: measures each room message, answers pings.
async fn read_loop(
    mut stream: SplitStream<Ws>,
    protocol: &'static dyn Protocol,
    out: mpsc::Sender<Message>,
    shared: Arc<Shared>,
    alive: Arc<AtomicBool>,
) {
    let mut seen: HashMap<u32, SeqSet> = HashMap::new();
    while let Some(Ok(frame)) = stream.next().await {
        let text = match frame {
            Message::Text(text) => text,
            Message::Close(_) => break,
            _ => continue,
        };
        match protocol.classify(text.as_str()) {
            Inbound::Message { text, .. } => {
                let received_us = now_us();
                let Some(stamp) = Stamp::decode(&text) else {
                    continue;
                };
                let fresh = seen.entry(stamp.sender).or_default().insert(stamp.seq);
                let mut tally = shared.tally.lock().unwrap_or_else(|p| p.into_inner());
                tally.received += 1;
                if fresh {
                    tally
                        .latency
                        .saturating_record(received_us.saturating_sub(stamp.sent_us).max(1));
                } else {
                    tally.duplicates += 1;
                }
                drop(tally);
                shared.received.fetch_add(1, Ordering::Relaxed);
            }
            Inbound::Reply(reply) => {
                let _ = out.try_send(Message::text(reply));
            }
            Inbound::Error(why) => {
                tracing::debug!(%why, "error event");
                shared
                    .tally
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .errors += 1;
            }
            _ => {}
        }
    }
    alive.store(false, Ordering::Relaxed);
    shared.dropped.fetch_add(1, Ordering::Relaxed);
}
