//! The deployment itself: the hosts' systems are evaluated and built as a stream
//! (`build.rs`), and each host's task (connect, copy, activate) starts as soon as its system is
//! built and its wave has begun, at most `parallel` at a time.

use std::time::Instant;

use std::sync::Arc;

use hbdeploy_nix::{Nix, StorePath};
use hbdeploy_ssh::Connection;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::build::{Built, HostBuilt, PrepareOptions, prepare};
use crate::error::Restored;
use crate::event::{EventSender, Stage};
use crate::health::run_checks;
use crate::remote::{Arm, Change, Deployment, JobKind, JobOutcome, Op};
use crate::remote::{Decision, WatchdogReason};
use crate::report::{CopyStats, HostReport, Outcome, Report};
use crate::safe::{self, Confirmation, Previous};
use crate::state::{HostState, read_state};
use crate::transfer;
use crate::waves::plan_waves;
use crate::{Cancel, DeployRequest, Goal, HostError, HostPlan, PipelineError, remote};

/// Deploys `request`, sending progress to `events`. Returns one report entry per host; an error
/// only when nix itself cannot run (and then no host was contacted).
///
/// Waves run one after another as before; within a wave, a host starts as soon as its system is
/// built, while the others are still being evaluated or built. A host of a later wave waits for
/// its wave (and is skipped if an earlier one failed), but its system is prepared meanwhile.
pub async fn deploy(
    request: &DeployRequest,
    nix: &Nix,
    events: EventSender,
) -> Result<Report, PipelineError> {
    let start = Instant::now();
    let cancel = &request.cancel;
    let options = PrepareOptions {
        builders: request.builders.clone(),
        eval: request.eval.clone(),
    };
    let mut preparing = Some(prepare(
        &request.flake,
        &request.hosts,
        nix,
        &events,
        options,
    ));
    let mut build_time = None;
    let mut slots: Vec<Option<HostReport>> = request.hosts.iter().map(|_| None).collect();
    let mut ready: Vec<Option<Built>> = request.hosts.iter().map(|_| None).collect();
    let mut launched = vec![false; request.hosts.len()];
    // When each host's system was ready (or failed): its own BUILD in `--timings`.
    let mut built_at: Vec<Option<std::time::Duration>> =
        request.hosts.iter().map(|_| None).collect();
    let host_permits = Arc::new(Semaphore::new(request.parallel.get()));
    let copy_permits = Arc::new(Semaphore::new(request.parallel_copy.get()));
    let activate_permits = Arc::new(Semaphore::new(request.parallel_activate.get()));
    let mut stopped = false;
    for wave in plan_waves(&request.hosts, &request.canary, request.batch) {
        let mut tasks: JoinSet<(usize, HostReport)> = JoinSet::new();
        loop {
            for &i in &wave {
                let Some(built) = ready[i].take() else {
                    continue;
                };
                let plan = &request.hosts[i];
                if stopped || cancel.is_cancelled() {
                    let report = HostReport {
                        outcome: if stopped {
                            Outcome::Skipped
                        } else {
                            Outcome::Interrupted
                        },
                        new_path: Some(built.out),
                        duration: start.elapsed(),
                        ..HostReport::new(&plan.name, Stage::Build)
                    };
                    events.finished(&report);
                    slots[i] = Some(report);
                    continue;
                }
                launched[i] = true;
                let job = HostJob {
                    plan: plan.clone(),
                    path: built.out.clone(),
                    built,
                    copy_permits: Arc::clone(&copy_permits),
                    activate_permits: Arc::clone(&activate_permits),
                    signing_key: request.signing_key.clone(),
                    goal: request.goal,
                    reactivate: request.reactivate,
                    auto_rollback: request.auto_rollback,
                    nix: nix.clone(),
                    events: events.clone(),
                    cancel: cancel.clone(),
                    start,
                };
                let permits = Arc::clone(&host_permits);
                tasks.spawn(async move {
                    // Never closed: acquiring only waits (without a permit it would run anyway).
                    let _permit = permits.acquire_owned().await.ok();
                    (i, job.run().await)
                });
            }
            if wave.iter().all(|&i| slots[i].is_some() || launched[i]) && tasks.is_empty() {
                break;
            }
            tokio::select! {
                next = async { preparing.as_mut()?.next().await }, if preparing.is_some() => {
                    match next {
                        Some(Ok((i, result))) => {
                            built_at[i] = Some(start.elapsed());
                            ready[i] = arrived(request, &events, start, i, result, &mut slots);
                        }
                        Some(Err(error)) => {
                            if !launched.iter().any(|l| *l) && slots.iter().all(Option::is_none) {
                                return Err(error);
                            }
                            preparing = None;
                            build_time = Some(start.elapsed());
                            unprepared(request, &events, start, &mut slots, (&ready, &launched), |plan| {
                                Outcome::Failed(HostError::Eval {
                                    attr: plan.attr.clone(),
                                    lines: vec![error.to_string()],
                                })
                            });
                        }
                        None => {
                            preparing = None;
                            build_time = Some(start.elapsed());
                            // Every host was handed out; this only guards against a gap.
                            unprepared(request, &events, start, &mut slots, (&ready, &launched), |plan| {
                                Outcome::Failed(HostError::Eval {
                                    attr: plan.attr.clone(),
                                    lines: vec!["nix eval did not report this configuration".to_owned()],
                                })
                            });
                        }
                    }
                }
                Some(joined) = tasks.join_next(), if !tasks.is_empty() => {
                    if let Ok((i, report)) = joined {
                        slots[i] = Some(report);
                    }
                    // A task that panicked leaves its slot empty; it is filled below.
                    if tasks.is_empty() {
                        for &i in &wave {
                            if launched[i] && slots[i].is_none() {
                                let lost = HostReport::failed(
                                    &request.hosts[i].name,
                                    Stage::Activate,
                                    HostError::TaskLost,
                                    start.elapsed(),
                                );
                                events.finished(&lost);
                                slots[i] = Some(lost);
                            }
                        }
                    }
                }
                () = cancel.cancelled(), if preparing.is_some() => {
                    // Dropping the stream kills the nix processes still running for it.
                    preparing = None;
                    build_time = Some(start.elapsed());
                    unprepared(request, &events, start, &mut slots, (&ready, &launched), |_| Outcome::Interrupted);
                }
            }
        }
        stopped = stopped
            || wave
                .iter()
                .any(|&i| slots[i].as_ref().is_some_and(|r| !r.succeeded()));
    }
    let hosts = slots
        .into_iter()
        .zip(&request.hosts)
        .zip(built_at)
        .map(|((slot, plan), built_at)| {
            let mut report = slot.unwrap_or_else(|| {
                HostReport::failed(
                    &plan.name,
                    Stage::Build,
                    HostError::TaskLost,
                    start.elapsed(),
                )
            });
            if let Some(at) = built_at {
                report.timings.insert(0, (Stage::Build, at));
            }
            report
        })
        .collect();
    let build_time = build_time.unwrap_or_else(|| start.elapsed());
    Ok(Report { hosts, build_time })
}

/// A host whose system was just prepared: failed or (with `--goal build`) finished right away,
/// else ready for its task.
fn arrived(
    request: &DeployRequest,
    events: &EventSender,
    start: Instant,
    i: usize,
    result: HostBuilt,
    slots: &mut [Option<HostReport>],
) -> Option<Built> {
    let plan = &request.hosts[i];
    let report = match result {
        Ok(built) if request.goal.reaches_hosts() => return Some(built),
        Ok(built) => HostReport {
            new_path: Some(built.out),
            duration: start.elapsed(),
            ..HostReport::new(&plan.name, Stage::Build)
        },
        Err((stage, error)) => HostReport::failed(&plan.name, stage, *error, start.elapsed()),
    };
    events.finished(&report);
    slots[i] = Some(report);
    None
}

/// Reports every host whose system never came: the stream was stopped (Ctrl-C) or nix failed.
fn unprepared(
    request: &DeployRequest,
    events: &EventSender,
    start: Instant,
    slots: &mut [Option<HostReport>],
    (ready, launched): (&[Option<Built>], &[bool]),
    outcome: impl Fn(&HostPlan) -> Outcome,
) {
    for (i, plan) in request.hosts.iter().enumerate() {
        if slots[i].is_none() && ready[i].is_none() && !launched[i] {
            let report = HostReport {
                outcome: outcome(plan),
                duration: start.elapsed(),
                ..HostReport::new(&plan.name, Stage::Build)
            };
            events.finished(&report);
            slots[i] = Some(report);
        }
    }
}

/// Everything one host's task needs; owned, so the task can run on its own.
struct HostJob {
    plan: HostPlan,
    path: StorePath,
    built: Built,
    copy_permits: Arc<Semaphore>,
    activate_permits: Arc<Semaphore>,
    signing_key: Option<std::path::PathBuf>,
    goal: Goal,
    reactivate: bool,
    auto_rollback: bool,
    nix: Nix,
    events: EventSender,
    cancel: Cancel,
    start: Instant,
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

/// Stop here, before starting the next stage, if the run was interrupted.
struct Interrupted;

impl HostJob {
    async fn run(self) -> HostReport {
        let mut report = HostReport {
            new_path: Some(self.path.clone()),
            ..HostReport::new(&self.plan.name, Stage::Connect)
        };
        match self.stages(&mut report).await {
            Ok(Ok(())) => {}
            Ok(Err(Interrupted)) => report.outcome = Outcome::Interrupted,
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

    fn check_cancel(&self) -> Result<(), Interrupted> {
        if self.cancel.is_cancelled() {
            Err(Interrupted)
        } else {
            Ok(())
        }
    }

    async fn stages(&self, report: &mut HostReport) -> Result<Result<(), Interrupted>, HostError> {
        if let Err(stop) = self.check_cancel() {
            return Ok(Err(stop));
        }
        // The system was built here: what is not a NixOS system is refused before anything is
        // copied (the host checks it again before switching).
        let switch = std::path::Path::new(self.path.as_str()).join("bin/switch-to-configuration");
        if self.goal.activates() && !self.built.on_target && !switch.exists() {
            report.stage = Stage::Build;
            return Err(HostError::NotNixos {
                path: self.path.clone(),
            });
        }
        let began = self.enter(report, Stage::Connect);
        let conn = Connection::connect(&self.plan.target)
            .await
            .map_err(HostError::Connect)?;
        report.timings.push((Stage::Connect, began.elapsed()));
        // Only deployments that change the running system or boot default take the lock. The
        // state is read on a second channel at the same time: reading changes nothing, and it
        // is only acted on once the lock is held.
        let (lock, state) = if self.goal.activates() {
            let holder = safe::holder_description("apply");
            let (lock, state) = tokio::join!(
                safe::lock(&conn, &holder),
                read_state(&conn, Stage::Connect)
            );
            // Under the lock, before anything else: a job of an earlier deployment still
            // changing the host is settled, and the host read again if one was.
            let state = match (&lock, state) {
                (Ok(_), Ok(state)) => {
                    let name = &self.plan.name;
                    match crate::settle::settle_earlier(
                        &conn,
                        name,
                        &self.events,
                        &mut report.settled,
                    )
                    .await
                    {
                        Ok(false) => Ok(state),
                        Ok(true) => read_state(&conn, Stage::Connect).await,
                        Err(error) => Err(error),
                    }
                }
                (_, state) => state,
            };
            match (lock, state) {
                (Ok(lock), Ok(state)) => (Some(lock), Some(state)),
                (Ok(lock), Err(error)) => {
                    lock.release().await;
                    conn.close().await;
                    return Err(error);
                }
                (Err(error), _) => {
                    conn.close().await;
                    return Err(error);
                }
            }
        } else {
            (None, None)
        };
        let result = self.on_host(&conn, state, report).await;
        if let Some(lock) = lock {
            lock.release().await;
        }
        conn.close().await;
        result
    }

    async fn on_host(
        &self,
        conn: &Connection,
        state: Option<HostState>,
        report: &mut HostReport,
    ) -> Result<Result<(), Interrupted>, HostError> {
        let name = self.plan.name.as_str();
        report.old_path = state.as_ref().and_then(|s| s.current.clone());
        if let Some(state) = &state
            && !self.reactivate
            && already_there(state, &self.path, self.goal)
        {
            report.outcome = Outcome::Unchanged;
            report.generation = state.profile_generation;
            return Ok(Ok(()));
        }
        if let Err(stop) = self.check_cancel() {
            return Ok(Err(stop));
        }

        // The semaphores are never closed; a failed acquire would only mean running unbounded.
        let permit = Arc::clone(&self.copy_permits).acquire_owned().await.ok();
        let began = self.enter(report, Stage::Copy);
        let stats = self.copy(conn).await;
        drop(permit);
        report.timings.push((Stage::Copy, began.elapsed()));
        let stats = stats?;
        report.copy = Some(stats);
        self.events.note(
            name,
            format!("copied {} of {} paths", stats.sent, stats.total),
        );
        let Some(state) = state else {
            return Ok(Ok(()));
        };
        if let Err(stop) = self.check_cancel() {
            return Ok(Err(stop));
        }
        let permit = Arc::clone(&self.activate_permits)
            .acquire_owned()
            .await
            .ok();
        let began = self.enter(report, Stage::Activate);
        let activated = self.activate(conn, &state, report).await;
        drop(permit);
        report.timings.push((Stage::Activate, began.elapsed()));
        activated.map(Ok)
    }

    /// Arms magic rollback where it applies, activates (bounded by `activation-timeout`), then
    /// confirms over a new connection or rolls a failed activation back.
    async fn activate(
        &self,
        conn: &Connection,
        state: &HostState,
        report: &mut HostReport,
    ) -> Result<(), HostError> {
        let name = self.plan.name.as_str();
        let safety = self.plan.safety;
        let previous = Previous::from(state);
        let restore = safe::restore_change(&previous, self.goal);
        let wants_magic = safety.magic_rollback && matches!(self.goal, Goal::Switch | Goal::Test);
        // Everything that can refuse runs before anything changes: the path must be a NixOS
        // system. One round trip checks it, writes the deployment's scripts and arms the
        // watchdog; the state read said how jobs run on this host.
        let deployment = Deployment::new(&safe::new_token(), state.systemd);
        let arm = match (&restore, wants_magic) {
            (Some(restore), true) => Some(Arm {
                confirm: safety.confirm_timeout,
                activation: safety.activation_timeout,
                restore,
            }),
            _ => None,
        };
        deployment
            .prepare(conn, &self.path, restore.as_ref(), arm)
            .await?;
        let armed = match arm {
            Some(_) => {
                self.events.note(
                    name,
                    format!(
                        "magic rollback armed ({}s to confirm once the activation has ended)",
                        safety.confirm_timeout.as_secs()
                    ),
                );
                Some(Instant::now())
            }
            None if wants_magic => {
                self.events.note(
                    name,
                    "no previous generation: magic rollback not armed".to_owned(),
                );
                None
            }
            None => None,
        };

        let change = Change {
            op: if self.goal.sets_profile() {
                Op::Set
            } else {
                Op::Keep
            },
            path: self.path.clone(),
            goal: self.goal,
        };
        let began = Instant::now();
        let run = deployment.run(conn, name, JobKind::Activate, &change, &self.events);
        let activation = match tokio::time::timeout(safety.activation_timeout, run).await {
            Ok(Ok(activation)) => activation,
            // The session died under the activation (which runs on, detached), e.g. because
            // the new system stopped sshd: the host is confirmed over a new connection only if
            // the activation ended with success, else its watchdog restores it.
            Ok(Err(error @ (HostError::Channel { .. } | HostError::JobLost { .. })))
                if armed.is_some() =>
            {
                self.events.note(
                    name,
                    format!(
                        "{error}: confirming over a new connection once the activation has \
                         succeeded, else the host's watchdog restores it"
                    ),
                );
                self.confirm(&deployment, armed, None, &previous, report)
                    .await?;
                return self
                    .after_lost_session(&deployment, restore.as_ref(), &previous, report)
                    .await;
            }
            // Without a watchdog the deployer itself follows the activation to its end, over a
            // new connection, and goes on from there.
            Ok(Err(error @ (HostError::Channel { .. } | HostError::JobLost { .. }))) => {
                self.events.note(
                    name,
                    format!("{error}: reconnecting to follow the activation to its end"),
                );
                let deadline = began + safety.activation_timeout;
                let Some(again) = self.reconnect(deadline).await else {
                    return Err(error);
                };
                let left = deadline.saturating_duration_since(Instant::now());
                let follow = deployment.follow(&again, name, JobKind::Activate, &self.events);
                let result = match tokio::time::timeout(left, follow).await {
                    Ok(Ok(activation)) => {
                        self.finish(&again, &deployment, activation, None, &previous, report)
                            .await
                    }
                    Ok(Err(error)) => Err(error),
                    Err(_) => {
                        self.timed_out(&again, &deployment, None, &previous, report)
                            .await
                    }
                };
                again.close().await;
                return result;
            }
            Ok(Err(error)) => return Err(error),
            Err(_) => {
                return self
                    .timed_out(conn, &deployment, armed, &previous, report)
                    .await;
            }
        };
        self.finish(conn, &deployment, activation, armed, &previous, report)
            .await
    }

    /// Goes on from an activation that ended: confirms it (magic rollback) and runs the health
    /// checks, or rolls a failed one back.
    async fn finish(
        &self,
        conn: &Connection,
        deployment: &Deployment,
        activation: JobOutcome,
        armed: Option<Instant>,
        previous: &Previous,
        report: &mut HostReport,
    ) -> Result<(), HostError> {
        let name = self.plan.name.as_str();
        let restore = safe::restore_change(previous, self.goal);
        let ended = Instant::now();
        report.generation = activation.generation;
        if activation.exit.success() {
            if armed.is_some() {
                self.events
                    .note(name, "confirming over a new connection".to_owned());
                self.confirm(deployment, armed, Some(ended), previous, report)
                    .await?;
            }
            return self
                .check_health(conn, deployment, restore.as_ref(), previous, report)
                .await;
        }

        // The activation failed. Whatever happens next, the watchdog must not act on its own:
        // the deployer claims the decision, or learns what the watchdog did.
        let watchdog = match armed {
            Some(_) => safe::disarm(conn, deployment).await,
            None => Decision::Confirmed,
        };
        if activation.profile_failed {
            return Err(HostError::Profile {
                exit: activation.exit,
                tail: activation.tail,
            });
        }
        let restored = if watchdog == Decision::Confirmed {
            self.restore(conn, deployment, restore.as_ref(), previous, report)
                .await?
        } else {
            self.watchdog_restored(conn, deployment, watchdog, previous, report)
                .await
        };
        Err(HostError::Activation {
            goal: self.goal,
            exit: activation.exit,
            tail: activation.tail,
            profile_set: self.goal.sets_profile(),
            restored,
        })
    }

    /// A new connection to the host, tried until `deadline` (the host may be restarting sshd).
    async fn reconnect(&self, deadline: Instant) -> Option<Connection> {
        loop {
            if let Ok(conn) = Connection::connect(&self.plan.target).await {
                return Some(conn);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        }
    }

    /// The host's health checks, after a successful activation; a failure restores the
    /// previous generation.
    async fn check_health(
        &self,
        conn: &Connection,
        deployment: &Deployment,
        restore: Option<&Change>,
        previous: &Previous,
        report: &mut HostReport,
    ) -> Result<(), HostError> {
        if self.plan.health.is_empty() || self.goal == Goal::DryActivate {
            return Ok(());
        }
        report.stage = Stage::Check;
        self.events.stage(&self.plan.name, Stage::Check);
        let Err(failure) = run_checks(conn, &self.plan.health).await else {
            return Ok(());
        };
        let restored = self
            .restore(conn, deployment, restore, previous, report)
            .await?;
        Err(HostError::HealthCheck { failure, restored })
    }

    /// The session was lost mid-activation and the activation then confirmed: the rest of the
    /// deployment (reading where the profile is, the health checks) goes on over a new
    /// connection.
    async fn after_lost_session(
        &self,
        deployment: &Deployment,
        restore: Option<&Change>,
        previous: &Previous,
        report: &mut HostReport,
    ) -> Result<(), HostError> {
        let unchecked = |detail: String| HostError::Unchecked { detail };
        let conn = Connection::connect(&self.plan.target)
            .await
            .map_err(|err| unchecked(format!("reconnecting failed: {err}")))?;
        let result = match read_state(&conn, Stage::Activate).await {
            Ok(state) => {
                report.generation = state.profile_generation;
                self.check_health(&conn, deployment, restore, previous, report)
                    .await
            }
            Err(err) => Err(unchecked(format!("reading the host failed: {err}"))),
        };
        conn.close().await;
        result
    }

    /// The activation was still running at `activation-timeout`. Where a watchdog is armed it
    /// stops the activation and restores the host by itself (it counts from arming, a moment
    /// before the activation started, so it is first); else the deployer stops it and restores
    /// the previous generation itself.
    async fn timed_out(
        &self,
        conn: &Connection,
        deployment: &Deployment,
        armed: Option<Instant>,
        previous: &Previous,
        report: &mut HostReport,
    ) -> Result<(), HostError> {
        let name = self.plan.name.as_str();
        let secs = self.plan.safety.activation_timeout.as_secs();
        if armed.is_some() {
            self.events.note(
                name,
                format!(
                    "the activation is still running after {secs}s: the host's watchdog stops it \
                     and restores the previous generation"
                ),
            );
            return self
                .confirm(deployment, armed, None, previous, report)
                .await;
        }
        self.events.note(
            name,
            format!("the activation is still running after {secs}s: stopping it"),
        );
        deployment.stop(conn, JobKind::Activate).await?;
        let restore = safe::restore_change(previous, self.goal);
        let restored = self
            .restore(conn, deployment, restore.as_ref(), previous, report)
            .await?;
        Err(HostError::ActivationTimeout {
            secs,
            restored,
            tail: Vec::new(),
        })
    }

    /// Confirms an activation under magic rollback (armed at `armed`), or reports how the
    /// host's watchdog restored it. The watchdog's window opens when the activation ends: at
    /// `ended` when the deployer saw it end, else at the latest when `activation-timeout` has
    /// passed since arming.
    async fn confirm(
        &self,
        deployment: &Deployment,
        armed: Option<Instant>,
        ended: Option<Instant>,
        previous: &Previous,
        report: &mut HostReport,
    ) -> Result<(), HostError> {
        let Some(armed) = armed else {
            return Ok(());
        };
        let safety = self.plan.safety;
        let deadline = ended.unwrap_or(armed + safety.activation_timeout) + safety.confirm_timeout;
        let restored_to_previous = |report: &mut HostReport| {
            report.generation = previous.profile.as_ref().map(|g| g.number);
        };
        match safe::confirm(&self.plan, deployment, deadline).await {
            Confirmation::Confirmed => Ok(()),
            Confirmation::Pending(why) => Err(HostError::RollbackPending { why }),
            Confirmation::Watchdog(Decision::RolledBack(WatchdogReason::ActivationTimeout), _) => {
                restored_to_previous(report);
                Err(HostError::ActivationTimeout {
                    secs: safety.activation_timeout.as_secs(),
                    restored: Restored::Yes,
                    tail: Vec::new(),
                })
            }
            Confirmation::Watchdog(Decision::RolledBack(WatchdogReason::Unconfirmed), why) => {
                restored_to_previous(report);
                Err(HostError::RolledBack { why })
            }
            Confirmation::Watchdog(Decision::RollbackFailed(exit), _) => {
                Err(HostError::WatchdogFailed {
                    detail: exit.to_string(),
                })
            }
            Confirmation::Watchdog(Decision::Gone, _) => {
                self.read_the_truth(previous, report).await
            }
            Confirmation::Watchdog(other, _) => Err(HostError::Unsettled {
                detail: unsettled(&other),
            }),
        }
    }

    /// The deployment's state on the host went away before it was confirmed (the host rebooted,
    /// or a later deployment settled it): reads the host over a new connection and reports what
    /// it actually runs, never a guess.
    async fn read_the_truth(
        &self,
        previous: &Previous,
        report: &mut HostReport,
    ) -> Result<(), HostError> {
        let gone = "the deployment's state on the host is gone before the new system was \
                    confirmed (the host rebooted, or a later deployment settled it)";
        // A boot-time restore (hbdeploy's NixOS module) may still be at work: it drops the
        // pending record when done. Waited for up to `confirm-timeout`.
        let until = Instant::now() + self.plan.safety.confirm_timeout;
        let state = loop {
            let state =
                crate::state::host_state(&self.plan)
                    .await
                    .map_err(|err| HostError::Unsettled {
                        detail: format!("{gone}, and reading the host failed: {err}"),
                    })?;
            if state.pending.is_empty() || Instant::now() >= until {
                break state;
            }
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        };
        report.generation = state.profile_generation;
        let back = previous.profile.as_ref().map(|g| g.number) == state.profile_generation
            && previous.running == state.current;
        if back {
            return Err(HostError::RolledBack {
                why: format!("{gone}; it runs its previous generation again"),
            });
        }
        let running = state
            .current
            .as_ref()
            .map_or_else(|| "an unknown system".to_owned(), |p| p.to_string());
        let profile = state
            .profile_generation
            .map_or_else(|| "no generation".to_owned(), |n| format!("generation {n}"));
        let pending = if state.pending.is_empty() {
            String::new()
        } else {
            "; it still has an unconfirmed deployment, which the next apply or rollback \
             settles"
                .to_owned()
        };
        Err(HostError::Unsettled {
            detail: format!("{gone}; it runs {running}, its profile points at {profile}{pending}"),
        })
    }

    /// After a failed activation whose watchdog decided first: what its restore did, waited
    /// for on this connection (bounded).
    async fn watchdog_restored(
        &self,
        conn: &Connection,
        deployment: &Deployment,
        decision: Decision,
        previous: &Previous,
        report: &mut HostReport,
    ) -> Restored {
        self.events.note(
            &self.plan.name,
            "the host's watchdog decided first: waiting for its restore".to_owned(),
        );
        let bound = self.plan.safety.activation_timeout;
        match safe::watchdog_outcome(conn, deployment, decision, bound).await {
            Decision::RolledBack(_) => {
                if self.goal.sets_profile() {
                    report.generation = previous.profile.as_ref().map(|g| g.number);
                }
                Restored::Yes
            }
            Decision::RollbackFailed(exit) => Restored::Failed(exit),
            Decision::Restoring => Restored::No(format!(
                "the host's watchdog is restoring it, still after {}s",
                bound.as_secs()
            )),
            other => Restored::No(unsettled(&other)),
        }
    }

    /// Puts the previous generation back after a failed activation or health check, when
    /// automatic rollback is on and there is something to go back to: a detached job of the
    /// deployment, like the activation, so a lost connection cannot cut it off halfway. Bounded
    /// like an activation.
    async fn restore(
        &self,
        conn: &Connection,
        deployment: &Deployment,
        change: Option<&Change>,
        previous: &Previous,
        report: &mut HostReport,
    ) -> Result<Restored, HostError> {
        let name = self.plan.name.as_str();
        let change = match (change, self.auto_rollback) {
            (_, false) => return Ok(Restored::No("automatic rollback is off".to_owned())),
            (None, true) => {
                return Ok(Restored::No(
                    "there is no previous generation to go back to".to_owned(),
                ));
            }
            (Some(change), true) => change,
        };
        self.events
            .note(name, "restoring the previous generation".to_owned());
        let limit = self.plan.safety.activation_timeout;
        let run = deployment.run(conn, name, JobKind::Restore, change, &self.events);
        let Ok(outcome) = tokio::time::timeout(limit, run).await else {
            return Ok(Restored::No(format!(
                "restoring was still running after {}s; it goes on on the host",
                limit.as_secs()
            )));
        };
        let outcome = outcome?;
        if let Some(link) = outcome.profile_moved {
            return Ok(Restored::No(format!(
                "the system profile moved since this deployment began (it points at {link}); \
                 it was left alone"
            )));
        }
        if !outcome.exit.success() {
            return Ok(Restored::Failed(outcome.exit));
        }
        if self.goal.sets_profile() {
            report.generation = previous.profile.as_ref().map(|g| g.number);
        }
        Ok(Restored::Yes)
    }

    /// Copies what the host lacks. A host that already has the system gets nothing, not even a
    /// `nix copy` process: validity of the top path implies its whole closure is there. A host
    /// that builds its own system gets the derivation and realises it.
    async fn copy(&self, conn: &Connection) -> Result<CopyStats, HostError> {
        if self.built.on_target {
            return self.build_on_target(conn).await;
        }
        let closure = self
            .nix
            .closure(&self.path)
            .await
            .map_err(|source| HostError::Closure {
                path: self.path.clone(),
                source,
            })?;
        transfer::copy_missing(
            conn,
            &self.nix,
            &self.plan,
            self.signing_key.as_deref(),
            &self.path,
            &closure,
            &self.events,
        )
        .await
    }

    /// Copies the derivation and realises it on the host; the result must be the path that
    /// evaluation promised.
    async fn build_on_target(&self, conn: &Connection) -> Result<CopyStats, HostError> {
        let missing = remote::missing_paths(conn, std::slice::from_ref(&self.path)).await?;
        if missing.is_empty() {
            return Ok(CopyStats { sent: 0, total: 1 });
        }
        transfer::nix_copy(
            conn,
            &self.nix,
            &self.plan,
            false,
            &self.built.drv,
            true,
            &self.events,
        )
        .await?;
        let name = self.plan.name.as_str();
        self.events
            .note(name, "building the system on the host".to_owned());
        remote::realise(conn, name, &self.built.drv, &self.path, &self.events).await?;
        Ok(CopyStats { sent: 1, total: 1 })
    }
}

/// What a watchdog's decision that restored nothing says, for the report.
fn unsettled(decision: &Decision) -> String {
    match decision {
        Decision::ProfileMoved(link) => format!(
            "the system profile moved since this deployment began (it points at {link}), so \
             the watchdog left it alone"
        ),
        Decision::Gone => "a later deployment of the host settled this one".to_owned(),
        other => format!("{other:?}"),
    }
}
