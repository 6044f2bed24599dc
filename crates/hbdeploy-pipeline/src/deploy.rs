//! The deployment itself: one evaluation and one build for every selected host, then one task
//! per host (connect, copy, activate), at most `parallel` at a time.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hbdeploy_nix::{Nix, SshDest, StorePath, Toplevel};
use hbdeploy_ssh::Connection;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::event::{EventSender, Stage};
use crate::report::{CopyStats, HostReport, Outcome, Report};
use crate::{DeployRequest, Goal, HostError, HostPlan, PipelineError, remote};

/// Deploys `request`, sending progress to `events`. Returns one report entry per host; an error
/// only when nix itself cannot run.
pub async fn deploy(
    request: &DeployRequest,
    nix: &Nix,
    events: EventSender,
) -> Result<Report, PipelineError> {
    let start = Instant::now();
    let prepared = build_all(request, nix, &events).await?;
    let build_time = start.elapsed();

    let mut reports: Vec<HostReport> = Vec::new();
    let mut tasks = JoinSet::new();
    let permits = Arc::new(Semaphore::new(request.parallel.get()));
    for (plan, result) in request.hosts.iter().zip(prepared) {
        let (stage, path) = match result {
            Err((stage, error)) => {
                reports.push(finish(
                    &events,
                    plan,
                    start,
                    stage,
                    None,
                    Outcome::Failed(*error),
                ));
                continue;
            }
            Ok(path) => (Stage::Build, path),
        };
        if !request.goal.reaches_hosts() {
            let report = finish(&events, plan, start, stage, Some(path), Outcome::Succeeded);
            reports.push(report);
            continue;
        }
        let job = HostJob {
            plan: plan.clone(),
            path,
            goal: request.goal,
            nix: nix.clone(),
            events: events.clone(),
            start,
        };
        let permits = Arc::clone(&permits);
        tasks.spawn(async move {
            // The semaphore is never closed, so acquiring only waits; if it ever failed, running
            // the host without a permit is safer than not running it.
            let _permit = permits.acquire_owned().await.ok();
            job.run().await
        });
    }
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(report) => reports.push(report),
            // A host task can only end this way by panicking; its host is then missing from the
            // report, which the order check below turns into an explicit failure entry.
            Err(_) => continue,
        }
    }
    let mut ordered = Vec::with_capacity(request.hosts.len());
    for plan in &request.hosts {
        match reports.iter().position(|r| r.host == plan.name) {
            Some(index) => ordered.push(reports.swap_remove(index)),
            None => ordered.push(finish(
                &events,
                plan,
                start,
                Stage::Activate,
                None,
                Outcome::Failed(HostError::Remote {
                    command: "hbdeploy host task".to_owned(),
                    exit: hbdeploy_ssh::Exit::Unknown,
                    tail: vec![
                        "internal error: the host's task ended abnormally; its state is unknown"
                            .to_owned(),
                    ],
                }),
            )),
        }
    }
    Ok(Report {
        hosts: ordered,
        build_time,
    })
}

fn finish(
    events: &EventSender,
    plan: &HostPlan,
    start: Instant,
    stage: Stage,
    new_path: Option<StorePath>,
    outcome: Outcome,
) -> HostReport {
    let report = HostReport {
        host: plan.name.clone(),
        outcome,
        stage,
        new_path,
        copy: None,
        duration: start.elapsed(),
        timings: Vec::new(),
    };
    events.finished(&report);
    report
}

/// Per host: its built system, or the stage and error that stopped it.
type Prepared = Vec<Result<StorePath, (Stage, Box<HostError>)>>;

/// Evaluates and builds every host's system: one `nix eval`, one `nix build`.
async fn build_all(
    request: &DeployRequest,
    nix: &Nix,
    events: &EventSender,
) -> Result<Prepared, PipelineError> {
    for plan in &request.hosts {
        events.stage(&plan.name, Stage::Evaluate);
    }
    let mut attrs: Vec<String> = request.hosts.iter().map(|p| p.attr.clone()).collect();
    attrs.sort();
    attrs.dedup();
    let mut sink = |line: &str| events.output(None, Stage::Evaluate, line);
    let evaluated = nix
        .eval_toplevels(&request.flake, &attrs, &mut sink)
        .await?;

    let mut toplevels: Vec<Toplevel> = evaluated
        .values()
        .filter_map(|r| r.as_ref().ok().cloned())
        .collect();
    toplevels.sort_by(|a, b| a.drv_path.cmp(&b.drv_path));
    toplevels.dedup();
    for plan in &request.hosts {
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

    Ok(request
        .hosts
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
    nix: Nix,
    events: EventSender,
    start: Instant,
}

impl HostJob {
    async fn run(self) -> HostReport {
        let mut report = HostReport {
            host: self.plan.name.clone(),
            outcome: Outcome::Succeeded,
            stage: Stage::Connect,
            new_path: Some(self.path.clone()),
            copy: None,
            duration: Duration::ZERO,
            timings: Vec::new(),
        };
        if let Err(error) = self.stages(&mut report).await {
            report.outcome = Outcome::Failed(error);
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

    async fn stages(&self, report: &mut HostReport) -> Result<(), HostError> {
        let name = self.plan.name.as_str();
        let began = self.enter(report, Stage::Connect);
        let conn = Connection::connect(&self.plan.target)
            .await
            .map_err(HostError::Connect)?;
        report.timings.push((Stage::Connect, began.elapsed()));

        let began = self.enter(report, Stage::Copy);
        let copied = self.copy(&conn).await;
        report.timings.push((Stage::Copy, began.elapsed()));
        let stats = match copied {
            Ok(stats) => stats,
            Err(error) => {
                conn.close().await;
                return Err(error);
            }
        };
        report.copy = Some(stats);
        self.events.note(
            name,
            format!("copied {} of {} paths", stats.sent, stats.total),
        );

        if self.goal.activates() {
            let began = self.enter(report, Stage::Activate);
            let activated =
                remote::activate(&conn, name, &self.path, self.goal, &self.events).await;
            report.timings.push((Stage::Activate, began.elapsed()));
            conn.close().await;
            activated
        } else {
            conn.close().await;
            Ok(())
        }
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
