//! Reboots that are checked (`hbdeploy reboot`, `apply --reboot`): the host is told to reboot
//! under its lock, then the deployer waits, at most `reboot-timeout`, until the host answers SSH
//! from a new boot (its boot id changed) with a host key the connection trusts, checks that
//! `/run/booted-system` is the system expected, and runs the host's health checks. A host that
//! does not come back in time is a value in the report (`did-not-come-back`); the run never
//! waits longer than the bound.
//!
//! What "expected" means: for `apply --reboot`, the system just deployed; for `hbdeploy
//! reboot`, what the system profile pointed at before the reboot (the boot loader's default).

use std::num::NonZeroUsize;
use std::time::{Duration, Instant};

use hbdeploy_nix::StorePath;
use hbdeploy_ssh::SshError;

use crate::event::{EventSender, Stage};
use crate::fanout::report_each;
use crate::port::{Dial, Host, Reach};
use crate::remote::{self, Booted};
use crate::report::{HostReport, Outcome, Report};
use crate::{Cancel, HostError, HostPlan, health, safe};

/// Pause between attempts to reach a rebooting host.
const POLL: Duration = Duration::from_secs(1);

/// `hbdeploy reboot`: the hosts to reboot and check.
#[derive(Debug, Clone)]
pub struct RebootRequest {
    /// The selected hosts; each host's `reboot_timeout` bounds its wait.
    pub hosts: Vec<HostPlan>,
    /// Hosts rebooted at once.
    pub parallel: NonZeroUsize,
    /// The run's credentials, for every connection.
    pub session: hbdeploy_ssh::Session,
}

/// Reboots and checks every host of `request`; one report entry per host, in order.
pub async fn reboot(request: &RebootRequest, events: EventSender) -> Report {
    let hosts = request.hosts.clone();
    report_each(
        hosts,
        request.parallel,
        (&events, Stage::Reboot),
        |plan, start| {
            let events = events.clone();
            let ssh = Reach {
                session: request.session.clone(),
            };
            async move { reboot_host(&ssh, plan, events, start).await }
        },
    )
    .await
}

async fn reboot_host(
    ssh: &Reach,
    plan: HostPlan,
    events: EventSender,
    start: Instant,
) -> HostReport {
    let mut report = HostReport::new(&plan.name, Stage::Connect);
    events.stage(&plan.name, Stage::Connect);
    let result = safe::under_lock(ssh, &plan.target, "reboot", async |conn, _| {
        reboot_and_check(ssh, conn, &plan, (None, None), &events, &mut report).await
    })
    .await;
    if let Err(error) = result {
        report.outcome = Outcome::Failed(error);
    }
    report.duration = start.elapsed();
    events.finished(&report);
    report
}

/// `apply --reboot`: after `path` was deployed to the host of `plan` on `conn` (under the
/// deployment's lock), reboots it and checks that it booted `path`. The first Ctrl-C (`cancel`)
/// ends the wait for the host.
pub(crate) async fn after_apply<D: Dial>(
    dial: &D,
    conn: &D::Host,
    plan: &HostPlan,
    (path, cancel): (&StorePath, &Cancel),
    events: &EventSender,
    report: &mut HostReport,
) -> Result<(), HostError> {
    reboot_and_check(dial, conn, plan, (Some(path), Some(cancel)), events, report).await
}

/// Reboots the host on `conn` (whose lock the caller holds: it dies with the old boot), waits
/// for it to come back and checks it. `expected` is the system it must boot; `None` for what
/// the profile points at now. `cancel`, where given, ends the wait.
async fn reboot_and_check<D: Dial>(
    dial: &D,
    conn: &D::Host,
    plan: &HostPlan,
    (expected, cancel): (Option<&StorePath>, Option<&Cancel>),
    events: &EventSender,
    report: &mut HostReport,
) -> Result<(), HostError> {
    let name = plan.name.as_str();
    report.stage = Stage::Reboot;
    events.stage(name, Stage::Reboot);
    let began = Instant::now();
    let started = remote::start_reboot(conn).await?;
    // `apply` knows what the host ran before the deployment; `reboot` what it ran before now.
    if report.old_path.is_none() {
        report.old_path = started.current.clone();
    }
    let expected = match expected.cloned().or(started.profile) {
        Some(expected) => expected,
        None => {
            return Err(HostError::Remote {
                command: "reading the system profile before the reboot".to_owned(),
                exit: hbdeploy_ssh::Exit::Code(0),
                tail: vec!["/nix/var/nix/profiles/system points at no store path".to_owned()],
            });
        }
    };
    report.new_path = Some(expected.clone());
    events.note(
        name,
        format!(
            "rebooting; waiting up to {}s for it to come back",
            plan.safety.reboot_timeout.as_secs()
        ),
    );
    let deadline = began + plan.safety.reboot_timeout;
    let waited = come_back(dial, plan, &started.boot_id, deadline);
    let (conn, booted) = match cancel {
        Some(cancel) => tokio::select! {
            result = waited => result?,
            () = cancel.cancelled() => return Err(HostError::RebootInterrupted),
        },
        None => waited.await?,
    };
    report.timings.push((Stage::Reboot, began.elapsed()));
    events.note(name, format!("back after {}s", began.elapsed().as_secs()));
    let checked = check(&conn, plan, &expected, booted, events, report).await;
    conn.close().await;
    checked
}

/// Waits until the host answers from a boot other than `old_boot`, at the latest at
/// `deadline`; returns the new connection and what it booted. A host key the connection
/// refuses ends the wait at once: it is never accepted, not even with `--accept-new`.
async fn come_back<D: Dial>(
    dial: &D,
    plan: &HostPlan,
    old_boot: &str,
    deadline: Instant,
) -> Result<(D::Host, Booted), HostError> {
    let mut target = plan.target.clone();
    target.set_accept_new(false);
    let mut last = "it never answered".to_owned();
    loop {
        tokio::time::sleep(POLL.min(deadline.saturating_duration_since(Instant::now()))).await;
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(HostError::DidNotComeBack {
                secs: plan.safety.reboot_timeout.as_secs(),
                last,
            });
        }
        target.connect_timeout = plan.target.connect_timeout.min(left);
        let conn = match tokio::time::timeout(left, dial.connect(&target)).await {
            Err(_) => {
                last = "the last attempt to connect got no answer".to_owned();
                continue;
            }
            Ok(Err(err @ SshError::HostKey { .. })) => return Err(HostError::RebootHostKey(err)),
            Ok(Err(err)) => {
                last = format!("last attempt: {}", hbdeploy_files::chain(&err));
                continue;
            }
            Ok(Ok(conn)) => conn,
        };
        // The host's own wait for its boot to finish ends a little before the deployer's, so
        // a boot that never finishes still gives an answer to check.
        let left = deadline.saturating_duration_since(Instant::now());
        let wait = left.saturating_sub(Duration::from_secs(2));
        match tokio::time::timeout(left, remote::booted(&conn, wait)).await {
            Ok(Ok(booted)) if booted.boot_id != old_boot => return Ok((conn, booted)),
            Ok(Ok(_)) => {
                last = "it still answered from the boot before (its boot id had not changed): \
                        the reboot did not happen"
                    .to_owned();
            }
            Ok(Err(error)) => {
                last = format!(
                    "last attempt: reading it failed: {}",
                    hbdeploy_files::chain(&error)
                );
            }
            Err(_) => last = "reading what it booted got no answer".to_owned(),
        }
        conn.close().await;
    }
}

/// The checks of a host that came back: what the boot-time restore did, the booted system,
/// then the health checks.
async fn check(
    conn: &impl Host,
    plan: &HostPlan,
    expected: &StorePath,
    booted: Booted,
    events: &EventSender,
    report: &mut HostReport,
) -> Result<(), HostError> {
    if !booted.restores.is_empty() {
        return Err(restored_at_boot(&booted));
    }
    match &booted.booted {
        Some(system) if system == expected => {}
        other => {
            return Err(HostError::BootedOldSystem {
                expected: expected.clone(),
                booted: other.clone(),
            });
        }
    }
    if plan.health.is_empty() {
        return Ok(());
    }
    report.stage = Stage::Check;
    events.stage(&plan.name, Stage::Check);
    let began = Instant::now();
    let checked = health::run_checks(conn, &plan.health).await;
    report.timings.push((Stage::Check, began.elapsed()));
    checked.map_err(|failure| HostError::RebootHealth {
        booted: expected.clone(),
        failure,
    })
}

/// The boot-time restore's lines (`restored TOKEN N PATH`, `failed TOKEN N PATH`) as the
/// report says them.
fn restored_at_boot(booted: &Booted) -> HostError {
    let mut restored = true;
    let what = booted
        .restores
        .iter()
        .map(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.as_slice() {
                ["restored", token, number, path] => {
                    format!("restored generation {number} ({path}) after deployment {token}")
                }
                ["failed", token, number, path] => {
                    restored = false;
                    format!(
                        "failed to restore generation {number} ({path}) after deployment {token}"
                    )
                }
                _ => {
                    restored = false;
                    format!("said: {line}")
                }
            }
        })
        .collect();
    let running = booted
        .current
        .as_ref()
        .map_or_else(|| "an unknown system".to_owned(), |p| p.to_string());
    let mut what: Vec<String> = what;
    what.push(format!("it runs {running}"));
    HostError::RestoredAtBoot { what, restored }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::OutcomeKind;

    const OLD: &str = "/nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-nixos-system-a";

    #[test]
    fn a_restore_at_boot_is_reported_as_rolled_back_unless_it_failed() {
        let booted = Booted {
            boot_id: "2".to_owned(),
            current: StorePath::new(OLD).ok(),
            restores: vec![format!("restored ab12 3 {OLD}")],
            ..Booted::default()
        };
        let error = restored_at_boot(&booted);
        assert_eq!(error.outcome(), OutcomeKind::RolledBack);
        let text = error.to_string();
        assert!(
            text.contains("restored generation 3 (") && text.contains("after deployment ab12"),
            "{text}"
        );
        let failed = Booted {
            restores: vec![format!("failed ab12 3 {OLD}")],
            ..booted
        };
        assert_eq!(restored_at_boot(&failed).outcome(), OutcomeKind::Failed);
    }

    #[tokio::test]
    async fn a_host_that_never_answers_is_reported_at_the_deadline() {
        // Nothing listens on port 1 of the loopback address: every attempt is refused.
        let mut plan = crate::fanout::tests::plan("gone");
        plan.target.port = 1;
        plan.target.connect_timeout = Duration::from_secs(10);
        plan.safety.reboot_timeout = Duration::from_secs(2);
        let deadline = Instant::now() + plan.safety.reboot_timeout;
        let result = come_back(&Reach::default(), &plan, "1", deadline).await;
        let Err(error) = result else {
            panic!("a host that never answers came back");
        };
        assert_eq!(error.outcome(), OutcomeKind::DidNotComeBack);
        assert!(error.to_string().contains("within 2s (reboot-timeout)"));
    }
}
