//! One host's activation: preparing it (the NixOS check, the job scripts, the watchdog),
//! following it within `activation-timeout`, confirming it over a new connection, and restoring
//! the previous generation when it failed, hung or lost its session.

use tokio::time::Instant;

use crate::error::Restored;
use crate::event::Stage;
use crate::health::run_checks;
use crate::port::Lock;
use crate::port::{Host, Transport};
use crate::remote::{
    Arm, Change, Decision, Deployment, JobKind, JobOutcome, Op, Progress, WatchdogReason,
};
use crate::report::HostReport;
use crate::safe::{self, Confirmation, Previous};
use crate::state::{HostState, read_state};
use crate::{Goal, HostError};

use super::HostJob;

impl<T: Transport> HostJob<T> {
    /// Arms magic rollback where it applies, activates (bounded by `activation-timeout`), then
    /// confirms over a new connection or rolls a failed activation back.
    pub(super) async fn activate(
        &self,
        conn: &T::Host,
        lock: Option<&Lock<T::Host>>,
        state: &HostState,
        report: &mut HostReport,
    ) -> Result<(), HostError> {
        let name = self.plan.name.as_str();
        let safety = self.plan.safety;
        let previous = Previous::from(state);
        let restore = safe::restore_change(&previous, self.goal);
        let mut wants_magic =
            safety.magic_rollback && matches!(self.goal, Goal::Switch | Goal::Test);
        if wants_magic && self.plan.target.is_local() {
            // Magic rollback guards against a system that cuts the deployer off from its host;
            // nothing can cut hbdeploy off from the machine it runs on.
            self.events.note(
                name,
                "magic rollback skipped: hbdeploy runs on this host, and nothing can cut it off \
                 from itself (a failed activation is still rolled back)"
                    .to_owned(),
            );
            wants_magic = false;
        }
        // One round trip does everything up to the running activation: the path must be a
        // NixOS system (checked before anything changes), the deployment's scripts are written,
        // the watchdog armed, then the activation started and followed. The state read said
        // how jobs run on this host.
        let deployment = Deployment::new(&safe::new_token(), state.systemd);
        let arm = match (&restore, wants_magic) {
            (Some(restore), true) => Some(Arm {
                confirm: safety.confirm_timeout,
                activation: safety.activation_timeout,
                restore,
            }),
            _ => None,
        };
        if wants_magic && arm.is_none() {
            self.events.note(
                name,
                "no previous generation: magic rollback not armed".to_owned(),
            );
        }
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
        let progress = Progress::default();
        let run = deployment.start(
            (conn, lock),
            name,
            JobKind::Activate,
            &change,
            restore.as_ref(),
            arm,
            &self.events,
            &progress,
        );
        let result = tokio::time::timeout(safety.activation_timeout, run).await;
        // When the watchdog was armed. A session lost before the host said (and before the
        // activation started) may have armed it all the same: counted as armed when it began.
        let armed = progress
            .armed()
            .or_else(|| (arm.is_some() && progress.started().is_none()).then_some(began));
        let activation = match result {
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
        conn: &T::Host,
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
    async fn reconnect(&self, deadline: Instant) -> Option<T::Host> {
        loop {
            if let Ok(conn) = self.transport.connect(&self.plan.target).await {
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
        conn: &T::Host,
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
        let conn = self
            .transport
            .connect(&self.plan.target)
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
        conn: &T::Host,
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
        match safe::confirm(&*self.transport, &self.plan, deployment, deadline).await {
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
            let state = crate::state::host_state_via(&*self.transport, &self.plan)
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
        conn: &T::Host,
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
        conn: &T::Host,
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
