//! The deployment itself: one evaluation and one build for every selected host, then one task
//! per host (connect, copy, activate), at most `parallel` at a time.

use std::collections::BTreeMap;
use std::time::Instant;

use hbdeploy_nix::{Nix, SshDest, StorePath, Toplevel};
use hbdeploy_ssh::Connection;

use crate::error::Restored;
use crate::event::{EventSender, Stage};
use crate::fanout::each_host;
use crate::report::{CopyStats, HostReport, Outcome, Report};
use crate::safe::{self, Confirmation, Previous};
use crate::state::{HostState, read_state};
use crate::waves::plan_waves;
use crate::{Cancel, DeployRequest, Goal, HostError, HostPlan, PipelineError, remote};

/// Deploys `request`, sending progress to `events`. Returns one report entry per host; an error
/// only when nix itself cannot run.
pub async fn deploy(
    request: &DeployRequest,
    nix: &Nix,
    events: EventSender,
) -> Result<Report, PipelineError> {
    let start = Instant::now();
    let cancel = &request.cancel;
    let prepared = tokio::select! {
        prepared = build_all(&request.flake, &request.hosts, nix, &events) => Some(prepared?),
        // Dropping the build kills the nix processes (kill_on_drop).
        () = cancel.cancelled() => None,
    };
    let build_time = start.elapsed();
    let Some(prepared) = prepared else {
        let hosts = request
            .hosts
            .iter()
            .map(|plan| {
                let report = HostReport {
                    outcome: Outcome::Interrupted,
                    duration: start.elapsed(),
                    ..HostReport::new(&plan.name, Stage::Build)
                };
                events.finished(&report);
                report
            })
            .collect();
        return Ok(Report { hosts, build_time });
    };

    let mut slots: Vec<Option<HostReport>> = request.hosts.iter().map(|_| None).collect();
    let mut ready: Vec<Option<StorePath>> = Vec::with_capacity(request.hosts.len());
    for ((plan, result), slot) in request.hosts.iter().zip(prepared).zip(&mut slots) {
        ready.push(match result {
            Err((stage, error)) => {
                let report = HostReport::failed(&plan.name, stage, *error, start.elapsed());
                events.finished(&report);
                *slot = Some(report);
                None
            }
            Ok(path) if !request.goal.reaches_hosts() => {
                let report = HostReport {
                    new_path: Some(path),
                    duration: start.elapsed(),
                    ..HostReport::new(&plan.name, Stage::Build)
                };
                events.finished(&report);
                *slot = Some(report);
                None
            }
            Ok(path) => Some(path),
        });
    }

    let mut stopped = false;
    for wave in plan_waves(&request.hosts, &request.canary, request.batch) {
        let jobs: Vec<(HostPlan, StorePath)> = wave
            .iter()
            .filter_map(|&i| Some((request.hosts[i].clone(), ready[i].clone()?)))
            .collect();
        if stopped || cancel.is_cancelled() {
            let outcome = || {
                if stopped {
                    Outcome::Skipped
                } else {
                    Outcome::Interrupted
                }
            };
            for (plan, path) in jobs {
                let report = HostReport {
                    outcome: outcome(),
                    new_path: Some(path),
                    duration: start.elapsed(),
                    ..HostReport::new(&plan.name, Stage::Build)
                };
                events.finished(&report);
                put(&mut slots, &request.hosts, report);
            }
            continue;
        }
        let results = each_host(jobs, request.parallel, |(plan, path)| {
            let job = HostJob {
                plan,
                path,
                goal: request.goal,
                reactivate: request.reactivate,
                auto_rollback: request.auto_rollback,
                nix: nix.clone(),
                events: events.clone(),
                cancel: cancel.clone(),
                start,
            };
            job.run()
        })
        .await;
        for ((plan, _), result) in results {
            let report = result.unwrap_or_else(|| {
                let lost = HostReport::failed(
                    &plan.name,
                    Stage::Activate,
                    HostError::TaskLost,
                    start.elapsed(),
                );
                events.finished(&lost);
                lost
            });
            put(&mut slots, &request.hosts, report);
        }
        stopped = wave
            .iter()
            .any(|&i| slots[i].as_ref().is_some_and(|r| !r.succeeded()));
    }
    let hosts = slots
        .into_iter()
        .zip(&request.hosts)
        .map(|(slot, plan)| {
            slot.unwrap_or_else(|| {
                HostReport::failed(
                    &plan.name,
                    Stage::Build,
                    HostError::TaskLost,
                    start.elapsed(),
                )
            })
        })
        .collect();
    Ok(Report { hosts, build_time })
}

/// Puts `report` into its host's slot.
fn put(slots: &mut [Option<HostReport>], hosts: &[HostPlan], report: HostReport) {
    if let Some(index) = hosts.iter().position(|p| p.name == report.host) {
        slots[index] = Some(report);
    }
}

/// Per host: its built system, or the stage and error that stopped it.
pub(crate) type Prepared = Vec<Result<StorePath, (Stage, Box<HostError>)>>;

/// Evaluates and builds every host's system: one `nix eval`, one `nix build`.
pub(crate) async fn build_all(
    flake: &str,
    hosts: &[HostPlan],
    nix: &Nix,
    events: &EventSender,
) -> Result<Prepared, PipelineError> {
    for plan in hosts {
        events.stage(&plan.name, Stage::Evaluate);
    }
    let mut attrs: Vec<String> = hosts.iter().map(|p| p.attr.clone()).collect();
    attrs.sort();
    attrs.dedup();
    let mut sink = |line: &str| events.output(None, Stage::Evaluate, line);
    let evaluated = nix.eval_toplevels(flake, &attrs, &mut sink).await?;

    let mut toplevels: Vec<Toplevel> = evaluated
        .values()
        .filter_map(|r| r.as_ref().ok().cloned())
        .collect();
    toplevels.sort_by(|a, b| a.drv_path.cmp(&b.drv_path));
    toplevels.dedup();
    for plan in hosts {
        if matches!(evaluated.get(&plan.attr), Some(Ok(_))) {
            events.stage(&plan.name, Stage::Build);
        }
    }
    let built = if toplevels.is_empty() {
        BTreeMap::new()
    } else {
        let mut sink = |line: &str| events.output(None, Stage::Build, line);
        nix.build(&toplevels, None, &mut sink).await?
    };

    Ok(hosts
        .iter()
        .map(|plan| match evaluated.get(&plan.attr) {
            Some(Ok(toplevel)) => match built.get(&toplevel.drv_path) {
                Some(Ok(())) => Ok(toplevel.out_path.clone()),
                Some(Err(lines)) => Err((
                    Stage::Build,
                    Box::new(HostError::Build {
                        attr: plan.attr.clone(),
                        lines: lines.clone(),
                    }),
                )),
                None => Err((
                    Stage::Build,
                    Box::new(HostError::Build {
                        attr: plan.attr.clone(),
                        lines: vec!["nix build did not report this system".to_owned()],
                    }),
                )),
            },
            Some(Err(lines)) => Err((
                Stage::Evaluate,
                Box::new(HostError::Eval {
                    attr: plan.attr.clone(),
                    lines: lines.clone(),
                }),
            )),
            None => Err((
                Stage::Evaluate,
                Box::new(HostError::Eval {
                    attr: plan.attr.clone(),
                    lines: vec!["nix eval did not report this configuration".to_owned()],
                }),
            )),
        })
        .collect())
}

/// Everything one host's task needs; owned, so the task can run on its own.
struct HostJob {
    plan: HostPlan,
    path: StorePath,
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
        let began = self.enter(report, Stage::Connect);
        let conn = Connection::connect(&self.plan.target)
            .await
            .map_err(HostError::Connect)?;
        report.timings.push((Stage::Connect, began.elapsed()));
        // Only deployments that change the running system or boot default take the lock.
        let lock = if self.goal.activates() {
            match safe::lock(&conn, &safe::holder_description("apply")).await {
                Ok(lock) => Some(lock),
                Err(error) => {
                    conn.close().await;
                    return Err(error);
                }
            }
        } else {
            None
        };
        let result = self.on_host(&conn, report).await;
        if let Some(lock) = lock {
            lock.release().await;
        }
        conn.close().await;
        result
    }

    async fn on_host(
        &self,
        conn: &Connection,
        report: &mut HostReport,
    ) -> Result<Result<(), Interrupted>, HostError> {
        let name = self.plan.name.as_str();
        let state = if self.goal.activates() {
            Some(read_state(conn, Stage::Connect).await?)
        } else {
            None
        };
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

        let began = self.enter(report, Stage::Copy);
        let stats = self.copy(conn).await;
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
        let began = self.enter(report, Stage::Activate);
        let activated = self.activate(conn, &state, report).await;
        report.timings.push((Stage::Activate, began.elapsed()));
        activated.map(Ok)
    }

    /// Arms magic rollback where it applies, activates, then confirms over a new connection or
    /// rolls a failed activation back.
    async fn activate(
        &self,
        conn: &Connection,
        state: &HostState,
        report: &mut HostReport,
    ) -> Result<(), HostError> {
        let name = self.plan.name.as_str();
        let probe = remote::probe(conn, name, &self.path, &self.events).await?;
        let previous = Previous::from(state);
        let restore = safe::restore_script(&previous, self.goal);
        let token = safe::new_token();
        let wants_magic =
            self.plan.safety.magic_rollback && matches!(self.goal, Goal::Switch | Goal::Test);
        let armed = match (&restore, wants_magic) {
            (Some(restore), true) => {
                let timeout = self.plan.safety.confirm_timeout;
                safe::arm(conn, &token, timeout, restore, probe.systemd).await?;
                self.events.note(
                    name,
                    format!("magic rollback armed ({}s to confirm)", timeout.as_secs()),
                );
                Some(Instant::now())
            }
            (None, true) => {
                self.events.note(
                    name,
                    "no previous generation: magic rollback not armed".to_owned(),
                );
                None
            }
            _ => None,
        };

        let activation = remote::activate(
            conn,
            name,
            &self.path,
            self.goal,
            probe,
            &self.events,
            &token,
        )
        .await?;
        report.generation = activation.generation;
        if activation.exit.success() {
            let Some(armed) = armed else {
                return Ok(());
            };
            self.events
                .note(name, "confirming over a new connection".to_owned());
            return match safe::confirm(&self.plan, &token, probe.systemd, armed).await {
                Confirmation::Confirmed => Ok(()),
                Confirmation::RolledBack(why) => {
                    report.generation = previous.profile.as_ref().map(|g| g.number);
                    Err(HostError::RolledBack { why })
                }
                Confirmation::RollbackFailed(detail) => Err(HostError::WatchdogFailed { detail }),
                Confirmation::Pending(why) => Err(HostError::RollbackPending { why }),
            };
        }

        // The activation failed. Whatever happens next, the watchdog must not act on its own.
        let watchdog_stopped = match armed {
            Some(_) => safe::disarm(conn, &token, probe.systemd).await,
            None => true,
        };
        if activation.profile_failed {
            return Err(HostError::Profile {
                exit: activation.exit,
                tail: activation.tail,
            });
        }
        let restored = match (&restore, self.auto_rollback, watchdog_stopped) {
            (_, false, _) => Restored::No("automatic rollback is off"),
            (None, true, _) => Restored::No("there is no previous generation to go back to"),
            (Some(_), true, false) => Restored::No("the host's watchdog is already restoring it"),
            (Some(script), true, true) => {
                self.events.note(
                    name,
                    "activation failed: restoring the previous generation".to_owned(),
                );
                let output = conn
                    .run(script, |line| {
                        self.events.output(Some(name), Stage::Activate, &line.text);
                    })
                    .await
                    .map_err(|source| HostError::Channel {
                        stage: Stage::Activate,
                        source,
                    })?;
                if output.exit.success() {
                    if self.goal.sets_profile() {
                        report.generation = previous.profile.as_ref().map(|g| g.number);
                    }
                    Restored::Yes
                } else {
                    Restored::Failed(output.exit)
                }
            }
        };
        Err(HostError::Activation {
            goal: self.goal,
            exit: activation.exit,
            tail: activation.tail,
            profile_set: self.goal.sets_profile(),
            restored,
        })
    }

    /// Copies what the host lacks. A host that already has the system gets nothing, not even a
    /// `nix copy` process: validity of the top path implies its whole closure is there.
    async fn copy(&self, conn: &Connection) -> Result<CopyStats, HostError> {
        let closure = self
            .nix
            .closure(&self.path)
            .await
            .map_err(|source| HostError::Closure {
                path: self.path.clone(),
                source,
            })?;
        let missing = remote::missing_paths(conn, &closure).await?;
        let stats = CopyStats {
            sent: missing.len(),
            total: closure.len(),
        };
        if missing.is_empty() {
            return Ok(stats);
        }
        let target = &self.plan.target;
        let dest = SshDest {
            user: target.user.clone(),
            address: target.address.clone(),
            port: target.port,
            identity_file: target.identity_file.clone(),
            known_hosts: target.known_hosts.clone(),
            connect_timeout_secs: target.connect_timeout.as_secs().max(1),
        };
        let name = self.plan.name.as_str();
        let mut sink = |line: &str| self.events.output(Some(name), Stage::Copy, line);
        self.nix
            .copy_to(&dest, &self.path, &mut sink)
            .await
            .map_err(HostError::Copy)?;
        Ok(stats)
    }
}
