//! Settling, run under the lock before a deployment or rollback reads the host: every job of an
//! earlier deployment still changing the host is waited for (bounded) or stopped, and an
//! activation that had to be stopped is undone — the host is put back on the generation it had
//! before that deployment, so the system that never finished activating is neither left as the
//! profile's newest generation nor taken for the "previous" generation a failed activation of
//! this run would restore.
//!
//! Then every earlier deployment left undecided (its watchdog armed, its deployer gone before
//! confirming) is decided, so that no watchdog of an earlier run acts on the host after this run
//! has changed it: one whose activation ended with success is adopted — confirmed, since this
//! deployer has just reached the host over a new connection made after that activation ended,
//! which is what magic rollback waits for; any other is restored as its watchdog would have.

use std::time::Duration;

use crate::port::Host;

use crate::HostError;
use crate::event::EventSender;
use crate::remote::{self, Before, Change, Decision, Deployment, JobKind, Op};

/// A decision step on an earlier deployment, as named in a timeout.
const EARLIER: &str = "deciding an earlier deployment";

/// How long putting back the system of a stopped activation may take: a whole activation of
/// the previous system, like any other.
const RESTORE_WAIT: Duration = Duration::from_secs(300);

/// Settles the jobs of earlier deployments still changing the host (run under the lock), says
/// what was found and done (as progress notes, and in `said` for the report), and restores the
/// host where an activation was stopped; true if there was anything (the host must then be read
/// again).
pub(crate) async fn settle_earlier(
    conn: &impl Host,
    host: &str,
    events: &EventSender,
    said: &mut Vec<String>,
) -> Result<bool, HostError> {
    let events = &mut Recorder { events, said };
    settle_found(conn, host, events).await
}

/// Progress notes that are also kept for the report.
struct Recorder<'a> {
    events: &'a EventSender,
    said: &'a mut Vec<String>,
}

impl Recorder<'_> {
    fn note(&mut self, host: &str, text: String) {
        self.said.push(text.clone());
        self.events.note(host, text);
    }
}

async fn settle_found(
    conn: &impl Host,
    host: &str,
    events: &mut Recorder<'_>,
) -> Result<bool, HostError> {
    let found = remote::settle(conn).await?;
    let mut restored = Vec::new();
    for job in &found.jobs {
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
            let earlier = (job.token.as_str(), &job.before);
            restore_earlier(conn, host, &job.deployment(), earlier, true, events).await?;
            restored.push(job.token.as_str());
        }
    }
    for earlier in &found.undecided {
        if restored.contains(&earlier.token.as_str()) {
            continue;
        }
        let deployment = earlier.deployment();
        // Adopted only if its activation ended with success (decide.sh checks it).
        let answer = deployment
            .decide(
                conn,
                Some(JobKind::Activate),
                crate::Stage::Connect,
                EARLIER,
            )
            .await?;
        match answer {
            Decision::Confirmed => events.note(
                host,
                format!(
                    "an earlier deployment ({}) was never confirmed; its activation had \
                     succeeded and the host answers over a new connection: confirmed it",
                    earlier.token
                ),
            ),
            Decision::Undecided(why) => {
                events.note(
                    host,
                    format!(
                        "an earlier deployment ({}) was never confirmed ({why}): restoring what \
                         the host ran before it, as its watchdog would",
                        earlier.token
                    ),
                );
                let found = (earlier.token.as_str(), &earlier.before);
                restore_earlier(conn, host, &deployment, found, true, events).await?;
            }
            // Its watchdog decided in the meantime: its restore must end before this run
            // changes anything.
            other => {
                let outcome =
                    crate::safe::watchdog_outcome(conn, &deployment, other, RESTORE_WAIT).await;
                events.note(
                    host,
                    format!(
                        "an earlier deployment's watchdog ({}) decided meanwhile: {outcome:?}",
                        earlier.token
                    ),
                );
                if outcome == Decision::Restoring {
                    return Err(HostError::SettleRestore {
                        token: earlier.token.clone(),
                        detail: format!(
                            "its watchdog was still restoring after {}s",
                            RESTORE_WAIT.as_secs()
                        ),
                        tail: Vec::new(),
                    });
                }
            }
        }
    }
    for pending in &found.pending {
        events.note(
            host,
            format!(
                "an earlier deployment ({}) was never confirmed before the host rebooted: \
                 restoring what the host ran before it, as magic rollback would",
                pending.token
            ),
        );
        // Its directory went with the reboot: its scripts are written again, with the
        // generation it made, and its restore runs as its own job (which drops the record).
        let deployment = Deployment::new(&pending.token, probe_systemd(conn).await?);
        deployment.reinstall(conn, pending.made.as_deref()).await?;
        let found = (pending.token.as_str(), &pending.before);
        restore_earlier(conn, host, &deployment, found, false, events).await?;
    }
    Ok(!found.jobs.is_empty() || !found.undecided.is_empty() || !found.pending.is_empty())
}

/// Puts the host back where it was before the earlier deployment `token` (whose activation was
/// stopped, never confirmed, or cut off by a reboot), with that deployment's own restore job (a
/// detached unit or process, like every change). With `claim`, the decision is claimed first,
/// so that its watchdog does not restore on its own as well.
async fn restore_earlier(
    conn: &impl Host,
    host: &str,
    deployment: &Deployment,
    (token, before): (&str, &Before),
    claim: bool,
    events: &mut Recorder<'_>,
) -> Result<(), HostError> {
    let change = match before {
        Before::Restore(change) => change,
        Before::Nothing => {
            events.note(
                host,
                format!(
                    "the earlier deployment ({token}) was the host's first: there is no \
                     earlier generation to go back to, the profile is left as it is"
                ),
            );
            return Ok(());
        }
        Before::Unknown => {
            events.note(
                host,
                format!(
                    "the earlier deployment ({token}) recorded no earlier generation: the \
                     profile is left as it is"
                ),
            );
            return Ok(());
        }
    };
    if claim {
        let decision = deployment
            .decide(conn, None, crate::Stage::Connect, EARLIER)
            .await?;
        if decision != Decision::Confirmed {
            // Its watchdog decided first; settling has waited for (or stopped) its restore.
            events.note(
                host,
                format!(
                    "the earlier deployment's watchdog ({token}) had already decided: \
                     {decision:?}"
                ),
            );
            return Ok(());
        }
    }
    events.note(host, format!("restoring {}", describe(change)));
    let run = deployment.run(conn, host, JobKind::Restore, change, events.events);
    let failed = |detail: String, tail: Vec<String>| HostError::SettleRestore {
        token: token.to_owned(),
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
    if let Some(link) = outcome.profile_moved {
        events.note(
            host,
            format!(
                "the system profile moved since the earlier deployment ({token}): it points at \
                 {link} and is left alone"
            ),
        );
        return Ok(());
    }
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

/// Whether the host runs systemd (jobs then run as transient units).
async fn probe_systemd(conn: &impl Host) -> Result<bool, HostError> {
    let text = remote::state_text(conn, crate::Stage::Connect).await?;
    Ok(crate::state::parse_state(&text).systemd)
}
