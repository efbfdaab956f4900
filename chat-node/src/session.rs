//! One WebSocket connection: registration, the reading half (parse, rate-limit, act on each
//! client frame) and cleanup. The writing half lives in `writer.rs`; the two meet through the
//! connection's bounded queue and its close switch (`hub::Conn`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::oneshot;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::{Error as WsError, Message, Utf8Bytes};
use tracing::Instrument;

use crate::auth::Identity;
use crate::hub::{Conn, JoinEnd, Outbound};
use crate::keys::Kind;
use crate::node::{Node, Slot, stored_frame};
use crate::offset::Offset;
use crate::presence::PresenceCmd;
use crate::protocol::{self, ClientFrame, ErrorCode, FrameError};
use crate::ratelimit::TokenBucket;

/// Longest wait for a Redis subscription before a join answers `unavailable`.
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(3);

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The error event for a send or direct message that Redis did not take. A timeout cannot tell
/// whether the script ran (Redis may run it after the node stopped waiting, and then the room
/// receives the message), so it is `unconfirmed`, not `unavailable`'s "nothing was sent".
fn send_failure(err: &redis::RedisError) -> (ErrorCode, &'static str) {
    if err.is_timeout() {
        (
            ErrorCode::Unconfirmed,
            "redis did not answer in time; the message may still be delivered, \
             so sending it again may deliver it twice",
        )
    } else {
        (
            ErrorCode::Unavailable,
            "redis unreachable; nothing was sent, retry later",
        )
    }
}

struct Session {
    node: Arc<Node>,
    conn: Arc<Conn>,
    user: Arc<str>,
    rooms: Vec<Arc<str>>,
    bucket: TokenBucket,
}

/// Serves one upgraded connection until it closes; `slot` is released at the end.
pub async fn serve<S>(node: Arc<Node>, ws: WebSocketStream<S>, identity: Identity, slot: Slot)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let id = node.next_conn_id();
    let span = tracing::info_span!("conn", id, user = %identity.user);
    async move {
        let user: Arc<str> = identity.user.into();
        let (conn, rx) = Conn::new(id, user.clone(), node.config.outbound_queue);
        let (sink, mut stream) = ws.split();
        let start = Instant::now();
        let last_seen = Arc::new(AtomicU64::new(0));
        let writer = tokio::spawn(
            crate::writer::run(
                conn.clone(),
                sink,
                rx,
                node.config.ping_interval(),
                node.config.outbound_queue,
                start,
                last_seen.clone(),
            )
            .in_current_span(),
        );
        let subscribed = node.hub.add_conn(&user, &conn);
        let _ = tokio::time::timeout(SUBSCRIBE_TIMEOUT, subscribed).await;
        conn.push(Outbound::Text(
            protocol::welcome(&user, &node.config.node_name, identity.anonymous).into(),
        ));
        if node.is_draining() {
            // Upgraded just as the drain started: the drain's snapshot may have missed it.
            conn.close(1001);
        }
        tracing::debug!("connected");
        let mut session = Session {
            bucket: TokenBucket::new(node.config.rate_burst, start),
            node: node.clone(),
            conn: conn.clone(),
            user: user.clone(),
            rooms: Vec::new(),
        };
        loop {
            let frame = tokio::select! {
                _ = conn.closing() => break,
                frame = stream.next() => frame,
            };
            last_seen.store(start.elapsed().as_millis() as u64, Ordering::Relaxed);
            match frame {
                None | Some(Ok(Message::Close(_))) => break,
                Some(Err(WsError::Capacity(err))) => {
                    tracing::debug!(%err, "frame too big");
                    conn.close(1009);
                    break;
                }
                Some(Err(err)) => {
                    tracing::debug!(%err, "read failed");
                    break;
                }
                Some(Ok(Message::Text(text))) => {
                    session.on_frame(protocol::parse_text(&text)).await
                }
                Some(Ok(Message::Binary(bytes))) => {
                    session.on_frame(protocol::parse_binary(&bytes)).await
                }
                Some(Ok(_)) => {}
            }
        }
        session.cleanup();
        node.hub.remove_conn(&user, id);
        conn.close(1000);
        if let Some(code) = conn.close_requested().filter(|&c| c != 1000) {
            node.metrics.server_close(code);
        }
        let mut writer = writer;
        if tokio::time::timeout(Duration::from_secs(3), &mut writer)
            .await
            .is_err()
        {
            writer.abort();
        }
        tracing::debug!("disconnected");
        drop(slot);
    }
    .instrument(span)
    .await;
}

impl Session {
    fn send_text(&self, text: impl Into<Utf8Bytes>) {
        self.conn.push(Outbound::Text(text.into()));
    }

    fn send_error(&self, err: &FrameError) {
        self.node.metrics.client_error(err.code.as_str());
        self.send_text(protocol::error(err));
    }

    fn error(code: ErrorCode, message: &str, id: Option<&str>, room: Option<&str>) -> FrameError {
        FrameError {
            code,
            message: message.to_owned(),
            id: id.map(str::to_owned),
            room: room.map(str::to_owned),
        }
    }

    async fn on_frame(&mut self, parsed: Result<ClientFrame, FrameError>) {
        if !self.bucket.try_take(
            self.node.config.rate_per_second,
            self.node.config.rate_burst,
            Instant::now(),
        ) {
            let (id, room) = match &parsed {
                Err(e) => (e.id.clone(), e.room.clone()),
                Ok(ClientFrame::Send { id, room, .. }) => (id.clone(), Some(room.clone())),
                Ok(_) => (None, None),
            };
            let message = "too many frames; slow down";
            self.send_error(&Self::error(
                ErrorCode::RateLimited,
                message,
                id.as_deref(),
                room.as_deref(),
            ));
            return;
        }
        match parsed {
            Err(err) => self.send_error(&err),
            // Boxed: the (large) join/publish state is only allocated while a frame is handled,
            // not carried inside every idle connection's task.
            Ok(frame) => Box::pin(self.handle(frame)).await,
        }
    }

    fn joined(&self, room: &str) -> Option<&Arc<str>> {
        self.rooms.iter().find(|r| &***r == room)
    }

    async fn handle(&mut self, frame: ClientFrame) {
        match frame {
            ClientFrame::Join { room, since } => self.join(room, since).await,
            ClientFrame::Leave { room } => {
                let Some(name) = self.joined(&room).cloned() else {
                    return self.send_error(&Self::error(
                        ErrorCode::NotJoined,
                        "not in this room",
                        None,
                        Some(&room),
                    ));
                };
                self.rooms.retain(|r| *r != name);
                self.node.hub.leave_room(&name, self.conn.id);
                // Wait for the presence change so member_left (if any) precedes our `left`.
                let _ = self.presence(&name, -1).await;
                self.conn.push(Outbound::Left(name));
            }
            ClientFrame::Send { room, id, text } => {
                let body = protocol::text_body(&self.user, id.as_deref(), &text, now_ms());
                self.publish(&room, id.as_deref(), Kind::Text, body.as_bytes())
                    .await;
            }
            ClientFrame::Binary { room, payload } => {
                let body = protocol::binary_body(&self.user, &payload);
                self.publish(&room, None, Kind::Binary, &body).await;
            }
            ClientFrame::Direct { to, id, text } => {
                let frame = protocol::direct(&self.user, &to, id.as_deref(), &text, now_ms());
                match self.node.store.publish_direct(&to, &frame).await {
                    Ok(()) => self.send_text(protocol::ack(id.as_deref(), None, None)),
                    Err(err) => {
                        tracing::debug!(%err, "direct failed");
                        let (code, message) = send_failure(&err);
                        self.send_error(&Self::error(code, message, id.as_deref(), None));
                    }
                }
            }
            ClientFrame::Presence { room } => match self.node.store.presence_members(&room).await {
                Ok(members) => self.send_text(protocol::presence(&room, &members)),
                Err(_) => self.send_error(&Self::error(
                    ErrorCode::Unavailable,
                    "redis unreachable; retry later",
                    None,
                    Some(&room),
                )),
            },
            ClientFrame::Ping => self.send_text(protocol::pong()),
        }
    }

    async fn publish(&self, room: &str, id: Option<&str>, kind: Kind, body: &[u8]) {
        if self.joined(room).is_none() {
            let e = Self::error(
                ErrorCode::NotJoined,
                "join the room before sending to it",
                id,
                Some(room),
            );
            return self.send_error(&e);
        }
        match self.node.store.publish(room, kind, body).await {
            Ok(offset) => {
                self.node.metrics.messages_published.inc();
                self.send_text(protocol::ack(id, Some(room), Some(offset)));
            }
            Err(err) => {
                tracing::debug!(%err, room, "publish failed");
                let (code, message) = send_failure(&err);
                self.send_error(&Self::error(code, message, id, Some(room)));
            }
        }
    }

    async fn presence(&self, room: &Arc<str>, delta: i64) -> Result<Vec<String>, ()> {
        let (reply, rx) = oneshot::channel();
        let cmd = PresenceCmd::Adjust {
            room: room.clone(),
            user: self.user.clone(),
            delta,
            reply: Some(reply),
        };
        if self.node.presence.send(cmd).is_err() {
            return Err(());
        }
        rx.await.unwrap_or(Err(()))
    }

    fn leave(&self, room: &Arc<str>) {
        self.node.hub.leave_room(room, self.conn.id);
        let cmd = PresenceCmd::Adjust {
            room: room.clone(),
            user: self.user.clone(),
            delta: -1,
            reply: None,
        };
        let _ = self.node.presence.send(cmd);
    }

    async fn join(&mut self, room: String, since: Option<Offset>) {
        let already = self.joined(&room).cloned();
        if already.is_none() && self.rooms.len() >= self.node.config.max_rooms_per_connection {
            let e = Self::error(
                ErrorCode::TooManyRooms,
                "leave a room before joining another",
                None,
                Some(&room),
            );
            return self.send_error(&e);
        }
        let name: Arc<str> = already.clone().unwrap_or_else(|| room.as_str().into());
        if !self.conn.push(Outbound::JoinStart(name.clone())) {
            return;
        }
        match self.join_steps(&name, already.is_some(), since).await {
            Ok((members, replay, truncated)) => {
                if already.is_none() {
                    self.rooms.push(name.clone());
                }
                let frame = protocol::joined(&room, &members, replay.len(), truncated).into();
                self.conn.push(Outbound::JoinEnd(Box::new(JoinEnd {
                    room: name,
                    frame,
                    ok: true,
                    replay,
                })));
            }
            Err(()) => {
                self.node
                    .metrics
                    .client_error(ErrorCode::Unavailable.as_str());
                let e = Self::error(
                    ErrorCode::Unavailable,
                    "redis unreachable; not joined, retry later",
                    None,
                    Some(&room),
                );
                let end = JoinEnd {
                    room: name,
                    frame: protocol::error(&e).into(),
                    ok: already.is_some(),
                    replay: Vec::new(),
                };
                self.conn.push(Outbound::JoinEnd(Box::new(end)));
            }
        }
    }

    /// Subscribe (so live traffic is held from now on), count presence, then read the replay.
    /// Undoes what it did when a step fails.
    async fn join_steps(
        &self,
        name: &Arc<str>,
        already: bool,
        since: Option<Offset>,
    ) -> Result<(Vec<String>, Vec<(Offset, Message)>, bool), ()> {
        let subscribed =
            tokio::time::timeout(SUBSCRIBE_TIMEOUT, self.node.hub.join_room(name, &self.conn))
                .await;
        if !matches!(subscribed, Ok(Ok(true))) {
            if !already {
                self.node.hub.leave_room(name, self.conn.id);
            }
            return Err(());
        }
        let members = if already {
            self.node
                .store
                .presence_members(name)
                .await
                .map_err(|_| ())?
        } else {
            match self.presence(name, 1).await {
                Ok(members) => members,
                Err(()) => {
                    self.leave(name);
                    return Err(());
                }
            }
        };
        let Some(since) = since else {
            return Ok((members, Vec::new(), false));
        };
        match self.node.store.history_after(name, since).await {
            Ok(history) => {
                let replay = history
                    .messages
                    .iter()
                    .map(|m| (m.offset, stored_frame(name, m)))
                    .collect();
                Ok((members, replay, history.truncated))
            }
            Err(_) => {
                if !already {
                    self.leave(name);
                }
                Err(())
            }
        }
    }

    fn cleanup(&mut self) {
        for room in std::mem::take(&mut self.rooms) {
            self.leave(&room);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_timed_out_send_is_unconfirmed_and_a_refused_one_unavailable() {
        let timed_out = redis::RedisError::from(std::io::Error::from(std::io::ErrorKind::TimedOut));
        assert_eq!(send_failure(&timed_out).0, ErrorCode::Unconfirmed);
        let refused =
            redis::RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert_eq!(send_failure(&refused).0, ErrorCode::Unavailable);
    }
}
