//! The result of a deployment: one [`HostReport`] per host, in the order hosts were selected.

use std::time::Duration;

use hbdeploy_nix::StorePath;

use crate::{HostError, Stage};

/// How a host ended.
#[derive(Debug)]
pub enum Outcome {
    /// Everything the goal asked for was done.
    Succeeded,
    /// The host already ran exactly this system; nothing was copied or activated.
    Unchanged,
    /// It failed; the error says where the host was left.
    Failed(HostError),
    /// It was never attempted: an earlier wave failed. Nothing was changed.
    Skipped,
    /// The run was interrupted (Ctrl-C) before this host's next stage; nothing more was changed.
    Interrupted,
}

impl Outcome {
    /// Its word in the one vocabulary of outcomes.
    pub fn kind(&self) -> OutcomeKind {
        match self {
            Outcome::Succeeded => OutcomeKind::Succeeded,
            Outcome::Unchanged => OutcomeKind::Unchanged,
            Outcome::Failed(error) => error.outcome(),
            Outcome::Skipped => OutcomeKind::Skipped,
            Outcome::Interrupted => OutcomeKind::Interrupted,
        }
    }
}

/// How a host ended, as one word: the vocabulary shared by the result table, the JSON results
/// (`outcome`), the ledger's records and `history`. [`OutcomeKind::as_str`] holds the words,
/// and serde reads and writes exactly those, so every ledger record ever written still reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(into = "&'static str", try_from = "String")]
pub enum OutcomeKind {
    /// `succeeded`: everything the goal asked for was done.
    Succeeded,
    /// `unchanged`: the host already ran exactly this system.
    Unchanged,
    /// `failed`: the host failed and was not saved by a roll-back.
    Failed,
    /// `rolled-back`: the host failed and was put back on the system it ran before.
    RolledBack,
    /// `rollback-pending`: the host failed, and its own watchdog rolls it back once it can.
    RollbackPending,
    /// `skipped`: never attempted, as an earlier wave failed.
    Skipped,
    /// `interrupted`: the run was interrupted (Ctrl-C) before this host's next stage.
    Interrupted,
    /// `unfinished`: in a ledger record only, a host whose run was killed before it recorded
    /// the result.
    Unfinished,
    /// `booted-old-system`: rebooted (`reboot`, `apply --reboot`), but `/run/booted-system` is
    /// not the system expected.
    BootedOldSystem,
    /// `did-not-come-back`: rebooted, and not answering SSH from a new boot within
    /// `reboot-timeout`.
    DidNotComeBack,
    /// `health-failed`: rebooted into the expected system, but a health check failed.
    HealthFailed,
}

impl OutcomeKind {
    /// Every outcome, in the order above.
    pub const ALL: [OutcomeKind; 11] = [
        OutcomeKind::Succeeded,
        OutcomeKind::Unchanged,
        OutcomeKind::Failed,
        OutcomeKind::RolledBack,
        OutcomeKind::RollbackPending,
        OutcomeKind::Skipped,
        OutcomeKind::Interrupted,
        OutcomeKind::Unfinished,
        OutcomeKind::BootedOldSystem,
        OutcomeKind::DidNotComeBack,
        OutcomeKind::HealthFailed,
    ];

    /// The word, in JSON and the ledger.
    pub fn as_str(self) -> &'static str {
        match self {
            OutcomeKind::Succeeded => "succeeded",
            OutcomeKind::Unchanged => "unchanged",
            OutcomeKind::Failed => "failed",
            OutcomeKind::RolledBack => "rolled-back",
            OutcomeKind::RollbackPending => "rollback-pending",
            OutcomeKind::Skipped => "skipped",
            OutcomeKind::Interrupted => "interrupted",
            OutcomeKind::Unfinished => "unfinished",
            OutcomeKind::BootedOldSystem => "booted-old-system",
            OutcomeKind::DidNotComeBack => "did-not-come-back",
            OutcomeKind::HealthFailed => "health-failed",
        }
    }

    /// Whether the host is on what the run asked for (`succeeded` or `unchanged`).
    pub fn succeeded(self) -> bool {
        matches!(self, OutcomeKind::Succeeded | OutcomeKind::Unchanged)
    }

    /// Whether the host failed, saved or not (`failed`, `rolled-back`, `rollback-pending`, and
    /// the failed reboots: `booted-old-system`, `did-not-come-back`, `health-failed`).
    pub fn failed(self) -> bool {
        matches!(
            self,
            OutcomeKind::Failed
                | OutcomeKind::RolledBack
                | OutcomeKind::RollbackPending
                | OutcomeKind::BootedOldSystem
                | OutcomeKind::DidNotComeBack
                | OutcomeKind::HealthFailed
        )
    }
}

impl std::fmt::Display for OutcomeKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<OutcomeKind> for &'static str {
    fn from(kind: OutcomeKind) -> &'static str {
        kind.as_str()
    }
}

/// A word that is not an outcome.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{0}` is not an outcome (one of succeeded, unchanged, failed, rolled-back, rollback-pending, skipped, interrupted, unfinished, booted-old-system, did-not-come-back, health-failed)"
)]
pub struct UnknownOutcome(pub String);

impl TryFrom<String> for OutcomeKind {
    type Error = UnknownOutcome;

    fn try_from(word: String) -> Result<OutcomeKind, UnknownOutcome> {
        OutcomeKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == word)
            .ok_or(UnknownOutcome(word))
    }
}

/// How much of a closure `nix copy` had to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CopyStats {
    /// Paths the host lacked (and were copied).
    pub sent: usize,
    /// Paths in the closure.
    pub total: usize,
}

/// One host's result.
#[derive(Debug)]
pub struct HostReport {
    /// The host.
    pub host: String,
    /// Success or the failure.
    pub outcome: Outcome,
    /// The last stage the host entered.
    pub stage: Stage,
    /// The system it ran before (`/run/current-system`), when the run read it.
    pub old_path: Option<StorePath>,
    /// The system built for it, if it was built.
    pub new_path: Option<StorePath>,
    /// What the copy stage sent, if it ran.
    pub copy: Option<CopyStats>,
    /// The system profile's generation the host was left on, when the run set or read it.
    pub generation: Option<u32>,
    /// Wall time from the start of the run until this host finished.
    pub duration: Duration,
    /// Time spent in each of this host's own stages (connect, copy, activate).
    pub timings: Vec<(Stage, Duration)>,
    /// What settling found of earlier deployments on the host (a job still running, a
    /// deployment left unconfirmed) and did about it, before this run changed anything.
    pub settled: Vec<String>,
    /// The secrets written to the host, by name and hash (never their content).
    pub secrets: Vec<crate::SecretRecord>,
}

impl HostReport {
    /// A report for `host` at `stage` that has not failed (yet), with nothing else known.
    pub fn new(host: &str, stage: Stage) -> HostReport {
        HostReport {
            host: host.to_owned(),
            outcome: Outcome::Succeeded,
            stage,
            old_path: None,
            new_path: None,
            copy: None,
            generation: None,
            duration: Duration::ZERO,
            timings: Vec::new(),
            settled: Vec::new(),
            secrets: Vec::new(),
        }
    }

    /// A report for `host` that failed at `stage` after `duration`.
    pub fn failed(host: &str, stage: Stage, error: HostError, duration: Duration) -> HostReport {
        HostReport {
            outcome: Outcome::Failed(error),
            duration,
            ..HostReport::new(host, stage)
        }
    }

    /// Whether the host succeeded.
    pub fn succeeded(&self) -> bool {
        self.outcome.kind().succeeded()
    }
}

/// The whole deployment's result.
#[derive(Debug, Default)]
pub struct Report {
    /// One entry per selected host.
    pub hosts: Vec<HostReport>,
    /// Time of the shared evaluation and build.
    pub build_time: Duration,
}

impl Report {
    /// Whether every host succeeded.
    pub fn all_succeeded(&self) -> bool {
        self.hosts.iter().all(HostReport::succeeded)
    }

    /// The hosts that failed.
    pub fn failed(&self) -> impl Iterator<Item = &HostReport> {
        self.hosts.iter().filter(|h| !h.succeeded())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_outcome_reads_back_from_its_word_and_nothing_else_does() {
        for kind in OutcomeKind::ALL {
            let word: &str = kind.into();
            assert_eq!(OutcomeKind::try_from(word.to_owned()), Ok(kind));
            assert_eq!(kind.to_string(), word);
        }
        assert!(OutcomeKind::try_from("FAILED".to_owned()).is_err());
        assert!(OutcomeKind::try_from("ok".to_owned()).is_err());
    }

    #[test]
    fn a_failure_says_whether_the_host_was_saved() {
        let failed = Outcome::Failed(HostError::NoEarlierGeneration { current: Some(1) });
        assert_eq!(failed.kind(), OutcomeKind::Failed);
        let pending = Outcome::Failed(HostError::RollbackPending {
            why: "x".to_owned(),
        });
        assert_eq!(pending.kind(), OutcomeKind::RollbackPending);
        assert!(OutcomeKind::RolledBack.failed() && !OutcomeKind::RolledBack.succeeded());
        assert!(OutcomeKind::Unchanged.succeeded());
    }
}
