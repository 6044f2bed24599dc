//! `hbdeploy rollback`: put hosts back on an earlier generation of their system profile, in
//! parallel, refusing (with the host left exactly as it was) when there is nothing to go back to.

use std::num::NonZeroUsize;
use std::time::{Duration, Instant};

use crate::port::{Host, Lock, Reach};
use hbdeploy_nix::StorePath;

use crate::event::{EventSender, Stage};
use crate::fanout::report_each;
use crate::remote::{Change, Deployment, JobKind, Op, Progress};
use crate::report::{HostReport, Outcome, Report};
use crate::state::read_state;
use crate::{Goal, HostError, HostPlan, safe};

/// Which generation to go back to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RollbackTarget {
    /// The generation before the profile's current one (`nix-env --rollback`).
    Previous,
    /// This generation (`nix-env --switch-generation N`).
    Generation(u32),
    /// What an earlier deployment gave the host: its generation if that still points at its
    /// system, else the newest generation that does.
    Deployed {
        /// The generation the deployment left the host on, if it set one.
        generation: Option<u32>,
        /// The system the deployment put on the host.
        path: StorePath,
    },
}

/// A rollback of several hosts.
#[derive(Debug, Clone)]
pub struct RollbackRequest {
    /// The run's credentials, for every connection.
    pub session: hbdeploy_ssh::Session,
    /// The selected hosts.
    pub hosts: Vec<HostPlan>,
    /// Where to go.
    pub target: RollbackTarget,
    /// `Switch` (activate now and at boot) or `Boot` (boot default only).
    pub goal: Goal,
    /// Hosts handled at once.
    pub parallel: NonZeroUsize,
}

/// Rolls every host of `request` back; one report entry per host, in order.
pub async fn rollback(request: &RollbackRequest, events: EventSender) -> Report {
    let goal = request.goal;
    let hosts = request.hosts.clone();
    report_each(
        hosts,
        request.parallel,
        (&events, Stage::Activate),
        |plan, start| {
            let events = events.clone();
            let target = request.target.clone();
            let session = request.session.clone();
            async move { roll_back_host(plan, (target, session), goal, events, start).await }
        },
    )
    .await
}

async fn roll_back_host(
    plan: HostPlan,
    (target, session): (RollbackTarget, hbdeploy_ssh::Session),
    goal: Goal,
    events: EventSender,
    start: Instant,
) -> HostReport {
    let mut report = HostReport::new(&plan.name, Stage::Connect);
    events.stage(&plan.name, Stage::Connect);
    let ssh = Reach { session };
    let result = safe::under_lock(&ssh, &plan.target, "rollback", async |conn, lock| {
        report.stage = Stage::Activate;
        events.stage(&plan.name, Stage::Activate);
        let limit = plan.safety.activation_timeout;
        let change = (target, goal, limit);
        switch_back((conn, lock), &plan.name, change, &events, &mut report).await
    })
    .await;
    if let Err(error) = result {
        report.outcome = Outcome::Failed(error);
    }
    report.duration = start.elapsed();
    events.finished(&report);
    report
}

/// Rolls `host` back to `target` with `goal`, the activation bounded by `limit`.
async fn switch_back<H: Host>(
    (conn, lock): (&H, &Lock<H>),
    host: &str,
    (target, goal, limit): (RollbackTarget, Goal, Duration),
    events: &EventSender,
    report: &mut HostReport,
) -> Result<(), HostError> {
    crate::settle::settle_earlier(conn, host, events, &mut report.settled).await?;
    let state = read_state(conn, Stage::Activate).await?;
    report.old_path = state.current.clone();
    let chosen = match &target {
        RollbackTarget::Previous => {
            state
                .previous()
                .cloned()
                .ok_or(HostError::NoEarlierGeneration {
                    current: state.profile_generation,
                })?
        }
        RollbackTarget::Generation(number) => {
            state
                .generation(*number)
                .cloned()
                .ok_or_else(|| HostError::NoSuchGeneration {
                    requested: *number,
                    available: state.generations.iter().map(|g| g.number).collect(),
                })?
        }
        RollbackTarget::Deployed { generation, path } => generation
            .and_then(|n| state.generation(n))
            .filter(|g| &g.path == path)
            .or_else(|| {
                state
                    .generations
                    .iter()
                    .filter(|g| &g.path == path)
                    .max_by_key(|g| g.number)
            })
            .cloned()
            .ok_or_else(|| HostError::DeployedSystemGone {
                generation: *generation,
                path: path.clone(),
            })?,
    };
    report.new_path = Some(chosen.path.clone());
    // Everything that can be checked is checked before the profile changes.
    // Moving the profile and switching are one detached job, so a lost connection cannot
    // leave the profile moved without the activation. Starting it checks the system first.
    let deployment = Deployment::new(&safe::new_token(), state.systemd);
    let change = Change {
        op: Op::Generation(chosen.number),
        path: chosen.path.clone(),
        goal,
    };
    let progress = Progress::default();
    let run = deployment.start(
        (conn, Some(lock)),
        host,
        JobKind::Rollback,
        &change,
        None,
        None,
        events,
        &progress,
    );
    let outcome = match tokio::time::timeout(limit, run).await {
        Ok(outcome) => outcome?,
        Err(_) => {
            deployment.stop(conn, JobKind::Rollback).await?;
            let left = read_state(conn, Stage::Activate).await.ok();
            return Err(HostError::RollbackActivation {
                generation: chosen.number,
                goal,
                exit: hbdeploy_ssh::Exit::Unknown,
                tail: vec![format!(
                    "still running after {}s (activation-timeout): stopped",
                    limit.as_secs()
                )],
                profile_generation: left.as_ref().and_then(|s| s.profile_generation),
                current: left.and_then(|s| s.current),
            });
        }
    };
    report.generation = outcome.generation;
    if outcome.profile_failed {
        return Err(HostError::Profile {
            exit: outcome.exit,
            tail: outcome.tail,
        });
    }
    if outcome.exit.success() {
        return Ok(());
    }
    // Say exactly where the host was left: read it again rather than guess.
    let left = read_state(conn, Stage::Activate).await.ok();
    Err(HostError::RollbackActivation {
        generation: chosen.number,
        goal,
        exit: outcome.exit,
        tail: outcome.tail,
        profile_generation: left.as_ref().and_then(|s| s.profile_generation),
        current: left.and_then(|s| s.current),
    })
}
