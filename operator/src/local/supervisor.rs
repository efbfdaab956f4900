//! The supervisor: starts a planned set of children stage by stage, waits until each stage is
//! ready, keeps them running (a child that dies is restarted with backoff by its own loop in
//! [`super::child`]), and stops them in order: children that drain first, while the proxy in
//! front of them still runs, then everything else in reverse start order.
//!
//! If startup fails (a binary is missing, a child keeps crashing before it is ready, or the ready
//! deadline passes) every child already started is stopped before the error is returned, so no
//! process is left behind.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::child::{
    Backoff, ChildControl, ChildSpec, ChildStatus, LogPrefix, StopPolicy, run_child,
};
use super::error::Error;

/// Tunables of a supervisor.
#[derive(Debug, Clone)]
pub struct SupervisorOptions {
    /// Restart delays for dying children.
    pub backoff: Backoff,
    /// Deadline for each stage to become ready.
    pub ready_timeout: Duration,
    /// A child that exits this many times before it was ever ready fails the startup.
    pub max_start_failures: u32,
}

impl Default for SupervisorOptions {
    fn default() -> Self {
        Self {
            backoff: Backoff::default(),
            ready_timeout: Duration::from_secs(60),
            max_start_failures: 3,
        }
    }
}

struct Supervised {
    spec: Arc<ChildSpec>,
    status: watch::Receiver<ChildStatus>,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

/// A running set of children.
pub struct Supervisor {
    children: Vec<Supervised>,
    /// Children being stopped on their own (scale-down), awaited by `shutdown`.
    retiring: Vec<JoinHandle<()>>,
    kill_now: CancellationToken,
    options: SupervisorOptions,
    prefix: LogPrefix,
}

impl Supervisor {
    /// A supervisor with no children yet.
    pub fn new(options: SupervisorOptions) -> Self {
        Self {
            children: Vec::new(),
            retiring: Vec::new(),
            kill_now: CancellationToken::new(),
            options,
            prefix: LogPrefix { width: 0 },
        }
    }

    /// Starts `specs` stage by stage and returns once every child is ready. On failure it stops
    /// whatever was started and returns the reason. If the returned future is dropped before it
    /// finishes (Ctrl-C during startup), call [`Supervisor::shutdown`] to stop what runs.
    pub async fn start(&mut self, specs: Vec<ChildSpec>) -> Result<(), Error> {
        let width = specs.iter().map(|s| s.name.len()).max().unwrap_or(0);
        self.prefix.width = self.prefix.width.max(width);
        let mut stages: Vec<u8> = specs.iter().map(|s| s.stage).collect();
        stages.sort_unstable();
        stages.dedup();
        let mut specs = specs;
        for stage in stages {
            let (now, later): (Vec<_>, Vec<_>) = specs.into_iter().partition(|s| s.stage == stage);
            specs = later;
            let first = self.children.len();
            for spec in now {
                self.spawn(spec);
            }
            if let Err(err) = self.wait_ready(first).await {
                self.shutdown().await;
                return Err(err);
            }
        }
        Ok(())
    }

    /// Makes the log prefix column at least as wide as the longest of `names` (children that
    /// may be added later keep the columns aligned).
    pub fn reserve_width<'a>(&mut self, names: impl IntoIterator<Item = &'a str>) {
        let width = names.into_iter().map(str::len).max().unwrap_or(0);
        self.prefix.width = self.prefix.width.max(width);
    }

    /// Starts more children now, without waiting for them to be ready (a scale-up: HAProxy's
    /// health checks admit them once they are).
    pub fn add(&mut self, specs: Vec<ChildSpec>) {
        for spec in specs {
            self.spawn(spec);
        }
    }

    /// Stops the named children in the background, in the same order as [`Supervisor::shutdown`]
    /// (a scale-down: the node drains while everything else keeps running).
    pub fn retire(&mut self, names: &[String]) {
        let (leaving, staying) = std::mem::take(&mut self.children)
            .into_iter()
            .partition(|c| names.contains(&c.spec.name));
        self.children = staying;
        self.retiring.push(tokio::spawn(stop_in_order(leaving)));
    }

    /// [`Supervisor::new`] + [`Supervisor::start`].
    pub async fn launch(specs: Vec<ChildSpec>, options: SupervisorOptions) -> Result<Self, Error> {
        let mut supervisor = Self::new(options);
        supervisor.start(specs).await?;
        Ok(supervisor)
    }

    fn spawn(&mut self, spec: ChildSpec) {
        let spec = Arc::new(spec);
        let (tx, rx) = watch::channel(ChildStatus::default());
        let stop = CancellationToken::new();
        let control = ChildControl {
            stop: stop.clone(),
            kill_now: self.kill_now.clone(),
        };
        let task = tokio::spawn(run_child(
            spec.clone(),
            self.options.backoff,
            self.prefix.clone(),
            tx,
            control,
        ));
        self.children.push(Supervised {
            spec,
            status: rx,
            stop,
            task,
        });
    }

    /// Waits until every child from index `first` on is running and passes its probe.
    async fn wait_ready(&self, first: usize) -> Result<(), Error> {
        let deadline = Instant::now() + self.options.ready_timeout;
        let mut ready = vec![false; self.children.len() - first];
        loop {
            for (done, child) in ready.iter_mut().zip(&self.children[first..]) {
                if *done {
                    continue;
                }
                let status = child.status.borrow().clone();
                if let Some(reason) = status.spawn_error {
                    return Err(Error::ChildCannotStart {
                        child: child.spec.name.clone(),
                        reason,
                    });
                }
                if status.unexpected_exits >= self.options.max_start_failures {
                    return Err(Error::ChildCrashed {
                        child: child.spec.name.clone(),
                        exits: status.unexpected_exits,
                        last_exit: status.last_exit.unwrap_or_default(),
                    });
                }
                *done = status.pid.is_some() && child.spec.probe.check().await;
                if *done {
                    tracing::info!(child = %child.spec.name, "ready");
                }
            }
            if ready.iter().all(|r| *r) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let waiting = ready
                    .iter()
                    .zip(&self.children[first..])
                    .filter(|(r, _)| !**r)
                    .map(|(_, c)| c.spec.name.clone())
                    .collect();
                return Err(Error::NotReady {
                    waiting,
                    timeout: self.options.ready_timeout,
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Current process id of every child (`None` while one is restarting), in start order.
    pub fn pids(&self) -> Vec<(String, Option<u32>)> {
        self.children
            .iter()
            .map(|c| (c.spec.name.clone(), c.status.borrow().pid))
            .collect()
    }

    /// Status of the named child.
    pub fn status(&self, name: &str) -> Option<ChildStatus> {
        self.children
            .iter()
            .find(|c| c.spec.name == name)
            .map(|c| c.status.borrow().clone())
    }

    /// Resolves when any child's status changes (a start, an exit, a restart).
    pub async fn changed(&mut self) {
        let waits = self
            .children
            .iter_mut()
            .map(|c| Box::pin(c.status.changed()))
            .collect::<Vec<_>>();
        if waits.is_empty() {
            std::future::pending::<()>().await;
        }
        let _ = futures_util::future::select_all(waits).await;
    }

    /// A token that, when cancelled, cuts every remaining stop wait short and kills at once
    /// (for a second Ctrl-C during shutdown).
    pub fn kill_switch(&self) -> CancellationToken {
        self.kill_now.clone()
    }

    /// Stops every child: draining children first (all at once, each waiting up to its grace
    /// period), then the others stage by stage in reverse start order. Returns when every child
    /// process has exited.
    pub async fn shutdown(&mut self) {
        stop_in_order(std::mem::take(&mut self.children)).await;
        for task in std::mem::take(&mut self.retiring) {
            let _ = task.await;
        }
    }
}

/// Draining children first (all at once), then the others stage by stage, last stage first.
async fn stop_in_order(children: Vec<Supervised>) {
    let (draining, mut rest): (Vec<_>, Vec<_>) = children
        .into_iter()
        .partition(|c| matches!(c.spec.stop, StopPolicy::Drain { .. }));
    stop_all(draining).await;
    rest.sort_by_key(|c| std::cmp::Reverse(c.spec.stage));
    while !rest.is_empty() {
        let stage = rest[0].spec.stage;
        let split = rest
            .iter()
            .position(|c| c.spec.stage != stage)
            .unwrap_or(rest.len());
        let later = rest.split_off(split);
        stop_all(std::mem::replace(&mut rest, later)).await;
    }
}

async fn stop_all(children: Vec<Supervised>) {
    for child in &children {
        child.stop.cancel();
    }
    for child in children {
        if let Err(err) = child.task.await {
            tracing::error!(child = %child.spec.name, %err, "child supervisor task failed");
        }
    }
}

impl Drop for Supervisor {
    /// A supervisor dropped without [`Supervisor::shutdown`] (an early return, a panic) still
    /// takes its children down: each child loop sees the stop and kills at once.
    fn drop(&mut self) {
        self.kill_now.cancel();
        for child in &self.children {
            child.stop.cancel();
        }
    }
}
