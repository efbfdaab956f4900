//! Offline checks of a `ChatCluster`: the CEL rules of the CRD (so `render` and unit tests, which
//! never see an API server, reject the same specs) plus what the schema cannot express.

use std::time::Duration;

use super::ChatCluster;

/// Longest `metadata.name` accepted: `<name>-haproxy` Services and `<name>-redis-0` pods with
/// their controller-revision-hash label must fit the 63-character limits.
pub const MAX_NAME_LEN: usize = 40;

/// A spec the operator will not turn into objects. The message tells the user what to change;
/// the controller shows it in the `Degraded` condition and applies nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// The object has no `metadata.name`.
    #[error("the ChatCluster has no metadata.name")]
    MissingName,
    /// The object has no `metadata.namespace` (`render` fills in `--namespace`).
    #[error("the ChatCluster has no metadata.namespace")]
    MissingNamespace,
    /// The name is too long for the derived object names.
    #[error(
        "metadata.name {name:?} is {len} characters; at most {MAX_NAME_LEN} are allowed so derived names such as {name}-haproxy fit Kubernetes' limits"
    )]
    NameTooLong {
        /// The offending name.
        name: String,
        /// Its length.
        len: usize,
    },
    /// More chat nodes than HAProxy server slots.
    #[error(
        "spec.replicas ({replicas}) exceeds spec.haproxy.serverSlots ({slots}): every chat node needs an HAProxy server slot; raise serverSlots or lower replicas"
    )]
    TooManyReplicas {
        /// Requested chat nodes.
        replicas: i32,
        /// Available server slots.
        slots: i32,
    },
    /// A numeric field is outside its range (the API server's schema also checks these).
    #[error("spec.{field} is {value}, outside {min}..={max}")]
    OutOfRange {
        /// Field path below `spec`.
        field: &'static str,
        /// Given value.
        value: i64,
        /// Smallest allowed.
        min: i64,
        /// Largest allowed.
        max: i64,
    },
    /// Burst below the sustained rate.
    #[error("spec.rateBurst ({burst}) must be at least spec.ratePerSecond ({rate})")]
    BurstBelowRate {
        /// Given burst.
        burst: i32,
        /// Given rate.
        rate: i32,
    },
    /// A timeout that HAProxy (or this operator) cannot read.
    #[error(
        "spec.haproxy.timeouts.{field} is {value:?}; write a whole number followed by ms, s, m or h (for example 30s)"
    )]
    BadDuration {
        /// Which timeout.
        field: &'static str,
        /// Given text.
        value: String,
    },
    /// Idle WebSockets would be cut between two pings.
    #[error(
        "spec.haproxy.timeouts.tunnel ({tunnel}) must exceed spec.pingIntervalSeconds ({ping}s), or HAProxy closes idle WebSockets between pings"
    )]
    TunnelBelowPing {
        /// Given tunnel timeout.
        tunnel: String,
        /// Given ping interval in seconds.
        ping: i32,
    },
    /// Both or neither of the auth modes.
    #[error("set exactly one of spec.auth.jwtSecretRef and spec.auth.anonymous: true")]
    AuthAmbiguous,
    /// Managed-Redis settings next to an external Redis.
    #[error(
        "spec.redis.storage and spec.redis.storageClassName only apply to a managed Redis; remove them or remove spec.redis.external"
    )]
    StorageWithExternalRedis,
}

impl SpecError {
    /// CamelCase reason for the `Degraded` condition and the error metric label.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::MissingName => "MissingName",
            Self::MissingNamespace => "MissingNamespace",
            Self::NameTooLong { .. } => "NameTooLong",
            Self::TooManyReplicas { .. } => "TooManyReplicas",
            Self::OutOfRange { .. } => "OutOfRange",
            Self::BurstBelowRate { .. } => "BurstBelowRate",
            Self::BadDuration { .. } => "BadDuration",
            Self::TunnelBelowPing { .. } => "TunnelBelowPing",
            Self::AuthAmbiguous => "AuthAmbiguous",
            Self::StorageWithExternalRedis => "StorageWithExternalRedis",
        }
    }
}

/// Parses the duration syntax the CRD accepts (`^[0-9]{1,9}(ms|s|m|h)$`), which both HAProxy
/// and CEL's `duration()` understand.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (digits, unit) = text.split_at(split);
    if digits.is_empty() || digits.len() > 9 {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    match unit {
        "ms" => Some(Duration::from_millis(n)),
        "s" => Some(Duration::from_secs(n)),
        "m" => Some(Duration::from_secs(n * 60)),
        "h" => Some(Duration::from_secs(n * 3600)),
        _ => None,
    }
}

fn range(field: &'static str, value: i32, min: i64, max: i64) -> Result<(), SpecError> {
    let value = i64::from(value);
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(SpecError::OutOfRange {
            field,
            value,
            min,
            max,
        })
    }
}

/// Checks everything the CRD's schema and CEL rules check, and the name length.
pub fn validate(cc: &ChatCluster) -> Result<(), SpecError> {
    let name = cc.metadata.name.as_deref().ok_or(SpecError::MissingName)?;
    if name.len() > MAX_NAME_LEN {
        return Err(SpecError::NameTooLong {
            name: name.to_owned(),
            len: name.len(),
        });
    }
    let s = &cc.spec;
    range("replicas", s.replicas, 0, 1000)?;
    range("capacity", s.capacity, 1, 1_000_000)?;
    range("maxMessageBytes", s.max_message_bytes, 256, 16_777_216)?;
    range("ratePerSecond", s.rate_per_second, 1, 100_000)?;
    range("rateBurst", s.rate_burst, 1, 100_000)?;
    range("outboundQueue", s.outbound_queue, 1, 65_536)?;
    range("drainGraceSeconds", s.drain_grace_seconds, 0, 3600)?;
    range("pingIntervalSeconds", s.ping_interval_seconds, 1, 3600)?;
    range("historyLength", s.history_length, 0, 1_000_000)?;
    range("haproxy.replicas", s.haproxy.replicas, 1, 100)?;
    range("haproxy.serverSlots", s.haproxy.server_slots, 1, 1000)?;
    range(
        "haproxy.maxConnections",
        s.haproxy.max_connections,
        1,
        1_000_000,
    )?;
    range("haproxy.service.port", s.haproxy.service.port, 1, 65535)?;
    if s.replicas > s.haproxy.server_slots {
        return Err(SpecError::TooManyReplicas {
            replicas: s.replicas,
            slots: s.haproxy.server_slots,
        });
    }
    if s.rate_burst < s.rate_per_second {
        return Err(SpecError::BurstBelowRate {
            burst: s.rate_burst,
            rate: s.rate_per_second,
        });
    }
    let t = &s.haproxy.timeouts;
    for (field, value) in [
        ("connect", &t.connect),
        ("client", &t.client),
        ("clientFin", &t.client_fin),
        ("server", &t.server),
        ("tunnel", &t.tunnel),
    ] {
        if parse_duration(value).is_none() {
            return Err(SpecError::BadDuration {
                field,
                value: value.clone(),
            });
        }
    }
    let tunnel = parse_duration(&t.tunnel).unwrap_or_default();
    if tunnel <= Duration::from_secs(s.ping_interval_seconds.max(0) as u64) {
        return Err(SpecError::TunnelBelowPing {
            tunnel: t.tunnel.clone(),
            ping: s.ping_interval_seconds,
        });
    }
    if s.auth.anonymous == s.auth.jwt_secret_ref.is_some() {
        return Err(SpecError::AuthAmbiguous);
    }
    if s.redis.external.is_some()
        && (s.redis.storage.is_some() || s.redis.storage_class_name.is_some())
    {
        return Err(SpecError::StorageWithExternalRedis);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_in_the_shared_haproxy_and_cel_syntax() {
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Some(Duration::from_secs(3600)));
        for bad in [
            "",
            "s",
            "30",
            "1d",
            "1.5s",
            "-1s",
            "30 s",
            "1234567890s",
            "1hs",
        ] {
            assert_eq!(parse_duration(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_default_spec_is_valid() {
        assert_eq!(validate(&ChatCluster::test()), Ok(()));
    }
}
