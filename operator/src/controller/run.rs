//! Process wiring of `chatcluster-operator run`: flags, the startup CRD check, the admin server,
//! leader election and the controller loop, all stopping on the shutdown future (SIGTERM).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::runtime::Controller;
use kube::runtime::watcher;
use kube::{Api, Client, CustomResourceExt, Resource};
use tokio_util::sync::CancellationToken;

use super::{Context, OwnedStores, Settings, error_policy, reconcile};
use crate::admin::{self, AdminState};
use crate::crd::ChatCluster;
use crate::defaults::OperatorDefaults;
use crate::error::{Error, Result};
use crate::leader::{LeaderElector, LeaseConfig};
use crate::metrics::Metrics;

/// Flags of `chatcluster-operator run`.
#[derive(clap::Args, Debug, Clone)]
pub struct RunArgs {
    /// Address of the admin server (`/healthz`, `/readyz`, `/metrics`).
    #[arg(long, env = "CHATCLUSTER_ADMIN_LISTEN", default_value = "0.0.0.0:8080")]
    pub admin_listen: SocketAddr,
    /// Elect a leader through a Lease so several replicas can run; only the leader reconciles.
    #[arg(long, env = "CHATCLUSTER_LEADER_ELECTION", default_value_t = false)]
    pub leader_election: bool,
    /// Name of the leader Lease.
    #[arg(
        long,
        env = "CHATCLUSTER_LEASE_NAME",
        default_value = "chatcluster-operator"
    )]
    pub lease_name: String,
    /// Namespace of the leader Lease (the operator's own namespace).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    pub lease_namespace: String,
    /// This replica's identity in the Lease and in Events (empty: the hostname).
    #[arg(long, env = "POD_NAME", default_value = "")]
    pub identity: String,
    /// Seconds a Lease stays valid without renewal; a standby takes over after that.
    #[arg(long, env = "CHATCLUSTER_LEASE_DURATION_SECONDS", default_value_t = 15)]
    pub lease_duration_seconds: u64,
    /// Seconds between renewals by the leader (and attempts by a standby).
    #[arg(long, env = "CHATCLUSTER_LEASE_RENEW_SECONDS", default_value_t = 5)]
    pub lease_renew_seconds: u64,
    /// Seconds between reconciles of an unchanged ChatCluster.
    #[arg(long, env = "CHATCLUSTER_RESYNC_SECONDS", default_value_t = 300)]
    pub resync_seconds: u64,
    /// Log format: `text` or `json`.
    #[arg(long, env = "CHATCLUSTER_LOG_FORMAT", default_value = "text")]
    pub log_format: chatcluster_common::LogFormat,
    /// Image defaults.
    #[command(flatten)]
    pub defaults: OperatorDefaults,
}

impl RunArgs {
    fn identity(&self) -> String {
        if !self.identity.is_empty() {
            return self.identity.clone();
        }
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| format!("chatcluster-operator-{}", std::process::id()))
    }

    fn lease_config(&self) -> LeaseConfig {
        LeaseConfig {
            name: self.lease_name.clone(),
            namespace: self.lease_namespace.clone(),
            identity: self.identity(),
            lease_duration: Duration::from_secs(self.lease_duration_seconds.max(2)),
            renew_interval: Duration::from_secs(self.lease_renew_seconds.max(1)),
            retry_interval: Duration::from_secs(self.lease_renew_seconds.max(1)),
        }
    }
}

/// Fails with a message that says how to install the CRD when `chatclusters.chatcluster.io` is
/// missing or does not serve this operator's version.
pub async fn check_crd(client: &Client) -> Result<()> {
    let name = ChatCluster::crd_name();
    let version = ChatCluster::version(&()).to_string();
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd = api
        .get_opt(name)
        .await
        .map_err(|e| Error::kube(format!("get CustomResourceDefinition {name}"), e))?;
    let Some(crd) = crd else {
        return Err(Error::CrdMissing {
            name: name.to_string(),
        });
    };
    if !crd
        .spec
        .versions
        .iter()
        .any(|v| v.name == version && v.served)
    {
        return Err(Error::CrdVersionMissing {
            name: name.to_string(),
            version,
        });
    }
    Ok(())
}

/// Runs the controller until `stop` resolves; in-flight reconciles finish first.
pub async fn run_controller(
    client: Client,
    settings: Settings,
    metrics: Metrics,
    stop: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let controller = Controller::new(
        Api::<ChatCluster>::all(client.clone()),
        watcher::Config::default().any_semantic(),
    );
    let (controller, stores) = OwnedStores::attach(controller, &client);
    let ctx = Arc::new(Context::new(client, settings, stores, metrics));
    controller
        .graceful_shutdown_on(stop)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            match result {
                Ok((obj, _)) => tracing::debug!(object = %obj, "reconciled"),
                Err(err) => tracing::debug!(%err, "reconcile attempt ended with an error"),
            }
        })
        .await;
}

/// Alternates between standby and leader until `shutdown` is cancelled: waits for the Lease,
/// runs the controller while renewing it, stops the controller when the Lease is lost, and
/// releases the Lease on shutdown so a standby takes over at once.
pub async fn run_with_leader_election(
    client: Client,
    settings: Settings,
    metrics: Metrics,
    mut elector: LeaderElector,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = elector.acquire() => {}
        }
        metrics.leader.set(1);
        let lost = shutdown.child_token();
        let controller = tokio::spawn(run_controller(
            client.clone(),
            settings.clone(),
            metrics.clone(),
            lost.clone().cancelled_owned(),
        ));
        let shutting_down = tokio::select! {
            () = elector.hold() => false,
            () = shutdown.cancelled() => true,
        };
        lost.cancel();
        if let Err(err) = controller.await {
            tracing::error!(%err, "controller task failed");
        }
        metrics.leader.set(0);
        if shutting_down {
            if let Err(err) = elector.release().await {
                tracing::warn!(%err, "cannot release the leader Lease");
            }
            return;
        }
        tracing::warn!("lost leadership: controller stopped, back to standby");
    }
}

/// `chatcluster-operator run`: connect, bind the admin port and [`serve`] until `shutdown`.
pub async fn run(args: RunArgs, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<()> {
    let client = Client::try_default().await.map_err(|e| {
        Error::kube(
            "connect to the API server (kubeconfig or in-cluster config)",
            e,
        )
    })?;
    let listener = tokio::net::TcpListener::bind(args.admin_listen)
        .await
        .map_err(Error::Admin)?;
    tracing::info!(addr = %args.admin_listen, "admin server listening");
    serve(args, client, listener, shutdown).await
}

/// Serves the admin endpoints on `admin_listener`, checks the CRD (then `/readyz` turns 200:
/// a standby replica is ready too, so rolling updates of the operator never stall), and runs the
/// controller, under leader election if enabled, until `shutdown` resolves. Everything it
/// started has stopped when it returns.
pub async fn serve(
    args: RunArgs,
    client: Client,
    admin_listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let metrics = Metrics::new();
    let admin_state = AdminState::new(metrics.clone());
    let token = CancellationToken::new();
    let admin = tokio::spawn(admin::serve(
        admin_listener,
        admin_state.clone(),
        token.clone().cancelled_owned(),
    ));
    let signal = {
        let token = token.clone();
        tokio::spawn(async move {
            shutdown.await;
            token.cancel();
        })
    };
    let outcome = tokio::select! {
        checked = check_crd(&client) => checked,
        () = token.cancelled() => Ok(()),
    };
    if outcome.is_ok() && !token.is_cancelled() {
        admin_state.set_ready(true);
        let settings = Settings {
            defaults: args.defaults.clone(),
            resync: Duration::from_secs(args.resync_seconds.max(1)),
            instance: Some(args.identity()),
            ..Settings::default()
        };
        if args.leader_election {
            let config = args.lease_config();
            tracing::info!(lease = %config.name, namespace = %config.namespace, identity = %config.identity, "leader election on");
            let elector = LeaderElector::new(client.clone(), config);
            run_with_leader_election(client, settings, metrics, elector, token.clone()).await;
        } else {
            metrics.leader.set(1);
            run_controller(client, settings, metrics, token.clone().cancelled_owned()).await;
        }
    }
    token.cancel();
    signal.abort();
    match admin.await {
        Ok(result) => result.map_err(Error::Admin)?,
        Err(err) => tracing::error!(%err, "admin server task failed"),
    }
    tracing::info!("operator stopped");
    outcome
}
