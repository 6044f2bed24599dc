//! `hbdeploy plan`: build the selected hosts' systems and tell, per host, what applying them
//! would change — running system → new system, the closures' sizes and package changes, and
//! (only with `copy`) what `switch-to-configuration dry-activate` says — without changing any
//! host's system.
//!
//! By default nothing is written to a host: the host's current closure is read with
//! `nix-store` queries over the one SSH connection. `dry-activate` needs the new system in the
//! host's store, so it runs only when the request allows copying the closure there (`plan
//! --copy`): copying adds store paths but changes neither the profile nor the running system,
//! and the next `apply` then has nothing left to copy.

use std::num::NonZeroUsize;
use std::time::{Duration, Instant};

use crate::port::Link;
use hbdeploy_nix::{Nix, StorePath};

use crate::build::{PrepareOptions, build_all};
use crate::closure_diff::{ClosureDiff, diff};
use crate::event::{Event, EventSender, Stage};
use crate::fanout::each_host;
use crate::port::{Dial, Host, Reach};
use crate::state::read_state;
use crate::{HostError, HostPlan, PipelineError, remote};

/// A plan of several hosts.
#[derive(Debug, Clone)]
pub struct PlanRequest {
    /// The run's credentials, for every connection.
    pub session: hbdeploy_ssh::Session,
    /// The flake reference, as nix takes it.
    pub flake: String,
    /// The selected hosts.
    pub hosts: Vec<HostPlan>,
    /// Hosts read at once.
    pub parallel: NonZeroUsize,
    /// Copy each changed host's closure to it and run `dry-activate` there.
    pub copy: bool,
    /// Sign closures with this nix secret key before copying them (as `apply` does).
    pub signing_key: Option<std::path::PathBuf>,
    /// How much evaluation runs at once.
    pub eval: hbdeploy_nix::EvalLimits,
}

/// What applying would do to one host.
#[derive(Debug)]
pub enum PlanOutcome {
    /// The host would change.
    Changes,
    /// The host already runs the new system, and its profile points at it.
    Unchanged,
    /// The plan could not be made; the error says why (the host was not changed).
    Failed(HostError),
}

pub use crate::remote::{DRY_ACTIVATE_LINES, DryActivation};

/// One host's plan.
#[derive(Debug)]
pub struct HostChanges {
    /// The host.
    pub host: String,
    /// Whether it would change, or why it could not be planned.
    pub outcome: PlanOutcome,
    /// The last stage the plan reached for this host.
    pub stage: Stage,
    /// `/run/current-system` on the host, when it was read.
    pub old_path: Option<StorePath>,
    /// The system the flake builds for it, when it was built.
    pub new_path: Option<StorePath>,
    /// The profile's system on the host (the boot default), when it was read.
    pub profile_path: Option<StorePath>,
    /// Old closure → new closure, when both were read.
    pub diff: Option<ClosureDiff>,
    /// `dry-activate`'s answer, when it ran.
    pub dry_activate: Option<DryActivation>,
    /// The host's secrets compared, by hash, with what it holds.
    pub secrets: Vec<crate::SecretChange>,
    /// Wall time from the start of the plan until this host was planned.
    pub duration: Duration,
}

impl HostChanges {
    fn new(host: &str, stage: Stage) -> HostChanges {
        HostChanges {
            host: host.to_owned(),
            outcome: PlanOutcome::Changes,
            stage,
            old_path: None,
            new_path: None,
            profile_path: None,
            diff: None,
            dry_activate: None,
            secrets: Vec::new(),
            duration: Duration::ZERO,
        }
    }

    /// Whether the host could be planned.
    pub fn succeeded(&self) -> bool {
        !matches!(self.outcome, PlanOutcome::Failed(_))
    }
}

/// Plans every host of `request`; one entry per host, in order. An error only when nix itself
/// cannot run.
pub async fn plan(
    request: &PlanRequest,
    nix: &Nix,
    events: EventSender,
) -> Result<Vec<HostChanges>, PipelineError> {
    let start = Instant::now();
    // A plan compares closures here, so every system is built here, even one that `apply`
    // would build on its host.
    let local: Vec<HostPlan> = request
        .hosts
        .iter()
        .cloned()
        .map(|mut plan| {
            plan.transfer.build_on_target = false;
            plan
        })
        .collect();
    let options = PrepareOptions {
        builders: None,
        eval: request.eval.clone(),
        from: None,
    };
    let built = build_all(&request.flake, &local, nix, &events, options).await?;
    let mut slots: Vec<Option<HostChanges>> = Vec::with_capacity(request.hosts.len());
    let mut jobs: Vec<(usize, HostPlan, StorePath)> = Vec::new();
    for (index, (plan, result)) in request.hosts.iter().zip(built).enumerate() {
        match result {
            Ok(built) => {
                jobs.push((index, plan.clone(), built.out));
                slots.push(None);
            }
            Err((stage, error)) => {
                let changes = HostChanges {
                    outcome: PlanOutcome::Failed(*error),
                    duration: start.elapsed(),
                    ..HostChanges::new(&plan.name, stage)
                };
                finished(&events, &changes);
                slots.push(Some(changes));
            }
        }
    }
    let copy = request.copy.then(|| Copying {
        signing_key: request.signing_key.clone(),
    });
    let results = each_host(jobs, request.parallel, |(_, plan, path)| {
        let nix = nix.clone();
        let events = events.clone();
        let copy = copy.clone();
        let session = request.session.clone();
        async move {
            let mut changes =
                plan_host(&plan, path, (&nix, &session), copy.as_ref(), &events).await;
            changes.duration = start.elapsed();
            finished(&events, &changes);
            changes
        }
    })
    .await;
    for ((index, plan, _), changes) in results {
        slots[index] = Some(changes.unwrap_or_else(|| HostChanges {
            outcome: PlanOutcome::Failed(HostError::TaskLost),
            duration: start.elapsed(),
            ..HostChanges::new(&plan.name, Stage::Connect)
        }));
    }
    Ok(slots
        .into_iter()
        .zip(&request.hosts)
        .map(|(slot, plan)| {
            slot.unwrap_or_else(|| HostChanges {
                outcome: PlanOutcome::Failed(HostError::TaskLost),
                ..HostChanges::new(&plan.name, Stage::Build)
            })
        })
        .collect())
}

fn finished(events: &EventSender, changes: &HostChanges) {
    let summary = match &changes.outcome {
        PlanOutcome::Changes => "planned".to_owned(),
        PlanOutcome::Unchanged => "unchanged".to_owned(),
        PlanOutcome::Failed(error) => error.to_string(),
    };
    events.send(Event::HostFinished {
        host: changes.host.clone(),
        succeeded: changes.succeeded(),
        stage: changes.stage,
        summary,
    });
}

/// How `plan --copy` sends closures: as `apply` would.
#[derive(Debug, Clone)]
struct Copying {
    signing_key: Option<std::path::PathBuf>,
}

async fn plan_host(
    plan: &HostPlan,
    path: StorePath,
    (nix, session): (&Nix, &hbdeploy_ssh::Session),
    copy: Option<&Copying>,
    events: &EventSender,
) -> HostChanges {
    let mut changes = HostChanges {
        new_path: Some(path.clone()),
        ..HostChanges::new(&plan.name, Stage::Connect)
    };
    events.stage(&plan.name, Stage::Connect);
    let conn = match Reach::with(session).connect(&plan.target).await {
        Ok(conn) => conn,
        Err(error) => {
            changes.outcome = PlanOutcome::Failed(HostError::Connect(error));
            return changes;
        }
    };
    if let Err(error) = on_host(&conn, plan, &path, nix, copy, events, &mut changes).await {
        changes.outcome = PlanOutcome::Failed(error);
    }
    conn.close().await;
    changes
}

async fn on_host(
    conn: &Link,
    plan: &HostPlan,
    path: &StorePath,
    nix: &Nix,
    copy: Option<&Copying>,
    events: &EventSender,
    changes: &mut HostChanges,
) -> Result<(), HostError> {
    let state = read_state(conn, Stage::Connect).await?;
    changes.old_path = state.current.clone();
    changes.profile_path = state.profile().map(|g| g.path.clone());
    let new = nix
        .closure_sizes(path)
        .await
        .map_err(|source| HostError::Closure {
            path: path.clone(),
            source,
        })?;
    let old = match &state.current {
        Some(current) => remote::closure(conn, current, Stage::Connect).await?,
        None => Vec::new(),
    };
    changes.diff = Some(diff(&old, &new));
    changes.secrets = crate::secrets::compare(conn, plan).await?;
    let secrets_change = changes.secrets.iter().any(|s| s.changes);
    if changes.old_path.as_ref() == Some(path) && changes.profile_path.as_ref() == Some(path) {
        // The system is there; only secrets may still change.
        if !secrets_change {
            changes.outcome = PlanOutcome::Unchanged;
        }
        return Ok(());
    }
    let Some(copy) = copy else {
        return Ok(());
    };
    changes.stage = Stage::Copy;
    events.stage(&plan.name, Stage::Copy);
    let closure: Vec<StorePath> = new.into_iter().map(|(p, _)| p).collect();
    let signing_key = copy.signing_key.as_deref();
    let stats =
        crate::transfer::copy_missing((conn, None), nix, plan, signing_key, path, &closure, events)
            .await?;
    events.note(
        &plan.name,
        format!("copied {} of {} paths", stats.sent, stats.total),
    );
    changes.stage = Stage::Activate;
    events.stage(&plan.name, Stage::Activate);
    events.note(&plan.name, "dry-activate".to_owned());
    // It changes nothing, so it needs neither the lock nor a detached job.
    remote::probe(conn, &plan.name, path, events).await?;
    changes.dry_activate = Some(remote::dry_activate(conn, &plan.name, path, events).await?);
    Ok(())
}
