//! The deployment itself: one evaluation and one build for every selected host, then one task
//! per host (connect, copy, activate), at most `parallel` at a time.

use std::collections::BTreeMap;
use std::time::Instant;

use hbdeploy_nix::{Nix, SshDest, StorePath, Toplevel};
use hbdeploy_ssh::Connection;

use crate::event::{EventSender, Stage};
use crate::fanout::each_host;
use crate::report::{CopyStats, HostReport, Outcome, Report};
use crate::state::{HostState, read_state};
use crate::{DeployRequest, Goal, HostError, HostPlan, PipelineError, remote};

/// Deploys `request`, sending progress to `events`. Returns one report entry per host; an error
/// only when nix itself cannot run.
pub async fn deploy(
    request: &DeployRequest,
    nix: &Nix,
    events: EventSender,
) -> Result<Report, PipelineError> {
    let start = Instant::now();
    let prepared = build_all(&request.flake, &request.hosts, nix, &events).await?;
    let build_time = start.elapsed();

    // Hosts that failed to evaluate or build, or that the goal does not reach, are done now.
    let mut reports: Vec<Option<HostReport>> = Vec::with_capacity(request.hosts.len());
    let mut reach: Vec<(HostPlan, StorePath)> = Vec::new();
    for (plan, result) in request.hosts.iter().zip(prepared) {
        let report = match result {
            Err((stage, error)) => HostReport::failed(&plan.name, stage, *error, start.elapsed()),
            Ok(path) if !request.goal.reaches_hosts() => HostReport {
                new_path: Some(path),
                duration: start.elapsed(),
                ..HostReport::new(&plan.name, Stage::Build)
            },
            Ok(path) => {
                reach.push((plan.clone(), path));
                reports.push(None);
                continue;
            }
        };
        events.finished(&report);
        reports.push(Some(report));
    }

    let results = each_host(reach, request.parallel, |(plan, path)| {
        let job = HostJob {
            plan,
            path,
            goal: request.goal,
            reactivate: request.reactivate,
            nix: nix.clone(),
            events: events.clone(),
            start,
        };
        job.run()
    })
    .await;
    // Fill the hosts' places in selection order; a lost task becomes an explicit failure.
    let mut results = results.into_iter();
    let mut hosts = Vec::with_capacity(reports.len());
    for (plan, done) in request.hosts.iter().zip(reports) {
        let report = match done {
            Some(report) => report,
            None => match results.next() {
                Some((_, Some(report))) => report,
                _ => {
                    let lost = HostReport::failed(
                        &plan.name,
                        Stage::Activate,
                        HostError::TaskLost,
                        start.elapsed(),
                    );
                    events.finished(&lost);
                    lost
                }
            },
        };
        hosts.push(report);
    }
    Ok(Report { hosts, build_time })
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
    nix: Nix,
    events: EventSender,
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

impl HostJob {
    async fn run(self) -> HostReport {
        let mut report = HostReport {
            new_path: Some(self.path.clone()),
            ..HostReport::new(&self.plan.name, Stage::Connect)
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
        let began = self.enter(report, Stage::Connect);
        let conn = Connection::connect(&self.plan.target)
            .await
            .map_err(HostError::Connect)?;
        report.timings.push((Stage::Connect, began.elapsed()));
        let result = self.on_host(&conn, report).await;
        conn.close().await;
        result
    }

    async fn on_host(&self, conn: &Connection, report: &mut HostReport) -> Result<(), HostError> {
        let name = self.plan.name.as_str();
        if self.goal.activates() && !self.reactivate {
            let state = read_state(conn, Stage::Connect).await?;
            if already_there(&state, &self.path, self.goal) {
                report.outcome = Outcome::Unchanged;
                report.generation = state.profile_generation;
                return Ok(());
            }
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
        if !self.goal.activates() {
            return Ok(());
        }
        let began = self.enter(report, Stage::Activate);
        let activated = remote::activate(
            conn,
            name,
            &self.path,
            self.goal,
            &self.events,
            &mut report.generation,
        )
        .await;
        report.timings.push((Stage::Activate, began.elapsed()));
        activated
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
