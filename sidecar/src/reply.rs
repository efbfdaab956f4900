//! The agent-check decision: what one HAProxy agent reply says about the node, as a pure function
//! of what the poller last saw (`Observation`) and the full/not-full latch (`Hysteresis`).
//!
//! # Which agent words, and why (measured on HAProxy 2.6.12)
//!
//! The requirement for a full node and for a draining node is the same: no new connections, not
//! even from a client that presents the node's cookie, while the open WebSocket tunnels stay up.
//! Experiments against a real HAProxy (`balance leastconn`, `cookie .. insert indirect nocache
//! dynamic`, `option redispatch`, no `on-marked-down shutdown-sessions`, `agent-inter 200ms`; the
//! details are in `docs/haproxy-agent.md`) showed:
//!
//! - `up drain` and `up ready 0%`: new clients avoid the node, but a client presenting the node's
//!   cookie is still sent to it (HAProxy honours persistence on a server with weight 0).
//!   Not enough.
//! - `up maint`: cookie holders are redispatched with a new `Set-Cookie`, open tunnels keep
//!   working, and a later `up ready N%` lifts it. But the agent's `maint` sets the very same admin
//!   flag as the runtime API's `set server .. state maint`, and it pauses the HTTP health check.
//! - `down` (with a `#reason`): cookie holders are redispatched with a new `Set-Cookie`, open
//!   tunnels keep working (no `shutdown-sessions`), the HTTP health check keeps running, `show
//!   stat` shows `DOWN (agent)` with `last_agt` = `via agent : down (<reason>)`, and `up ready N%`
//!   brings the server back within one agent interval (about 80 ms after the reply changed).
//!
//! So both full and draining answer `down #full` / `down #draining`; the reason tells them apart in
//! `show stat`. Healthy answers `up ready N%`: `ready` also clears a `drain`/`maint` left by an
//! older agent (and, note, an operator's runtime `maint`: disable the agent first for manual
//! maintenance). When HAProxy cannot reach the agent at all it keeps the server's last state,
//! which is why the sidecar keeps answering during a drain (see `lib.rs`).
//!
//! `maxconn:N` is not sent: HAProxy counts only its own connections against it and queues (rather
//! than redispatches) the excess, which is wrong with several HAProxy replicas.

use std::fmt;
use std::time::Duration;

use chatcluster_common::NodeStats;

/// What the poller knows about the chat-node when HAProxy asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observation {
    /// No poll has finished yet (the sidecar just started).
    NotPolledYet,
    /// The latest poll failed (connection refused, timeout, bad status or body).
    Unreachable {
        /// Short, single-word-ish description of the failure, shown as the reply's `#reason`.
        error: String,
    },
    /// The latest successful poll is older than `--stale-after-ms`.
    Stale {
        /// Age of the latest successful poll.
        age: Duration,
    },
    /// Fresh stats from the latest poll.
    Fresh(NodeStats),
}

/// The full/not-full latch, so a node hovering at capacity does not flap between `up` and `down`.
///
/// A node enters "full" when its connections reach its capacity and leaves it only when they fall
/// below `release_percent` of the capacity (default 95%).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hysteresis {
    full: bool,
    release_percent: u8,
}

impl Hysteresis {
    /// A latch that starts "not full" and releases below `release_percent` (clamped to 1..=100).
    pub fn new(release_percent: u8) -> Self {
        Self {
            full: false,
            release_percent: release_percent.clamp(1, 100),
        }
    }

    /// True while the latch holds the node as full.
    pub fn is_full(&self) -> bool {
        self.full
    }

    /// Feeds one observation of connections/capacity and returns whether the node counts as full.
    /// Feeding the same numbers twice gives the same answer, so calling this per agent check and
    /// per poll is equivalent.
    fn update(&mut self, connections: u64, capacity: u64) -> bool {
        if capacity == 0 || connections >= capacity {
            self.full = true;
        } else if u128::from(connections) * 100
            < u128::from(capacity) * u128::from(self.release_percent)
        {
            self.full = false;
        }
        self.full
    }
}

impl Default for Hysteresis {
    fn default() -> Self {
        Self::new(95)
    }
}

/// Why a reply says `down`; rendered as the `#reason` HAProxy shows in `show stat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DownReason {
    /// The node is at capacity (or inside the hysteresis band after being at capacity).
    Full,
    /// The node's capacity is 0: it takes no clients at all.
    NoCapacity,
    /// The node is draining (shutting down): no new connections at all.
    Draining,
    /// The latest poll of `/stats` failed.
    Unreachable,
    /// The latest successful poll is too old.
    Stale,
    /// The sidecar has not polled the node yet.
    Starting,
}

impl DownReason {
    /// The word used in the reply and as the `state` metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Full => "full",
            Self::NoCapacity => "no-capacity",
            Self::Draining => "draining",
            Self::Unreachable => "unreachable",
            Self::Stale => "stale",
            Self::Starting => "starting",
        }
    }
}

/// One agent-check reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// `up ready <weight>%`: the node takes new clients; weight 1..=100 follows free capacity.
    Up {
        /// Percent of the configured `weight 100`; never 0.
        weight_percent: u8,
    },
    /// `down #<reason>`: no new connections, cookie holders are redispatched, open tunnels stay.
    Down(DownReason),
}

impl Reply {
    /// Every state label the reply can have, for exporting a complete state gauge family.
    pub const STATES: [&'static str; 7] = [
        "up",
        "full",
        "no-capacity",
        "draining",
        "unreachable",
        "stale",
        "starting",
    ];

    /// `up` or the down reason: the label of the `sidecar_state` metric.
    pub fn state(&self) -> &'static str {
        match self {
            Self::Up { .. } => "up",
            Self::Down(reason) => reason.as_str(),
        }
    }

    /// The weight HAProxy will apply, in percent (0 when down).
    pub fn weight_percent(&self) -> u8 {
        match self {
            Self::Up { weight_percent } => *weight_percent,
            Self::Down(_) => 0,
        }
    }
}

/// The agent line without the trailing newline, e.g. `up ready 57%` or `down #draining`.
impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Up { weight_percent } => write!(f, "up ready {weight_percent}%"),
            Self::Down(reason) => write!(f, "down #{}", reason.as_str()),
        }
    }
}

/// Percentage of free capacity, rounded up so any free slot gives at least 1%.
/// A node whose Redis link is down stays up at 1%: it can still serve, but any node with a
/// working Redis is preferred; reporting it down would turn a Redis blip into a full outage.
fn weight_for(stats: &NodeStats) -> u8 {
    if !stats.redis_connected {
        return 1;
    }
    let free = u128::from(stats.capacity.saturating_sub(stats.connections));
    let capacity = u128::from(stats.capacity);
    let percent = (free * 100).div_ceil(capacity);
    // free <= capacity, so percent <= 100.
    u8::try_from(percent).unwrap_or(100).max(1)
}

/// Decides the agent reply. Draining wins over full; full is latched by `hysteresis`.
pub fn agent_reply(observation: &Observation, hysteresis: &mut Hysteresis) -> Reply {
    let stats = match observation {
        Observation::NotPolledYet => return Reply::Down(DownReason::Starting),
        Observation::Unreachable { .. } => return Reply::Down(DownReason::Unreachable),
        Observation::Stale { .. } => return Reply::Down(DownReason::Stale),
        Observation::Fresh(stats) => stats,
    };
    // Update the latch even when draining, so it is right if draining were ever cancelled.
    let full = hysteresis.update(stats.connections, stats.capacity);
    if stats.draining {
        Reply::Down(DownReason::Draining)
    } else if stats.capacity == 0 {
        Reply::Down(DownReason::NoCapacity)
    } else if full {
        Reply::Down(DownReason::Full)
    } else {
        Reply::Up {
            weight_percent: weight_for(stats),
        }
    }
}

#[cfg(test)]
#[path = "reply_tests.rs"]
mod tests;
