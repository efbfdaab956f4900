//! The clients of a load worker: opening a connection through the system's [`Protocol`]
//! adapter (setup frames, join), the per-connection writer and reader tasks, and the reader's
//! measurement of every room message (latency from the stamp, duplicates per sender) into the
//! worker's shared tally. Slow consumers are opened the same way but never read until the end.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::adapter::{Inbound, Protocol, Stamp};
use crate::load::LoadWorkerArgs;
use crate::measure::source_for;
use crate::node::split_url;
use crate::tally::{RoomLayout, SeqSet, new_histogram};
use crate::{Error, Result};

type Ws = WebSocketStream<TcpStream>;

/// Measurements shared by the reader tasks of one worker.
pub(crate) struct Shared {
    pub(crate) tally: Mutex<Tally>,
    pub(crate) received: AtomicU64,
    pub(crate) dropped: AtomicU64,
}

pub(crate) struct Tally {
    pub(crate) latency: Histogram<u64>,
    pub(crate) received: u64,
    pub(crate) duplicates: u64,
    pub(crate) errors: u64,
}

impl Tally {
    pub(crate) fn new() -> Self {
        Self {
            latency: new_histogram(),
            received: 0,
            duplicates: 0,
            errors: 0,
        }
    }
}

/// One open connection, as the sending loop sees it.
pub(crate) struct Conn {
    pub(crate) index: usize,
    pub(crate) room: String,
    pub(crate) out: mpsc::Sender<Message>,
    pub(crate) alive: Arc<AtomicBool>,
    pub(crate) next_seq: u32,
    pub(crate) sent_in_step: u32,
    /// Whether this is a slow consumer (never sends, never reads until `finish`).
    pub(crate) slow: bool,
    /// A slow consumer's unread stream, read only at `finish`.
    pub(crate) unread: Option<SplitStream<Ws>>,
}

pub(crate) fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// Reads what the slow consumers left unread (bounded to 10 s overall) to learn whether the
/// server closed them, and with which code. Returns (closed, closed with 1008).
pub(crate) async fn read_slow_ends(conns: &mut [Conn]) -> (u64, u64) {
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

pub(crate) async fn open_all(args: &LoadWorkerArgs, shared: &Arc<Shared>) -> Result<Vec<Conn>> {
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
    if !args.no_join {
        send_text(&mut ws, protocol.join(&room)).await?;
        let joined = |e: &Inbound| matches!(e, Inbound::Joined(r) if *r == room);
        await_event(&mut ws, protocol, joined).await?;
    }

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
        slow,
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
