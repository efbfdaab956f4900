//! A real WebSocket chat client for the end-to-end tests: connects through HAProxy (optionally
//! with the sticky cookie), reads `welcome` to learn its node, and turns every server frame into
//! an [`Event`] on a channel so a test can wait for exactly what it expects.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::header;
use tokio_tungstenite::tungstenite::protocol::Message;

/// Something the server sent.
#[derive(Debug, Clone)]
pub enum Event {
    /// A JSON text frame.
    Json(Value),
    /// The connection ended, with the close code if the server sent one.
    Closed(Option<u16>),
}

type Sink = futures_util::stream::SplitSink<
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    Message,
>;

/// One open chat connection.
pub struct Client {
    sink: Sink,
    events: mpsc::UnboundedReceiver<Event>,
    /// The node this connection landed on (from `welcome`).
    pub node: String,
    /// The sticky cookie HAProxy set (`NAME=VALUE`), or the one we presented.
    pub cookie: Option<String>,
}

/// Connects to `endpoint` as anonymous user `name`, presenting `cookie` when given.
pub async fn connect(endpoint: &str, name: &str, cookie: Option<&str>) -> Result<Client> {
    let mut request = format!("{endpoint}?name={name}").into_client_request()?;
    if let Some(cookie) = cookie {
        request
            .headers_mut()
            .insert(header::COOKIE, cookie.parse()?);
    }
    let (ws, response) = tokio::time::timeout(
        Duration::from_secs(5),
        tokio_tungstenite::connect_async(request),
    )
    .await
    .context("WebSocket handshake timed out")??;
    let set_cookie = response
        .headers()
        .get(header::SET_COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(str::to_owned);
    let (sink, mut stream) = ws.split();
    let (tx, events) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(frame) = stream.next().await {
            let event = match frame {
                Ok(Message::Text(text)) => match serde_json::from_str(&text) {
                    Ok(v) => Event::Json(v),
                    Err(_) => continue,
                },
                Ok(Message::Close(frame)) => Event::Closed(frame.map(|f| u16::from(f.code))),
                Ok(_) => continue,
                Err(_) => Event::Closed(None),
            };
            let closed = matches!(event, Event::Closed(_));
            if tx.send(event).is_err() || closed {
                return;
            }
        }
        let _ = tx.send(Event::Closed(None));
    });
    let mut client = Client {
        sink,
        events,
        node: String::new(),
        cookie: set_cookie.or_else(|| cookie.map(str::to_owned)),
    };
    let welcome = client.expect("welcome", Duration::from_secs(5)).await?;
    client.node = welcome["node"].as_str().unwrap_or_default().to_owned();
    Ok(client)
}

impl Client {
    /// Sends one JSON frame.
    pub async fn send_json(&mut self, frame: Value) -> Result<()> {
        self.sink.send(Message::text(frame.to_string())).await?;
        Ok(())
    }

    /// Joins `room`, resuming after `since` when given; returns the `joined` event and every
    /// room message that arrived before it.
    pub async fn join(&mut self, room: &str, since: Option<&str>) -> Result<(Value, Vec<Value>)> {
        let mut frame = json!({"type": "join", "room": room});
        if let Some(since) = since {
            frame["since"] = json!(since);
        }
        self.send_json(frame).await?;
        let mut early = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match self.next(deadline).await? {
                Event::Json(v) if v["type"] == "joined" => return Ok((v, early)),
                Event::Json(v) if v["type"] == "message" => early.push(v),
                Event::Json(v) if v["type"] == "error" => bail!("join refused: {v}"),
                Event::Json(_) => {}
                Event::Closed(code) => bail!("closed ({code:?}) while joining"),
            }
        }
    }

    /// Sends a text message to `room` with client id `id`.
    pub async fn send(&mut self, room: &str, id: &str, text: &str) -> Result<()> {
        self.send_json(json!({"type": "send", "room": room, "id": id, "text": text}))
            .await
    }

    /// The next event, or an error at `deadline`.
    pub async fn next(&mut self, deadline: Instant) -> Result<Event> {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, self.events.recv()).await {
            Ok(Some(event)) => Ok(event),
            Ok(None) => Ok(Event::Closed(None)),
            Err(_) => bail!("no event within the deadline"),
        }
    }

    /// Waits for the next JSON event of type `kind`, skipping others.
    pub async fn expect(&mut self, kind: &str, within: Duration) -> Result<Value> {
        let deadline = Instant::now() + within;
        loop {
            match self.next(deadline).await? {
                Event::Json(v) if v["type"] == kind => return Ok(v),
                Event::Json(_) => {}
                Event::Closed(code) => bail!("closed ({code:?}) while waiting for {kind}"),
            }
        }
    }

    /// Closes the connection politely.
    pub async fn close(mut self) {
        let _ = self.sink.send(Message::Close(None)).await;
        let _ = self.sink.close().await;
    }
}
