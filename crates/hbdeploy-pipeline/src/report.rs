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
        matches!(self.outcome, Outcome::Succeeded | Outcome::Unchanged)
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
