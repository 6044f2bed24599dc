//! Settling's side of the remote protocol (`settle.sh`): the jobs of earlier deployments still
//! changing a host, and what each recorded to go back to.

use std::time::Duration;

use crate::port::Host;

use super::job::{Change, Deployment};
use super::reply::JobLine;
use super::{STEP_LIMIT, Script, channel_error};
use crate::{HostError, Stage};

/// How long the jobs of an earlier deployment still changing the host are waited for before
/// they are stopped.
pub(crate) const SETTLE_WAIT: Duration = Duration::from_secs(20);

/// What a deployment recorded on the host, before it changed anything, to go back to: the
/// change that restores the host as it was (`DIR/previous`), for settling to apply when it has
/// to stop that deployment's activation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Before {
    /// Put the host back with this change.
    Restore(Change),
    /// The host had no generation before that deployment: nothing to go back to.
    Nothing,
    /// The deployment recorded nothing readable (it was not an activation, or predates the
    /// record).
    Unknown,
}

impl Before {
    const NOTHING: &'static str = "none";

    fn parse(text: &str) -> Before {
        if text == Before::NOTHING {
            return Before::Nothing;
        }
        Change::parse(text).map_or(Before::Unknown, Before::Restore)
    }

    /// The first line of `DIR/previous`.
    pub(super) fn record(restore: Option<&Change>) -> String {
        restore.map_or_else(|| Before::NOTHING.to_owned(), |c| c.args().join(" "))
    }
}

/// A job of an earlier deployment that was still changing the host when the lock was taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Settled {
    pub job: String,
    pub token: String,
    /// It did not end within [`SETTLE_WAIT`] and was stopped.
    pub stopped: bool,
    /// The host runs systemd.
    pub systemd: bool,
    /// For a stopped job, what its deployment recorded to go back to.
    pub before: Before,
}

impl Settled {
    /// The deployment the job belongs to, to run its restore and stop its watchdog.
    pub(crate) fn deployment(&self) -> Deployment {
        Deployment::new(&self.token, self.systemd)
    }
}

/// An earlier deployment whose watchdog was armed and nothing decided: its deployer died or
/// lost the host before confirming.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Undecided {
    pub token: String,
    /// The host runs systemd.
    pub systemd: bool,
    /// What the deployment recorded to go back to.
    pub before: Before,
}

impl Undecided {
    /// The deployment, to decide it and run its restore.
    pub(crate) fn deployment(&self) -> Deployment {
        Deployment::new(&self.token, self.systemd)
    }
}

/// A deployment armed in an earlier boot and never settled: the host rebooted before its
/// confirmation, and its watchdog died with the boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pending {
    pub token: String,
    /// The generation it made (`system-N-link`), if it got that far.
    pub made: Option<String>,
    /// What it recorded to go back to.
    pub before: Before,
}

/// What settling found on a host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Found {
    /// Jobs of earlier deployments that were still running, now ended.
    pub jobs: Vec<Settled>,
    /// Earlier deployments left undecided.
    pub undecided: Vec<Undecided>,
    /// Deployments of an earlier boot never settled.
    pub pending: Vec<Pending>,
}

/// Run under the lock, before anything else: settles every job of an earlier deployment still
/// changing the host (waits for it, bounded, then stops it), and lists the earlier deployments
/// left undecided.
pub(crate) async fn settle(conn: &impl Host) -> Result<Found, HostError> {
    let command = Script::Settle.command(&[SETTLE_WAIT.as_secs().to_string()]);
    // settle.sh waits for each job it finds up to SETTLE_WAIT.
    let output = tokio::time::timeout(
        STEP_LIMIT + SETTLE_WAIT * 4,
        conn.run_root(&command, |_| {}),
    )
    .await
    .map_err(|_| HostError::NoAnswer {
        step: "settling earlier deployments".to_owned(),
        secs: (STEP_LIMIT + SETTLE_WAIT * 4).as_secs(),
    })?
    .map_err(channel_error(Stage::Connect))?;
    let mut found = Found::default();
    for line in output.stdout.lines() {
        match JobLine::parse(line) {
            JobLine::Settled {
                job,
                token,
                stopped,
            } => found.jobs.push(Settled {
                job: job.to_owned(),
                token: token.to_owned(),
                stopped: stopped.is_some(),
                systemd: stopped.is_some_and(|s| s.systemd),
                before: stopped.map_or(Before::Unknown, |s| Before::parse(s.previous)),
            }),
            JobLine::Undecided {
                token,
                systemd,
                previous,
            } => found.undecided.push(Undecided {
                token: token.to_owned(),
                systemd,
                before: Before::parse(previous),
            }),
            JobLine::Pending {
                token,
                made,
                change,
            } => found.pending.push(Pending {
                token: token.to_owned(),
                made: (!made.is_empty()).then(|| made.to_owned()),
                before: Before::parse(change),
            }),
            _ => {}
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use hbdeploy_nix::StorePath;

    use super::*;
    use crate::Goal;
    use crate::remote::Op;

    #[test]
    fn what_a_deployment_records_reads_back() {
        let change = Change {
            op: Op::Restore(4),
            path: StorePath::new("/nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-nixos-system-a")
                .expect("valid"),
            goal: Goal::Switch,
        };
        assert_eq!(
            Before::parse(&Before::record(Some(&change))),
            Before::Restore(change.clone())
        );
        assert_eq!(Before::parse(&Before::record(None)), Before::Nothing);
        assert_eq!(Before::parse("unknown"), Before::Unknown);
        assert_eq!(Before::parse("restore /tmp/x switch 4"), Before::Unknown);
    }
}
