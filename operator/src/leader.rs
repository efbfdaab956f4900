//! Leader election with a `coordination.k8s.io/v1` Lease, so two operator replicas never
//! reconcile at the same time. Only get/create/replace are used: every write carries the
//! `resourceVersion` that was read, so two candidates racing for the Lease cannot both win (the
//! loser gets 409 Conflict). As in client-go, expiry is judged by *this* replica's clock: a Lease
//! counts as expired when its record has not changed for `lease_duration` since we first saw it,
//! which keeps clock skew between nodes out of the decision.
//!
//! The decision itself ([`decide`]) is a pure function; [`LeaderElector`] does the I/O.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::PostParams;

use crate::error::{Error, Result};

/// Where the Lease lives, who we are, and how fast to renew.
#[derive(Debug, Clone)]
pub struct LeaseConfig {
    /// Lease name (`chatcluster-operator`).
    pub name: String,
    /// Lease namespace (the operator's own namespace).
    pub namespace: String,
    /// This replica's identity (its pod name).
    pub identity: String,
    /// How long a Lease stays valid without renewal.
    pub lease_duration: Duration,
    /// How often the leader renews.
    pub renew_interval: Duration,
    /// How often a standby retries to acquire.
    pub retry_interval: Duration,
}

impl LeaseConfig {
    /// How long the leader keeps trying to renew before it steps down: the Lease duration less
    /// a third of it (at least one renew interval).
    pub fn renew_deadline(&self) -> Duration {
        let margin = self.renew_interval.max(self.lease_duration / 3);
        self.lease_duration.saturating_sub(margin)
    }
}

/// What this replica saw of the Lease record, and when it first saw it that way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation {
    /// The Lease's `resourceVersion` (changes on every renewal).
    pub resource_version: String,
    /// Local time at which that version was first seen.
    pub seen_at: Instant,
}

/// What to do with the Lease as it is now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// No Lease exists: create it with us as holder.
    Create,
    /// We hold it: write a fresh `renewTime`.
    Renew,
    /// Nobody holds it or the holder stopped renewing: take it over.
    TakeOver,
    /// Someone else holds a live Lease: stay standby.
    Standby {
        /// The current holder.
        holder: String,
    },
}

/// Decides what to do with `lease` (pure). `observation` is updated to the Lease's current
/// version so repeated calls measure how long the record has stood still.
pub fn decide(
    lease: Option<&Lease>,
    identity: &str,
    observation: &mut Option<Observation>,
    now: Instant,
    lease_duration: Duration,
) -> Decision {
    let Some(lease) = lease else {
        *observation = None;
        return Decision::Create;
    };
    let rv = lease.metadata.resource_version.clone().unwrap_or_default();
    if observation
        .as_ref()
        .is_none_or(|o| o.resource_version != rv)
    {
        *observation = Some(Observation {
            resource_version: rv,
            seen_at: now,
        });
    }
    let holder = lease
        .spec
        .as_ref()
        .and_then(|s| s.holder_identity.clone())
        .unwrap_or_default();
    if holder == identity {
        return Decision::Renew;
    }
    if holder.is_empty() {
        return Decision::TakeOver;
    }
    // The holder's own duration wins over ours, so replicas with different flags agree.
    let duration = lease
        .spec
        .as_ref()
        .and_then(|s| s.lease_duration_seconds)
        .and_then(|s| u64::try_from(s).ok())
        .map(Duration::from_secs)
        .unwrap_or(lease_duration);
    let seen_at = observation.as_ref().map(|o| o.seen_at).unwrap_or(now);
    if now.duration_since(seen_at) >= duration {
        Decision::TakeOver
    } else {
        Decision::Standby { holder }
    }
}

/// Acquires, renews and releases the Lease.
pub struct LeaderElector {
    api: Api<Lease>,
    config: LeaseConfig,
    observation: Option<Observation>,
}

impl LeaderElector {
    /// An elector for `config.namespace`/`config.name`.
    pub fn new(client: kube::Client, config: LeaseConfig) -> Self {
        let api = Api::namespaced(client, &config.namespace);
        Self {
            api,
            config,
            observation: None,
        }
    }

    /// The configuration this elector runs with.
    pub fn config(&self) -> &LeaseConfig {
        &self.config
    }

    /// One round: reads the Lease and creates, renews or takes it over when allowed.
    /// Returns whether we hold the Lease afterwards. A lost race (409) is `Ok(false)`.
    pub async fn try_acquire_or_renew(&mut self) -> Result<bool> {
        let current = self
            .api
            .get_opt(&self.config.name)
            .await
            .map_err(|e| Error::kube(format!("get Lease {}", self.config.name), e))?;
        let decision = decide(
            current.as_ref(),
            &self.config.identity,
            &mut self.observation,
            Instant::now(),
            self.config.lease_duration,
        );
        let now = MicroTime(Timestamp::now());
        let duration_secs = i32::try_from(self.config.lease_duration.as_secs()).unwrap_or(i32::MAX);
        let result = match (decision, current) {
            (Decision::Create, _) => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.config.name.clone()),
                        namespace: Some(self.config.namespace.clone()),
                        ..ObjectMeta::default()
                    },
                    spec: Some(LeaseSpec {
                        holder_identity: Some(self.config.identity.clone()),
                        lease_duration_seconds: Some(duration_secs),
                        acquire_time: Some(now.clone()),
                        renew_time: Some(now),
                        lease_transitions: Some(0),
                        ..LeaseSpec::default()
                    }),
                };
                self.api
                    .create(&PostParams::default(), &lease)
                    .await
                    .map(|_| ())
            }
            (Decision::Renew, Some(mut lease)) => {
                let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
                spec.renew_time = Some(now);
                spec.lease_duration_seconds = Some(duration_secs);
                self.api
                    .replace(&self.config.name, &PostParams::default(), &lease)
                    .await
                    .map(|_| ())
            }
            (Decision::TakeOver, Some(mut lease)) => {
                let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
                tracing::info!(previous = ?spec.holder_identity, "taking over the leader Lease");
                spec.holder_identity = Some(self.config.identity.clone());
                spec.acquire_time = Some(now.clone());
                spec.renew_time = Some(now);
                spec.lease_duration_seconds = Some(duration_secs);
                spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
                self.api
                    .replace(&self.config.name, &PostParams::default(), &lease)
                    .await
                    .map(|_| ())
            }
            (Decision::Standby { holder }, _) => {
                tracing::debug!(%holder, "another replica leads");
                return Ok(false);
            }
            (Decision::Renew | Decision::TakeOver, None) => {
                unreachable!("decided on an existing Lease")
            }
        };
        match result {
            Ok(()) => Ok(true),
            Err(kube::Error::Api(status)) if status.code == 409 => {
                tracing::debug!("lost the race for the Lease");
                Ok(false)
            }
            Err(err) => Err(Error::kube(
                format!("write Lease {}", self.config.name),
                err,
            )),
        }
    }

    /// Waits until we hold the Lease, retrying every `retry_interval`. API errors are logged and
    /// retried: a standby must survive API server hiccups.
    pub async fn acquire(&mut self) {
        loop {
            match self.try_acquire_or_renew().await {
                Ok(true) => {
                    tracing::info!(identity = %self.config.identity, "became leader");
                    return;
                }
                Ok(false) => {}
                Err(err) => tracing::warn!(%err, "leader election attempt failed"),
            }
            tokio::time::sleep(self.config.retry_interval).await;
        }
    }

    /// Renews every `renew_interval` while we lead; returns when leadership is lost: another
    /// holder appears, or no renewal succeeded for `lease_duration` (someone may take over then).
    pub async fn hold(&mut self) {
        let mut last_renewed = Instant::now();
        loop {
            tokio::time::sleep(self.config.renew_interval).await;
            match self.try_acquire_or_renew().await {
                Ok(true) => last_renewed = Instant::now(),
                Ok(false) => {
                    tracing::warn!("another replica holds the Lease: stepping down");
                    return;
                }
                Err(err) => {
                    tracing::warn!(%err, "cannot renew the leader Lease");
                    // Step down well before the Lease can expire for others (as client-go's renew
                    // deadline), leaving time for in-flight reconciles to finish, so two leaders
                    // never overlap.
                    if last_renewed.elapsed() >= self.config.renew_deadline() {
                        tracing::warn!("renewal deadline passed: stepping down");
                        return;
                    }
                }
            }
        }
    }

    /// Gives the Lease up on shutdown (empty holder) so a standby takes over at once.
    pub async fn release(&mut self) -> Result<()> {
        let Some(mut lease) = self
            .api
            .get_opt(&self.config.name)
            .await
            .map_err(|e| Error::kube("get Lease for release", e))?
        else {
            return Ok(());
        };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        if spec.holder_identity.as_deref() != Some(self.config.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.acquire_time = None;
        spec.renew_time = None;
        self.api
            .replace(&self.config.name, &PostParams::default(), &lease)
            .await
            .map_err(|e| Error::kube("release Lease", e))?;
        tracing::info!("released the leader Lease");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(holder: Option<&str>, rv: &str, secs: i32) -> Lease {
        Lease {
            metadata: ObjectMeta {
                resource_version: Some(rv.into()),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: holder.map(str::to_string),
                lease_duration_seconds: Some(secs),
                ..LeaseSpec::default()
            }),
        }
    }

    const D: Duration = Duration::from_secs(15);

    #[test]
    fn missing_lease_is_created_and_own_lease_renewed() {
        let mut obs = None;
        let now = Instant::now();
        assert_eq!(decide(None, "a", &mut obs, now, D), Decision::Create);
        assert_eq!(
            decide(Some(&lease(Some("a"), "1", 15)), "a", &mut obs, now, D),
            Decision::Renew
        );
    }

    #[test]
    fn empty_holder_is_taken_at_once() {
        let mut obs = None;
        let l = lease(None, "1", 15);
        assert_eq!(
            decide(Some(&l), "a", &mut obs, Instant::now(), D),
            Decision::TakeOver
        );
    }

    #[test]
    fn live_lease_of_another_waits_until_it_stands_still_for_its_duration() {
        let mut obs = None;
        let t0 = Instant::now();
        let l = lease(Some("b"), "1", 10);
        let standby = Decision::Standby { holder: "b".into() };
        assert_eq!(decide(Some(&l), "a", &mut obs, t0, D), standby);
        // The holder's 10 s wins over our 15 s default.
        assert_eq!(
            decide(Some(&l), "a", &mut obs, t0 + Duration::from_secs(9), D),
            standby
        );
        assert_eq!(
            decide(Some(&l), "a", &mut obs, t0 + Duration::from_secs(10), D),
            Decision::TakeOver
        );
    }

    #[test]
    fn renewals_by_the_holder_restart_the_expiry_clock() {
        let mut obs = None;
        let t0 = Instant::now();
        let standby = Decision::Standby { holder: "b".into() };
        assert_eq!(
            decide(Some(&lease(Some("b"), "1", 10)), "a", &mut obs, t0, D),
            standby
        );
        let t1 = t0 + Duration::from_secs(8);
        assert_eq!(
            decide(Some(&lease(Some("b"), "2", 10)), "a", &mut obs, t1, D),
            standby
        );
        // 12 s after the first sighting but only 4 s after the renewal: still live.
        let t2 = t0 + Duration::from_secs(12);
        assert_eq!(
            decide(Some(&lease(Some("b"), "2", 10)), "a", &mut obs, t2, D),
            standby
        );
        let t3 = t1 + Duration::from_secs(10);
        assert_eq!(
            decide(Some(&lease(Some("b"), "2", 10)), "a", &mut obs, t3, D),
            Decision::TakeOver
        );
    }
}
