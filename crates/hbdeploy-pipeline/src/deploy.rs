//! The deployment itself: the hosts' systems are evaluated and built as a stream
//! (`build.rs`), and each host's task (copy, activate) starts as soon as its system is built and
//! its wave has begun, at most `parallel` at a time, over a connection made while its system was
//! being built.

mod activate;
#[cfg(test)]
mod tests;

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use hbdeploy_nix::{Nix, StorePath};
use hbdeploy_ssh::SshError;
use tokio::sync::oneshot;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::build::{Built, PrepareOptions, Preparing, prepare};
use crate::event::{EventSender, Stage};
use crate::fanout::each_host;
use crate::port::Lock;
use crate::port::{Dial, Host, Reach, Transport};
use crate::report::{CopyStats, HostReport, Outcome, Report};
use crate::safe;
use crate::secrets::{self, SecretUpload};
use crate::state::{HostState, read_state};
use crate::transfer::SshCopy;
use crate::waves::{Gate, plan_waves};
use crate::{Cancel, DeployRequest, Goal, HostError, HostPlan, PipelineError, remote};

/// Deploys `request`, sending progress to `events`. Returns one report entry per host; an error
/// only when nix itself cannot run (and then no host was contacted).
///
/// Every host is a task of the one fan-out (`fanout::each_host`). A host starts as soon as its
/// system is built (the evaluation and builds stream in from `build.rs`) and every earlier wave
/// has ended; it is skipped if one of them failed. At most `parallel` hosts are past that point
/// at once.
pub async fn deploy(
    request: &DeployRequest,
    nix: &Nix,
    events: EventSender,
) -> Result<Report, PipelineError> {
    let start = Instant::now();
    let options = PrepareOptions {
        builders: request.builders.clone(),
        eval: request.eval.clone(),
        from: request.from.clone(),
    };
    let preparing = prepare(&request.flake, &request.hosts, nix, &events, options);
    let waves = plan_waves(&request.hosts, &request.canary, request.batch);
    let count = request.hosts.len();
    let mut senders = Vec::with_capacity(count);
    let mut receivers = Vec::with_capacity(count);
    for _ in 0..count {
        let (tx, rx) = oneshot::channel();
        senders.push(Some(tx));
        receivers.push(Some(rx));
    }
    let receivers = std::sync::Mutex::new(receivers);
    let run = Arc::new(Run {
        request: request.clone(),
        transport: Arc::new(SshCopy {
            nix: nix.clone(),
            ssh: Reach {
                session: request.session.clone(),
            },
        }),
        gate: Gate::new(count, &waves),
        host_permits: Arc::new(Semaphore::new(request.parallel.get())),
        early_permits: Arc::new(Semaphore::new(request.parallel.get())),
        copy_permits: Arc::new(Semaphore::new(request.parallel_copy.get())),
        activate_permits: Arc::new(Semaphore::new(request.parallel_activate.get())),
        launched: (0..count).map(|_| AtomicBool::new(false)).collect(),
        events: events.clone(),
        start,
    });
    let every_host = NonZeroUsize::new(count).unwrap_or(NonZeroUsize::MIN);
    let indices: Vec<usize> = (0..count).collect();
    let ((build_time, arrived, fatal), results) = tokio::join!(
        feed(preparing, senders, &request.cancel, start),
        each_host(indices, every_host, |i| {
            let run = Arc::clone(&run);
            let arrival = receivers
                .lock()
                .ok()
                .and_then(|mut all| all.get_mut(i).and_then(Option::take));
            async move { run.host(i, arrival).await }
        })
    );
    if let Some(error) = fatal
        && !arrived
    {
        return Err(error);
    }
    let hosts = results
        .into_iter()
        .map(|(i, report)| {
            report.unwrap_or_else(|| {
                let launched = run
                    .launched
                    .get(i)
                    .is_some_and(|l| l.load(Ordering::SeqCst));
                let stage = if launched {
                    Stage::Activate
                } else {
                    Stage::Build
                };
                events.lost(&request.hosts[i].name, stage, start.elapsed())
            })
        })
        .collect();
    Ok(Report { hosts, build_time })
}

/// What reaches a host's task from the evaluation and builds, and when (since the start).
enum Arrival {
    /// Its system, built (or to be built on the host).
    Built(Built),
    /// Its own evaluation or build failed.
    Failed(Stage, Box<HostError>),
    /// nix itself failed before this host's system came.
    NixFailed(String),
    /// nix itself failed before any host's system came: the whole run ends with that error, so
    /// this host is not reported on its own.
    RunFailed,
}

/// Hands each host its system as the stream yields it, and stops the stream (killing its nix
/// processes) on Ctrl-C. A host whose sender is dropped never gets one. Returns when the stream
/// ended, whether any host got its result, and nix's own failure.
async fn feed(
    mut preparing: Preparing,
    mut senders: Vec<Option<oneshot::Sender<(Arrival, Duration)>>>,
    cancel: &Cancel,
    start: Instant,
) -> (Duration, bool, Option<PipelineError>) {
    let mut arrived = false;
    loop {
        tokio::select! {
            next = preparing.next() => match next {
                Some(Ok((i, result))) => {
                    arrived = true;
                    let arrival = match result {
                        Ok(built) => Arrival::Built(built),
                        Err((stage, error)) => Arrival::Failed(stage, error),
                    };
                    if let Some(sender) = senders.get_mut(i).and_then(Option::take) {
                        let _ = sender.send((arrival, start.elapsed()));
                    }
                }
                Some(Err(error)) => {
                    for sender in senders.iter_mut().filter_map(Option::take) {
                        let arrival = if arrived {
                            Arrival::NixFailed(error.to_string())
                        } else {
                            Arrival::RunFailed
                        };
                        let _ = sender.send((arrival, start.elapsed()));
                    }
                    return (start.elapsed(), arrived, Some(error));
                }
                None => return (start.elapsed(), arrived, None),
            },
            () = cancel.cancelled() => return (start.elapsed(), arrived, None),
        }
    }
}

/// What every host's task shares.
struct Run {
    request: DeployRequest,
    transport: Arc<SshCopy>,
    gate: Gate,
    host_permits: Arc<Semaphore>,
    /// Connections made while hosts' systems are still evaluated and built (`parallel`).
    early_permits: Arc<Semaphore>,
    copy_permits: Arc<Semaphore>,
    activate_permits: Arc<Semaphore>,
    /// Per host: whether its task got past its system and its wave.
    launched: Vec<AtomicBool>,
    events: EventSender,
    start: Instant,
}

/// Tells the wave gate that a host ended when dropped, so that a task that panicked (and never
/// said so) counts as failed instead of holding later waves back for ever.
struct Ending<'a> {
    gate: &'a Gate,
    host: usize,
    succeeded: bool,
}

impl Drop for Ending<'_> {
    fn drop(&mut self) {
        self.gate.ended(self.host, self.succeeded);
    }
}

impl Run {
    /// Host `i`'s whole task: its system, its wave, then its steps.
    async fn host(&self, i: usize, arrival: Option<Receiver>) -> HostReport {
        let mut ending = Ending {
            gate: &self.gate,
            host: i,
            succeeded: false,
        };
        let (mut report, built_at) = self.after_arrival(i, arrival).await;
        ending.succeeded = report.succeeded();
        if let Some(at) = built_at {
            report.timings.insert(0, (Stage::Build, at));
        }
        report
    }

    /// The host's report, and when its system was ready (its own BUILD in `--timings`).
    async fn after_arrival(
        &self,
        i: usize,
        arrival: Option<Receiver>,
    ) -> (HostReport, Option<Duration>) {
        let plan = &self.request.hosts[i];
        let finished = |report: HostReport, at: Option<Duration>| {
            self.events.finished(&report);
            (report, at)
        };
        let early = self.connect_early(i);
        let arrived = match arrival {
            Some(receiver) => receiver.await.ok(),
            None => None,
        };
        let Some((arrival, at)) = arrived else {
            // The stream ended without this host: stopped by Ctrl-C, or a gap.
            let outcome = if self.request.cancel.is_cancelled() {
                Outcome::Interrupted
            } else {
                Outcome::Failed(HostError::Eval {
                    attr: plan.attr.clone(),
                    lines: vec!["nix eval did not report this configuration".to_owned()],
                })
            };
            let report = HostReport {
                outcome,
                duration: self.start.elapsed(),
                ..HostReport::new(&plan.name, Stage::Build)
            };
            return finished(report, None);
        };
        let built = match arrival {
            Arrival::Built(built) => built,
            Arrival::Failed(stage, error) => {
                let report = HostReport::failed(&plan.name, stage, *error, self.start.elapsed());
                return finished(report, Some(at));
            }
            Arrival::RunFailed => {
                let error = HostError::Eval {
                    attr: plan.attr.clone(),
                    lines: Vec::new(),
                };
                let report =
                    HostReport::failed(&plan.name, Stage::Build, error, self.start.elapsed());
                return (report, None);
            }
            Arrival::NixFailed(message) => {
                let error = HostError::Eval {
                    attr: plan.attr.clone(),
                    lines: vec![message],
                };
                let report =
                    HostReport::failed(&plan.name, Stage::Build, error, self.start.elapsed());
                return finished(report, None);
            }
        };
        let built_only = |outcome: Outcome| HostReport {
            outcome,
            new_path: Some(built.out.clone()),
            duration: self.start.elapsed(),
            ..HostReport::new(&plan.name, Stage::Build)
        };
        if !self.request.goal.reaches_hosts() {
            return finished(built_only(Outcome::Succeeded), Some(at));
        }
        let earlier_waves_succeeded = self.gate.wait(i).await;
        if !earlier_waves_succeeded {
            return finished(built_only(Outcome::Skipped), Some(at));
        }
        // Never closed: acquiring only waits (without a permit it would run anyway).
        let _permit = Arc::clone(&self.host_permits).acquire_owned().await.ok();
        if self.request.cancel.is_cancelled() {
            return finished(built_only(Outcome::Interrupted), Some(at));
        }
        if let Some(launched) = self.launched.get(i) {
            launched.store(true, Ordering::SeqCst);
        }
        let job = HostJob {
            plan: plan.clone(),
            path: built.out.clone(),
            built,
            copy_permits: Arc::clone(&self.copy_permits),
            activate_permits: Arc::clone(&self.activate_permits),
            signing_key: self.request.signing_key.clone(),
            goal: self.request.goal,
            reactivate: self.request.reactivate,
            auto_rollback: self.request.auto_rollback,
            transport: Arc::clone(&self.transport),
            reboot: self.request.reboot,
            events: self.events.clone(),
            cancel: self.request.cancel.clone(),
            start: self.start,
            early,
        };
        (job.run().await, Some(at))
    }

    /// Starts host `i`'s connection while its system is still being evaluated and built, so
    /// that nix's work and the handshake overlap (an unchanged host is then done one handshake
    /// sooner): only where the run reaches hosts, for hosts of the first wave (a later wave may
    /// be skipped), and only while fewer than `parallel` are connected early and not yet
    /// deploying. The place is taken now or never: a host that waited for one could hold up a
    /// host deploying already whose early connection waits for that place.
    fn connect_early(&self, i: usize) -> Option<Early<<SshCopy as Dial>::Host>> {
        let plan = self.request.hosts.get(i)?;
        if !self.request.goal.reaches_hosts() || !self.gate.first_wave(i) {
            return None;
        }
        let permit = Arc::clone(&self.early_permits).try_acquire_owned().ok()?;
        let (transport, target) = (Arc::clone(&self.transport), plan.target.clone());
        Some(Early(tokio::spawn(async move {
            (transport.connect(&target).await, permit)
        })))
    }
}

/// A connection begun early (see [`Run::connect_early`]), with its place among the `parallel`
/// early ones; abandoned (and closed) when dropped unused.
struct Early<H>(EarlyTask<H>);

type EarlyTask<H> = tokio::task::JoinHandle<(Result<H, SshError>, OwnedSemaphorePermit)>;

impl<H> Drop for Early<H> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl<H: Host> Early<H> {
    /// The connection, once made; `None` if it was made but is closed already (the host is
    /// then connected to again). A failed attempt is the host's connection error: a second try
    /// would only wait as long again.
    async fn take(mut self) -> Option<Result<H, SshError>> {
        let (result, permit) = (&mut self.0).await.ok()?;
        drop(permit);
        match result {
            Ok(conn) if conn.is_closed() => None,
            other => Some(other),
        }
    }
}

/// Where a host's system comes from.
type Receiver = oneshot::Receiver<(Arrival, Duration)>;

/// Everything one host's task needs; owned, so the task can run on its own.
struct HostJob<T: Transport> {
    plan: HostPlan,
    path: StorePath,
    built: Built,
    copy_permits: Arc<Semaphore>,
    activate_permits: Arc<Semaphore>,
    signing_key: Option<std::path::PathBuf>,
    goal: Goal,
    reactivate: bool,
    auto_rollback: bool,
    transport: Arc<T>,
    /// `apply --reboot`: reboot the host once deployed, and check what it booted.
    reboot: bool,
    events: EventSender,
    cancel: Cancel,
    start: Instant,
    /// Its connection, begun while its system was being built.
    early: Option<Early<T::Host>>,
}

/// Whether a host in `state` already runs `path` as far as `goal` is concerned: the profile and
/// the running system for `switch`, the profile for `boot`, the running system for `test`.
fn already_there(state: &HostState, path: &StorePath, goal: Goal) -> bool {
    let profile = state.profile().map(|g| &g.path) == Some(path);
    let running = state.current.as_ref() == Some(path);
    match goal {
        Goal::Switch => profile && running,
        Goal::Boot => profile,
        Goal::Test => running,
        Goal::DryActivate | Goal::Build | Goal::Push => false,
    }
}

/// How far a host's steps went, when none failed.
enum Step {
    /// Everything its goal asked for was done (or there was nothing to do).
    Done,
    /// The run was interrupted (Ctrl-C) before the next step; nothing more was changed.
    Interrupted,
}

impl<T: Transport> HostJob<T> {
    async fn run(mut self) -> HostReport {
        let mut report = HostReport {
            new_path: Some(self.path.clone()),
            ..HostReport::new(&self.plan.name, Stage::Connect)
        };
        let early = self.early.take();
        match self.stages(&mut report, early).await {
            Ok(Step::Done) => {}
            Ok(Step::Interrupted) => report.outcome = Outcome::Interrupted,
            Err(error) => report.outcome = Outcome::Failed(error),
        }
        report.duration = self.start.elapsed();
        self.events.finished(&report);
        report
    }

    fn enter(&self, report: &mut HostReport, stage: Stage) -> Instant {
        report.stage = stage;
        self.events.stage(&self.plan.name, stage);
        Instant::now()
    }

    /// Whether to stop before the next step: the run was interrupted.
    fn interrupted(&self) -> bool {
        self.cancel.is_cancelled()
    }

    async fn stages(
        &self,
        report: &mut HostReport,
        early: Option<Early<T::Host>>,
    ) -> Result<Step, HostError> {
        if self.interrupted() {
            return Ok(Step::Interrupted);
        }
        // The system was built here: what is not a NixOS system is refused before anything is
        // copied (the host checks it again before switching).
        if self.goal.activates() && self.built.is_local() && !self.transport.is_system(&self.path) {
            report.stage = Stage::Build;
            return Err(HostError::NotNixos {
                path: self.path.clone(),
            });
        }
        let began = self.enter(report, Stage::Connect);
        let made = match early {
            Some(early) => early.take().await,
            None => None,
        };
        let conn = match made {
            Some(made) => made,
            None => self.transport.connect(&self.plan.target).await,
        }
        .map_err(HostError::Connect)?;
        report.timings.push((Stage::Connect, began.elapsed()));
        // Only deployments that change the running system or boot default take the lock. Its
        // holder reads the host's state under it and says whether anything of an earlier
        // deployment may still act on the host, all in the lock's one round trip.
        let (lock, state) = if self.goal.activates() {
            let holder = safe::holder_description("apply");
            let (lock, under) = match safe::lock_reading(&conn, &holder).await {
                Ok(locked) => locked,
                Err(error) => {
                    conn.close().await;
                    return Err(error);
                }
            };
            match self.state_under_lock(&conn, under, report).await {
                Ok(state) => (Some(lock), Some(state)),
                Err(error) => {
                    lock.release().await;
                    conn.close().await;
                    return Err(error);
                }
            }
        } else {
            (None, None)
        };
        let mut result = self.on_host(&conn, lock.as_ref(), state, report).await;
        // `apply --reboot` (reboot.rs): reboot the deployed host under the lock and check it.
        if self.reboot && matches!(result, Ok(Step::Done)) && !self.interrupted() {
            let (path, cancel) = (&self.path, &self.cancel);
            let dial = &*self.transport;
            let events = &self.events;
            result =
                crate::reboot::after_apply(dial, &conn, &self.plan, (path, cancel), events, report)
                    .await
                    .map(|()| Step::Done);
        }
        if let Some(lock) = lock {
            lock.release().await;
        }
        conn.close().await;
        result
    }

    /// The host's state once the lock is held. Before anything else, a job of an earlier
    /// deployment still changing the host, or one left undecided, is settled (`settle.rs`) —
    /// only when the lock's holder found something that may still act on the host — and the
    /// host is read again if anything was; else the state its holder read under the lock.
    async fn state_under_lock(
        &self,
        conn: &T::Host,
        under: remote::Under,
        report: &mut HostReport,
    ) -> Result<HostState, HostError> {
        let settled = if under.settle {
            let (name, events) = (&self.plan.name, &self.events);
            crate::settle::settle_earlier(conn, name, events, &mut report.settled).await?
        } else {
            false
        };
        match under.state {
            Some(text) if !settled => Ok(crate::state::parse_state(&text)),
            _ => read_state(conn, Stage::Connect).await,
        }
    }

    async fn on_host(
        &self,
        conn: &T::Host,
        lock: Option<&Lock<T::Host>>,
        state: Option<HostState>,
        report: &mut HostReport,
    ) -> Result<Step, HostError> {
        let name = self.plan.name.as_str();
        report.old_path = state.as_ref().and_then(|s| s.current.clone());
        if let Some(state) = &state
            && !self.reactivate
            && already_there(state, &self.path, self.goal)
        {
            report.outcome = Outcome::Unchanged;
            report.generation = state.profile_generation;
            secrets::upload_unchanged(
                (&*self.transport, conn),
                &self.plan,
                self.goal,
                &self.events,
                report,
            )
            .await?;
            return Ok(Step::Done);
        }
        if self.interrupted() {
            return Ok(Step::Interrupted);
        }

        // The semaphores are never closed; a failed acquire would only mean running unbounded.
        let permit = Arc::clone(&self.copy_permits).acquire_owned().await.ok();
        let began = self.enter(report, Stage::Copy);
        let stats = self.copy(conn, lock).await;
        drop(permit);
        report.timings.push((Stage::Copy, began.elapsed()));
        let stats = stats?;
        report.copy = Some(stats);
        self.events.note(
            name,
            format!("copied {} of {} paths", stats.sent, stats.total),
        );
        let Some(state) = state else {
            return Ok(Step::Done);
        };
        if self.interrupted() {
            return Ok(Step::Interrupted);
        }
        let pre = (self.goal, SecretUpload::PreActivation);
        secrets::upload(
            (&*self.transport, conn),
            &self.plan,
            pre,
            &self.events,
            report,
        )
        .await?;
        let permit = Arc::clone(&self.activate_permits)
            .acquire_owned()
            .await
            .ok();
        let began = self.enter(report, Stage::Activate);
        let activated = self.activate(conn, lock, &state, report).await;
        drop(permit);
        report.timings.push((Stage::Activate, began.elapsed()));
        activated?;
        let post = (self.goal, SecretUpload::PostActivation);
        secrets::upload(
            (&*self.transport, conn),
            &self.plan,
            post,
            &self.events,
            report,
        )
        .await
        .map(|()| Step::Done)
    }

    /// Copies what the host lacks. A host that already has the system gets nothing, not even a
    /// `nix copy` process: validity of the top path implies its whole closure is there. A host
    /// that builds its own system gets the derivation and realises it.
    async fn copy(
        &self,
        conn: &T::Host,
        lock: Option<&Lock<T::Host>>,
    ) -> Result<CopyStats, HostError> {
        if self.built.on_target {
            return self.build_on_target(conn, lock).await;
        }
        if let Some(looked) = &self.built.host_caches {
            let (plan, path, events) = (&self.plan, &self.path, &self.events);
            return crate::prebuilt::from_host_caches((conn, lock), plan, path, looked, events)
                .await;
        }
        self.transport
            .copy_closure(
                conn,
                lock,
                &self.plan,
                &self.path,
                self.signing_key.as_deref(),
                &self.events,
            )
            .await
    }

    /// Copies the derivation and realises it on the host; the result must be the path that
    /// evaluation promised.
    async fn build_on_target(
        &self,
        conn: &T::Host,
        lock: Option<&Lock<T::Host>>,
    ) -> Result<CopyStats, HostError> {
        let missing = remote::missing_paths(conn, lock, std::slice::from_ref(&self.path)).await?;
        if missing.is_empty() {
            return Ok(CopyStats { sent: 0, total: 1 });
        }
        self.transport
            .copy_derivation(conn, &self.plan, &self.built.drv, &self.events)
            .await?;
        let name = self.plan.name.as_str();
        self.events
            .note(name, "building the system on the host".to_owned());
        remote::realise(conn, name, &self.built.drv, &self.path, &self.events).await?;
        Ok(CopyStats { sent: 1, total: 1 })
    }
}
