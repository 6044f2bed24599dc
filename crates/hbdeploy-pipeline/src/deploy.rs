//! The deployment itself: the hosts' systems are evaluated and built as a stream
//! (`build.rs`), and each host's task (connect, copy, activate) starts as soon as its system is
//! built and its wave has begun, at most `parallel` at a time.

mod activate;

use std::time::Instant;

use std::sync::Arc;

use hbdeploy_nix::{Nix, StorePath};
use hbdeploy_ssh::Connection;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::build::{Built, HostBuilt, PrepareOptions, prepare};
use crate::event::{EventSender, Stage};
use crate::report::{CopyStats, HostReport, Outcome, Report};
use crate::safe;
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
        from: request.from.clone(),
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
        if self.goal.activates() && self.built.is_local() && !switch.exists() {
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

    /// Copies what the host lacks. A host that already has the system gets nothing, not even a
    /// `nix copy` process: validity of the top path implies its whole closure is there. A host
    /// that builds its own system gets the derivation and realises it.
    async fn copy(&self, conn: &Connection) -> Result<CopyStats, HostError> {
        if self.built.on_target {
            return self.build_on_target(conn).await;
        }
        if let Some(looked) = &self.built.host_caches {
            let (plan, path) = (&self.plan, &self.path);
            return crate::prebuilt::from_host_caches(conn, plan, path, looked, &self.events).await;
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
