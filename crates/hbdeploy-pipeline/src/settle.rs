//! Settling, run under the lock before a deployment or rollback reads the host: every job of an
//! earlier deployment still changing the host is waited for (bounded) or stopped, and an
//! activation that had to be stopped is undone — the host is put back on the generation it had
//! before that deployment, so the system that never finished activating is neither left as the
//! profile's newest generation nor taken for the "previous" generation a failed activation of
//! this run would restore.

use std::time::Duration;

use hbdeploy_ssh::Connection;

use crate::HostError;
use crate::event::EventSender;
use crate::remote::{self, Before, Change, Decision, JobKind, Op, Settled};

/// How long putting back the system of a stopped activation may take: a whole activation of
/// the previous system, like any other.
const RESTORE_WAIT: Duration = Duration::from_secs(300);

/// Settles the jobs of earlier deployments still changing the host (run under the lock), says
/// what was found and done, and restores the host where an activation was stopped; true if
/// there were any (the host must then be read again).
pub(crate) async fn settle_earlier(
    conn: &Connection,
    host: &str,
    events: &EventSender,
) -> Result<bool, HostError> {
    let settled = remote::settle(conn).await?;
    for job in &settled {
        let how = if job.stopped {
            format!("stopped it after {}s", remote::SETTLE_WAIT.as_secs())
        } else {
            "waited for it to finish".to_owned()
        };
        events.note(
            host,
            format!(
                "an earlier deployment's {} job ({}) was still running: {how}",
                job.job, job.token
            ),
        );
        if job.stopped && job.job == "activate" {
            restore_stopped(conn, host, job, events).await?;
        }
    }
    Ok(!settled.is_empty())
}

/// Puts the host back where it was before the deployment whose activation was stopped, with
/// that deployment's own restore job (a detached unit or process, like every change).
async fn restore_stopped(
    conn: &Connection,
    host: &str,
    job: &Settled,
    events: &EventSender,
) -> Result<(), HostError> {
    let change = match &job.before {
        Before::Restore(change) => change,
        Before::Nothing => {
            events.note(
                host,
                format!(
                    "the stopped activation ({}) was the host's first deployment: there is no \
                     earlier generation to go back to, the profile is left as it is",
                    job.token
                ),
            );
            return Ok(());
        }
        Before::Unknown => {
            events.note(
                host,
                format!(
                    "the stopped activation ({}) recorded no earlier generation: the profile is \
                     left as it is",
                    job.token
                ),
            );
            return Ok(());
        }
    };
    let deployment = job.deployment();
    // Its watchdog (if it armed one) must not restore on its own as well: claim the decision.
    let decision = conn
        .run_root(&deployment.decide_command(), |_| {})
        .await
        .map(|output| Decision::parse(&output.stdout))
        .map_err(|source| HostError::Channel {
            stage: crate::Stage::Connect,
            source,
        })?;
    if decision != Decision::Confirmed {
        // Its watchdog decided first; settling has already waited for (or stopped) its restore.
        events.note(
            host,
            format!(
                "the stopped activation's watchdog ({}) had already decided: {decision:?}",
                job.token
            ),
        );
        return Ok(());
    }
    events.note(host, format!("restoring {}", describe(change)));
    let run = deployment.run(conn, host, JobKind::Restore, change, events);
    let failed = |detail: String, tail: Vec<String>| HostError::SettleRestore {
        token: job.token.clone(),
        detail,
        tail,
    };
    let outcome = match tokio::time::timeout(RESTORE_WAIT, run).await {
        Ok(outcome) => outcome?,
        Err(_) => {
            return Err(failed(
                format!("still running after {}s", RESTORE_WAIT.as_secs()),
                Vec::new(),
            ));
        }
    };
    if outcome.profile_failed {
        return Err(failed(
            format!("moving the profile failed ({})", outcome.exit),
            outcome.tail,
        ));
    }
    if !outcome.exit.success() {
        return Err(failed(
            format!("switch-to-configuration: {}", outcome.exit),
            outcome.tail,
        ));
    }
    events.note(host, format!("restored {}", describe(change)));
    Ok(())
}

/// What a restore change puts back, for the user.
fn describe(change: &Change) -> String {
    match change.op {
        Op::Restore(number) | Op::Generation(number) => format!(
            "generation {number} ({}), the host's generation before that deployment; the \
             stopped deployment's generation is deleted",
            change.path
        ),
        Op::Set | Op::Keep => format!(
            "{} ({}), the system the host ran before that deployment",
            change.path,
            change.goal.as_str()
        ),
    }
}
