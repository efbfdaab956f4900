//! Redis commands of the node (everything except the subscriber connection): storing and
//! publishing room messages in one Lua script, reading history for resume and gap fill, direct
//! messages, and presence counts. Scripts run atomically, so a room's publish order is its
//! stream order on every node.

use std::time::Duration;

use bytes::Bytes;
use redis::aio::ConnectionManager;
use redis::{AsyncCommands, Script, Value};

use crate::keys::{Keys, Kind};
use crate::offset::Offset;

/// XADD (capped) then PUBLISH `<tag><id>\n<body>`; returns the id.
const PUBLISH_LUA: &str = r"
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'k', ARGV[2], 'd', ARGV[3])
redis.call('PUBLISH', KEYS[2], ARGV[2] .. id .. '\n' .. ARGV[3])
return id";

/// Returns {first retained id or '', entries trimmed so far, entries after ARGV[1]}.
const RANGE_LUA: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return {'', -1, {}} end
local info = redis.call('XINFO', 'STREAM', KEYS[1])
local len, added, first = 0, 0, ''
for i = 1, #info, 2 do
  local k = info[i]
  if k == 'length' then len = info[i + 1]
  elseif k == 'entries-added' then added = info[i + 1]
  elseif k == 'first-entry' and info[i + 1] then first = info[i + 1][1] end
end
return {first, added - len, redis.call('XRANGE', KEYS[1], '(' .. ARGV[1], '+', 'COUNT', ARGV[2])}";

/// Moves one (room, user) count of one node by a delta, keeping the cluster-wide hash in step
/// and publishing member_joined/left when a user's total crosses zero.
const ADJUST_FN_LUA: &str = r"
local function adjust(prefix, node, room, user, delta)
  local nkey = prefix .. ':node:' .. node .. ':presence'
  local field = room .. ' ' .. user
  local c = redis.call('HINCRBY', nkey, field, delta)
  if c <= 0 then redis.call('HDEL', nkey, field) end
  if c < 0 then delta = delta - c end
  if delta == 0 then return end
  local pkey = prefix .. ':presence:' .. room
  local n = redis.call('HINCRBY', pkey, user, delta)
  if n <= 0 then
    redis.call('HDEL', pkey, user)
    if n - delta > 0 then redis.call('PUBLISH', prefix .. ':room:' .. room, 'L' .. user) end
  elseif n - delta <= 0 then
    redis.call('PUBLISH', prefix .. ':room:' .. room, 'J' .. user)
  end
end
";

/// ARGV: prefix, node, room, user, delta. Returns the room's members.
const ADJUST_LUA: &str = r"
adjust(ARGV[1], ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5]))
return redis.call('HKEYS', ARGV[1] .. ':presence:' .. ARGV[3])";

/// ARGV: prefix, node, then (room, user, count) triples: makes the node's share equal to them.
const SYNC_LUA: &str = r"
local prefix, node = ARGV[1], ARGV[2]
local desired = {}
for i = 3, #ARGV, 3 do
  desired[ARGV[i] .. ' ' .. ARGV[i + 1]] = {ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])}
end
local current = redis.call('HGETALL', prefix .. ':node:' .. node .. ':presence')
for i = 1, #current, 2 do
  local field, have = current[i], tonumber(current[i + 1])
  local want = 0
  if desired[field] then want = desired[field][3]; desired[field] = nil end
  local sp = string.find(field, ' ', 1, true)
  if sp and want ~= have then
    adjust(prefix, node, string.sub(field, 1, sp - 1), string.sub(field, sp + 1), want - have)
  end
end
for _, d in pairs(desired) do adjust(prefix, node, d[1], d[2], d[3]) end
return 1";

/// A stored room message read back from a stream.
#[derive(Debug, Clone)]
pub struct Stored {
    /// Its offset.
    pub offset: Offset,
    /// Text or binary.
    pub kind: Kind,
    /// The stored body.
    pub body: Bytes,
}

/// What a history read found.
#[derive(Debug, Clone)]
pub struct History {
    /// Messages after the requested offset, oldest first.
    pub messages: Vec<Stored>,
    /// True when messages after the requested offset were trimmed away.
    pub truncated: bool,
}

/// The node's Redis command client (reconnects by itself; fails fast while Redis is down).
#[derive(Clone)]
pub struct Store {
    conn: ConnectionManager,
    keys: Keys,
    history_length: u64,
    publish: &'static Script,
    range: &'static Script,
    adjust: &'static Script,
    sync: &'static Script,
}

fn scripts() -> &'static [Script; 4] {
    static SCRIPTS: std::sync::OnceLock<[Script; 4]> = std::sync::OnceLock::new();
    SCRIPTS.get_or_init(|| {
        [
            Script::new(PUBLISH_LUA),
            Script::new(RANGE_LUA),
            Script::new(&format!("{ADJUST_FN_LUA}{ADJUST_LUA}")),
            Script::new(&format!("{ADJUST_FN_LUA}{SYNC_LUA}")),
        ]
    })
}

impl Store {
    /// A lazily connecting store for `client`.
    pub fn new(client: redis::Client, keys: Keys, history_length: u64) -> redis::RedisResult<Self> {
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(Duration::from_secs(2)))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(200));
        let conn = ConnectionManager::new_lazy_with_config(client, config)?;
        let [publish, range, adjust, sync] = scripts();
        Ok(Self {
            conn,
            keys,
            history_length,
            publish,
            range,
            adjust,
            sync,
        })
    }

    /// The cluster's key layout.
    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// Stores a room message and publishes it in one atomic step; returns its offset.
    pub async fn publish(&self, room: &str, kind: Kind, body: &[u8]) -> redis::RedisResult<Offset> {
        let id: String = self
            .publish
            .key(self.keys.history(room))
            .key(self.keys.room_channel(room))
            .arg(self.history_length)
            .arg(kind.tag())
            .arg(body)
            .invoke_async(&mut self.conn.clone())
            .await?;
        parse_offset(&id)
    }

    /// Messages of a room after `since` (at most the history length plus trimming slack).
    pub async fn history_after(&self, room: &str, since: Offset) -> redis::RedisResult<History> {
        let (first, trimmed, entries): (String, i64, Vec<Value>) = self
            .range
            .key(self.keys.history(room))
            .arg(since.to_string())
            .arg(self.history_length.saturating_mul(2).saturating_add(200))
            .invoke_async(&mut self.conn.clone())
            .await?;
        let truncated = match first.parse::<Offset>() {
            Ok(first) => trimmed > 0 && since < first,
            // No stream: whatever came after `since` is gone.
            Err(()) => trimmed < 0 && since > Offset::ZERO,
        };
        let messages = entries.into_iter().filter_map(parse_entry).collect();
        Ok(History {
            messages,
            truncated,
        })
    }

    /// The newest offset of a room's stream, if any.
    pub async fn last_offset(&self, room: &str) -> redis::RedisResult<Option<Offset>> {
        let reply: Vec<(String, Value)> = redis::cmd("XREVRANGE")
            .arg(self.keys.history(room))
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1)
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(reply.first().and_then(|(id, _)| id.parse().ok()))
    }

    /// Publishes a finished `direct` event on a user's channel.
    pub async fn publish_direct(&self, user: &str, frame: &str) -> redis::RedisResult<()> {
        let _: i64 = self
            .conn
            .clone()
            .publish(self.keys.user_channel(user), frame)
            .await?;
        Ok(())
    }

    /// Moves this node's count of (room, user) by `delta`; returns the room's members.
    pub async fn presence_adjust(
        &self,
        node: &str,
        room: &str,
        user: &str,
        delta: i64,
    ) -> redis::RedisResult<Vec<String>> {
        let mut members: Vec<String> = self
            .adjust
            .arg(self.keys.prefix())
            .arg(node)
            .arg(room)
            .arg(user)
            .arg(delta)
            .invoke_async(&mut self.conn.clone())
            .await?;
        members.sort();
        Ok(members)
    }

    /// The members of a room over all nodes.
    pub async fn presence_members(&self, room: &str) -> redis::RedisResult<Vec<String>> {
        let mut members: Vec<String> = self.conn.clone().hkeys(self.keys.presence(room)).await?;
        members.sort();
        Ok(members)
    }

    /// Makes `node`'s presence share equal to `counts` (empty: removes a dead node's share).
    pub async fn presence_sync(
        &self,
        node: &str,
        counts: &[(String, String, u32)],
    ) -> redis::RedisResult<()> {
        let mut invocation = self.sync.prepare_invoke();
        invocation.arg(self.keys.prefix()).arg(node);
        for (room, user, count) in counts {
            invocation.arg(room).arg(user).arg(*count);
        }
        let _: i64 = invocation.invoke_async(&mut self.conn.clone()).await?;
        Ok(())
    }

    /// Records this node's heartbeat and returns nodes silent since before `stale_before_ms`.
    pub async fn heartbeat(
        &self,
        node: &str,
        now_ms: u64,
        stale_before_ms: u64,
    ) -> redis::RedisResult<Vec<String>> {
        let mut conn = self.conn.clone();
        let _: i64 = conn.zadd(self.keys.nodes(), node, now_ms).await?;
        let stale: Vec<String> = conn
            .zrangebyscore(self.keys.nodes(), "-inf", format!("({stale_before_ms}"))
            .await?;
        Ok(stale.into_iter().filter(|n| n != node).collect())
    }

    /// Removes a dead node's presence share (publishing member_left where it was the last) and
    /// its heartbeat.
    pub async fn reap(&self, node: &str) -> redis::RedisResult<()> {
        self.presence_sync(node, &[]).await?;
        let _: i64 = self.conn.clone().zrem(self.keys.nodes(), node).await?;
        Ok(())
    }
}

fn parse_offset(id: &str) -> redis::RedisResult<Offset> {
    id.parse()
        .map_err(|()| redis::RedisError::from((redis::ErrorKind::Parse, "bad stream id")))
}

/// `[id, [field, value, ...]]` -> a stored message (fields `k` and `d`).
fn parse_entry(entry: Value) -> Option<Stored> {
    let Value::Array(mut parts) = entry else {
        return None;
    };
    if parts.len() != 2 {
        return None;
    }
    let Value::Array(fields) = parts.pop()? else {
        return None;
    };
    let offset = match parts.pop()? {
        Value::BulkString(id) => std::str::from_utf8(&id).ok()?.parse().ok()?,
        _ => return None,
    };
    let (mut kind, mut body) = (None, None);
    let mut it = fields.into_iter();
    while let (Some(Value::BulkString(k)), Some(Value::BulkString(v))) = (it.next(), it.next()) {
        match k.as_slice() {
            b"k" => kind = Kind::from_tag(&v),
            b"d" => body = Some(Bytes::from(v)),
            _ => {}
        }
    }
    Some(Stored {
        offset,
        kind: kind?,
        body: body?,
    })
}
