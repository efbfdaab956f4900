//! A worker process of the idle benchmark (`chatcluster-bench worker`, started by the
//! controller, not by hand). It opens its share of WebSocket connections from the given source
//! addresses, waits for each `welcome` (and `joined`, when asked to join rooms), then holds them
//! idle — answering the node's pings — until told to close, or until its own deadline passes.
//!
//! It talks to the controller in lines: stdout `ready <n>`, then `closed <n> dropped <m>` (or
//! `failed <reason>`); stdin `close` (or EOF) ends the hold.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use std::process::Stdio;

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWrite, AsyncWriteExt, BufReader, Lines};
use tokio::net::{TcpSocket, TcpStream};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::task::JoinHandle;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_util::sync::CancellationToken;

use crate::measure::source_for;
use crate::node::split_url;
use crate::{Error, Result};

type Ws = WebSocketStream<TcpStream>;

/// Flags of `chatcluster-bench worker`.
#[derive(clap::Args, Debug, Clone)]
pub struct WorkerArgs {
    /// WebSocket endpoint of the node (`?name=` is appended per connection).
    #[arg(
        long,
        env = "BENCH_WORKER_URL",
        default_value = "ws://127.0.0.1:8080/ws"
    )]
    pub url: String,
    /// Connections this worker opens.
    #[arg(long, env = "BENCH_WORKER_COUNT", default_value_t = 1000)]
    pub count: usize,
    /// Global index of this worker's first connection (names are `idle-<index>`).
    #[arg(long, env = "BENCH_WORKER_FIRST_INDEX", default_value_t = 0)]
    pub first_index: usize,
    /// Source addresses to bind before connecting, used round robin.
    #[arg(
        long,
        env = "BENCH_WORKER_SOURCE_ADDRS",
        value_delimiter = ',',
        default_value = "127.0.0.1"
    )]
    pub source_addrs: Vec<Ipv4Addr>,
    /// Handshakes in flight at once.
    #[arg(long, env = "BENCH_WORKER_CONCURRENCY", default_value_t = 64)]
    pub concurrency: usize,
    /// Join room `idle-<index % N>` after the welcome; 0 = join nothing.
    #[arg(long, env = "BENCH_WORKER_JOIN_ROOMS", default_value_t = 0)]
    pub join_rooms: usize,
    /// The worker closes everything and exits after this many seconds, whatever happens.
    #[arg(long, env = "BENCH_WORKER_MAX_SECONDS", default_value_t = 300)]
    pub max_seconds: u64,
}

/// A line a worker prints for its controller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkerEvent {
    /// All connections are open and welcomed.
    Ready(usize),
    /// Connections closed on request, and how many the node had closed before that.
    Closed { closed: usize, dropped: usize },
    /// A load worker's measurements for one step ([`crate::tally::StepReport`] as JSON).
    Report(String),
    /// The worker gave up.
    Failed(String),
}

impl WorkerEvent {
    /// The line the worker prints (without the newline).
    pub fn to_line(&self) -> String {
        match self {
            Self::Ready(n) => format!("ready {n}"),
            Self::Closed { closed, dropped } => format!("closed {closed} dropped {dropped}"),
            Self::Report(json) => format!("report {}", json.replace('\n', " ")),
            Self::Failed(why) => format!("failed {}", why.replace('\n', " ")),
        }
    }

    /// Parses a line printed by [`WorkerEvent::to_line`].
    pub fn parse(line: &str) -> Option<Self> {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["ready", n] => n.parse().ok().map(Self::Ready),
            ["closed", c, "dropped", d] => Some(Self::Closed {
                closed: c.parse().ok()?,
                dropped: d.parse().ok()?,
            }),
            ["report", ..] => Some(Self::Report(line["report".len()..].trim().to_string())),
            ["failed", ..] => Some(Self::Failed(line["failed".len()..].trim().to_string())),
            _ => None,
        }
    }
}

/// Client-side buffers kept small: the workers' own memory is not measured, but 10,000 clients
/// with tungstenite's 128 KiB default read buffers would waste over a GiB.
fn client_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0)
}

/// Runs a worker: opens the connections, reports `ready`, holds them until `close` arrives on
/// `input` (or EOF, or the deadline), closes them and reports `closed`.
pub async fn run_worker(
    args: &WorkerArgs,
    input: impl AsyncBufRead + Unpin,
    mut output: impl AsyncWrite + Unpin,
) -> Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(args.max_seconds);
    let outcome = tokio::time::timeout_at(deadline, open_all(args)).await;
    let holders = match outcome {
        Ok(Ok(holders)) => holders,
        Ok(Err(err)) => return report_failure(&mut output, err).await,
        Err(_) => {
            return report_failure(&mut output, Error::Timeout("opening connections".into())).await;
        }
    };
    let (handles, cancel) = holders;
    say(&mut output, WorkerEvent::Ready(handles.len())).await?;

    let mut lines = input.lines();
    let _ = tokio::time::timeout_at(deadline, async {
        while let Ok(Some(line)) = lines.next_line().await {
            if line.trim() == "close" {
                break;
            }
        }
    })
    .await;

    cancel.cancel();
    let (mut closed, mut dropped) = (0, 0);
    for handle in handles {
        match handle.await {
            Ok(true) => closed += 1,
            _ => dropped += 1,
        }
    }
    say(&mut output, WorkerEvent::Closed { closed, dropped }).await
}

async fn report_failure(output: &mut (impl AsyncWrite + Unpin), err: Error) -> Result<()> {
    say(output, WorkerEvent::Failed(err.to_string())).await?;
    Err(err)
}

async fn say(output: &mut (impl AsyncWrite + Unpin), event: WorkerEvent) -> Result<()> {
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

/// Opens every connection (bounded concurrency) and starts one holder task per connection.
async fn open_all(args: &WorkerArgs) -> Result<(Vec<JoinHandle<bool>>, CancellationToken)> {
    let (host, _) = split_url(&args.url)
        .ok_or_else(|| Error::Invalid(format!("{} is not ws://host:port/path", args.url)))?;
    let addr = tokio::net::lookup_host(&host)
        .await
        .map_err(Error::io(format!("resolve {host}")))?
        .find(SocketAddr::is_ipv4)
        .ok_or_else(|| Error::Invalid(format!("{host} has no IPv4 address")))?;
    let cancel = CancellationToken::new();
    let opened: Vec<Result<JoinHandle<bool>>> = futures_util::stream::iter(0..args.count)
        .map(|i| {
            let index = args.first_index + i;
            let cancel = cancel.clone();
            async move {
                let ws = connect_with_retry(args, addr, index).await?;
                Ok(tokio::spawn(hold(ws, cancel)))
            }
        })
        .buffer_unordered(args.concurrency.max(1))
        .collect()
        .await;
    let handles = opened.into_iter().collect::<Result<Vec<_>>>();
    if handles.is_err() {
        cancel.cancel();
    }
    Ok((handles?, cancel))
}

async fn connect_with_retry(args: &WorkerArgs, addr: SocketAddr, index: usize) -> Result<Ws> {
    let mut attempt = 0;
    loop {
        match connect_one(args, addr, index).await {
            Ok(ws) => return Ok(ws),
            Err(err) if attempt < 3 => {
                tracing::debug!(index, %err, "connection failed; retrying");
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(250 << attempt)).await;
            }
            Err(err) => return Err(err),
        }
    }
}

async fn connect_one(args: &WorkerArgs, addr: SocketAddr, index: usize) -> Result<Ws> {
    let source = source_for(&args.source_addrs, index);
    let socket = TcpSocket::new_v4().map_err(Error::io("create a socket"))?;
    socket
        .bind(SocketAddr::new(source.into(), 0))
        .map_err(Error::io(format!("bind source address {source}")))?;
    let stream = socket
        .connect(addr)
        .await
        .map_err(Error::io(format!("connect {source} -> {addr}")))?;
    let _ = stream.set_nodelay(true);
    let url = format!("{}?name=idle-{index}", args.url);
    let ws_err = |e| Error::WebSocket {
        url: url.clone(),
        source: Box::new(e),
    };
    let (mut ws, _) =
        tokio_tungstenite::client_async_with_config(url.as_str(), stream, Some(client_config()))
            .await
            .map_err(ws_err)?;
    expect_event(&mut ws, "welcome").await?;
    if args.join_rooms > 0 {
        let join = serde_json::json!({"type": "join", "room": format!("idle-{}", index % args.join_rooms)});
        ws.send(Message::text(join.to_string()))
            .await
            .map_err(ws_err)?;
        expect_event(&mut ws, "joined").await?;
    }
    Ok(ws)
}

/// Reads until a text frame of JSON type `wanted` arrives (10 s bound); an `error` event or a
/// close fails.
async fn expect_event(ws: &mut Ws, wanted: &str) -> Result<()> {
    let wait = async {
        while let Some(frame) = ws.next().await {
            let frame =
                frame.map_err(|e| Error::Unexpected(format!("waiting for {wanted}: {e}")))?;
            let Message::Text(text) = frame else { continue };
            let value: serde_json::Value = serde_json::from_str(text.as_str()).unwrap_or_default();
            match value["type"].as_str() {
                Some(t) if t == wanted => return Ok(()),
                Some("error") => {
                    return Err(Error::Unexpected(format!("waiting for {wanted}: {text}")));
                }
                _ => {}
            }
        }
        Err(Error::Unexpected(format!(
            "connection closed while waiting for {wanted}"
        )))
    };
    tokio::time::timeout(Duration::from_secs(10), wait)
        .await
        .map_err(|_| Error::Timeout(format!("no {wanted} within 10 s")))?
}

/// Keeps a connection idle (reading answers the node's pings) until cancelled, then closes it.
/// Returns false when the node closed it first.
async fn hold(mut ws: Ws, cancel: CancellationToken) -> bool {
    loop {
        tokio::select! {
            () = cancel.cancelled() => break,
            frame = ws.next() => match frame {
                Some(Ok(_)) => {}
                _ => return false,
            },
        }
    }
    let _ = ws.close(None).await;
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(Ok(_)) = ws.next().await {}
    })
    .await;
    true
}

/// A worker process as its controller sees it: lines in, events out.
pub struct WorkerProcess {
    child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
}

impl WorkerProcess {
    /// Starts `cmd` (a re-execution of this binary with a worker subcommand) with piped stdio.
    pub fn spawn(mut cmd: Command) -> Result<Self> {
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = cmd.spawn().map_err(Error::io("start a worker process"))?;
        let stdin = child
            .stdin
            .take()
            .ok_or_else(|| Error::Unexpected("worker has no stdin".into()))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| Error::Unexpected("worker has no stdout".into()))?;
        Ok(Self {
            child,
            stdin,
            lines: BufReader::new(stdout).lines(),
        })
    }

    /// The next event the worker reports; a `failed` line or an exit is an error.
    pub async fn next_event(&mut self) -> Result<WorkerEvent> {
        loop {
            let line = self
                .lines
                .next_line()
                .await
                .map_err(Error::io("read from a worker"))?;
            let Some(line) = line else {
                return Err(Error::Unexpected(
                    "a worker exited without reporting".into(),
                ));
            };
            match WorkerEvent::parse(&line) {
                Some(WorkerEvent::Failed(why)) => {
                    return Err(Error::Unexpected(format!("worker failed: {why}")));
                }
                Some(event) => return Ok(event),
                None => tracing::warn!(%line, "unexpected worker output"),
            }
        }
    }

    /// Sends one command line to the worker.
    pub async fn tell(&mut self, line: &str) -> Result<()> {
        self.stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .map_err(Error::io("write to a worker"))?;
        self.stdin
            .flush()
            .await
            .map_err(Error::io("write to a worker"))
    }

    /// Waits up to 10 s for the worker to exit, then kills it.
    pub async fn reap(mut self) {
        if tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_lines_round_trip() {
        for event in [
            WorkerEvent::Ready(2500),
            WorkerEvent::Closed {
                closed: 2499,
                dropped: 1,
            },
            WorkerEvent::Failed("connect 127.0.0.2 -> x: refused".into()),
            WorkerEvent::Report(r#"{"sent":[[1,2]]}"#.into()),
        ] {
            assert_eq!(WorkerEvent::parse(&event.to_line()), Some(event));
        }
        assert_eq!(WorkerEvent::parse("ready many"), None);
        assert_eq!(WorkerEvent::parse("hello"), None);
    }
}
