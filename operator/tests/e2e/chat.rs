//! Chat workloads for the end-to-end tests: receivers that stay in a room and, like the demo
//! page, reconnect through HAProxy and resume from their last offset whenever they are
//! disconnected; senders that send numbered messages and record each one's outcome (acked with
//! an offset, refused with an error code, or unknown because the connection died first).
//! [`check_delivery`] then compares what every receiver got with what was acked.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::client::{self, Client, Event};

/// A room message offset (`<ms>-<seq>`) as a comparable pair.
pub fn offset_key(offset: &str) -> (u64, u64) {
    let (ms, seq) = offset.split_once('-').unwrap_or((offset, "0"));
    (ms.parse().unwrap_or(0), seq.parse().unwrap_or(0))
}

/// One disconnection and the reconnection that followed.
#[derive(Debug, Clone)]
pub struct Reconnect {
    /// Node before.
    pub from: String,
    /// Node after.
    pub to: String,
    /// Close code the server sent, if any.
    pub code: Option<u16>,
    /// When the connection ended.
    pub closed_at: Instant,
    /// When the client was back in the room (joined, replay received).
    pub rejoined_at: Instant,
    /// Messages the server replayed on rejoin (`joined.replay`).
    pub replayed: usize,
    /// Whether the client presented a cookie for the old node.
    pub with_cookie: bool,
}

/// Everything one receiver saw.
#[derive(Debug, Clone, Default)]
pub struct ReceiverLog {
    /// Its user name.
    pub name: String,
    /// Room messages in arrival order: (offset, client id).
    pub messages: Vec<(String, String)>,
    /// Nodes it was connected to, in order.
    pub nodes: Vec<String>,
    /// Its reconnections.
    pub reconnects: Vec<Reconnect>,
}

/// A running receiver.
pub struct Receiver {
    /// Node of its first connection.
    pub first_node: String,
    task: JoinHandle<Result<ReceiverLog>>,
}

/// Connects a receiver, joins `room`, and keeps it there until `done` holds a count it has
/// reached (or `deadline` passes).
pub async fn receiver(
    endpoint: &str,
    name: &str,
    room: &str,
    mut done: watch::Receiver<Option<usize>>,
    deadline: Duration,
) -> Result<Receiver> {
    let mut client = client::connect(endpoint, name, None).await?;
    let (_, early) = client.join(room, None).await?;
    let first_node = client.node.clone();
    let (endpoint, name, room) = (endpoint.to_owned(), name.to_owned(), room.to_owned());
    let task = tokio::spawn(async move {
        let end = Instant::now() + deadline;
        let mut log = ReceiverLog {
            name: name.clone(),
            ..Default::default()
        };
        log.nodes.push(client.node.clone());
        record(&mut log, &early);
        loop {
            let target = *done.borrow();
            if target.is_some_and(|n| log.messages.len() >= n) || Instant::now() > end {
                return Ok(log);
            }
            let event = tokio::select! {
                e = client.next(Instant::now() + Duration::from_millis(200)) => e.ok(),
                _ = done.changed() => None,
            };
            match event {
                Some(Event::Json(v)) if v["type"] == "message" => record(&mut log, &[v]),
                Some(Event::Closed(code)) => {
                    let closed_at = Instant::now();
                    let from = client.node.clone();
                    let cookie = client.cookie.clone();
                    let since = log.messages.last().map(|(o, _)| o.clone());
                    let (new, joined, early) = rejoin(
                        &endpoint,
                        &name,
                        &room,
                        cookie.as_deref(),
                        since.as_deref(),
                        end,
                    )
                    .await?;
                    client = new;
                    record(&mut log, &early);
                    log.nodes.push(client.node.clone());
                    log.reconnects.push(Reconnect {
                        from,
                        to: client.node.clone(),
                        code,
                        closed_at,
                        rejoined_at: Instant::now(),
                        replayed: joined["replay"].as_u64().unwrap_or(0) as usize,
                        with_cookie: cookie.is_some(),
                    });
                }
                _ => {}
            }
        }
    });
    Ok(Receiver { first_node, task })
}

impl Receiver {
    /// Waits for the receiver to finish and returns its log.
    pub async fn finish(self) -> Result<ReceiverLog> {
        self.task.await?
    }
}

fn record(log: &mut ReceiverLog, events: &[serde_json::Value]) {
    for v in events {
        let offset = v["offset"].as_str().unwrap_or_default().to_owned();
        let id = v["id"].as_str().unwrap_or_default().to_owned();
        log.messages.push((offset, id));
    }
}

/// Reconnects (retrying every 50 ms until `end`) with the old cookie, and rejoins after `since`.
async fn rejoin(
    endpoint: &str,
    name: &str,
    room: &str,
    cookie: Option<&str>,
    since: Option<&str>,
    end: Instant,
) -> Result<(Client, serde_json::Value, Vec<serde_json::Value>)> {
    loop {
        let attempt = async {
            let mut c = client::connect(endpoint, name, cookie).await?;
            let (joined, early) = c.join(room, since).await?;
            anyhow::Ok((c, joined, early))
        };
        match attempt.await {
            Ok(ok) => return Ok(ok),
            Err(err) if Instant::now() > end => bail!("{name} could not reconnect: {err:#}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// What one sender did.
#[derive(Debug, Clone, Default)]
pub struct SenderLog {
    /// Node it sent through.
    pub node: String,
    /// Acked messages: (offset, id).
    pub acked: Vec<(String, String)>,
    /// Refused messages: (id, error code).
    pub refused: Vec<(String, String)>,
    /// Messages whose outcome is unknown (connection lost before the answer).
    pub unknown: Vec<String>,
}

/// Sends `count` messages to `room`, one every `interval`, each waiting for its ack or error.
pub async fn sender(
    endpoint: &str,
    name: &str,
    room: &str,
    count: usize,
    interval: Duration,
) -> Result<JoinHandle<Result<SenderLog>>> {
    let mut client = client::connect(endpoint, name, None).await?;
    client.join(room, None).await?;
    let (endpoint, name, room) = (endpoint.to_owned(), name.to_owned(), room.to_owned());
    Ok(tokio::spawn(async move {
        let mut log = SenderLog {
            node: client.node.clone(),
            ..Default::default()
        };
        for i in 0..count {
            let id = format!("{name}-{i}");
            client
                .send(&room, &id, &format!("message {i} from {name}"))
                .await?;
            match wait_outcome(&mut client, &id).await {
                Outcome::Ack(offset) => log.acked.push((offset, id)),
                Outcome::Refused(code) => log.refused.push((id, code)),
                Outcome::Lost => {
                    log.unknown.push(id);
                    let end = Instant::now() + Duration::from_secs(20);
                    client = rejoin(&endpoint, &name, &room, None, None, end).await?.0;
                }
            }
            tokio::time::sleep(interval).await;
        }
        client.close().await;
        Ok(log)
    }))
}

enum Outcome {
    Ack(String),
    Refused(String),
    Lost,
}

async fn wait_outcome(client: &mut Client, id: &str) -> Outcome {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match client.next(deadline).await {
            Ok(Event::Json(v)) if v["id"] == id && v["type"] == "ack" => {
                return Outcome::Ack(v["offset"].as_str().unwrap_or_default().to_owned());
            }
            Ok(Event::Json(v)) if v["id"] == id && v["type"] == "error" => {
                return Outcome::Refused(v["code"].as_str().unwrap_or_default().to_owned());
            }
            Ok(Event::Json(_)) => {}
            Ok(Event::Closed(_)) | Err(_) => return Outcome::Lost,
        }
    }
}

/// Checks every receiver got exactly the acked messages, once each, in offset order, and
/// returns the total acked count.
pub fn check_delivery(senders: &[SenderLog], receivers: &[ReceiverLog]) -> Result<usize> {
    let mut acked: Vec<(String, String)> = senders.iter().flat_map(|s| s.acked.clone()).collect();
    acked.sort_by_key(|(o, _)| offset_key(o));
    for r in receivers {
        let keys: Vec<_> = r.messages.iter().map(|(o, _)| offset_key(o)).collect();
        if let Some(w) = keys.windows(2).find(|w| w[0] >= w[1]) {
            bail!(
                "{}: offsets out of order or duplicated: {:?} then {:?}",
                r.name,
                w[0],
                w[1]
            );
        }
        if r.messages != acked {
            let missing = acked.iter().filter(|m| !r.messages.contains(m)).count();
            let extra = r.messages.iter().filter(|m| !acked.contains(m)).count();
            bail!(
                "{}: received {} messages, {} acked: {missing} missing, {extra} not acked",
                r.name,
                r.messages.len(),
                acked.len()
            );
        }
    }
    Ok(acked.len())
}
