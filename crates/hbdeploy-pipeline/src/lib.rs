//! hbdeploy's orchestration: a deployment is data flowing one way, from a [`DeployRequest`]
//! through one evaluation and one build for all hosts, then one task per host (connect, copy,
//! activate) bounded by a semaphore, to a [`Report`] with one outcome per host.
//!
//! The pipeline never prints: it sends [`Event`]s to whoever listens (the binary's UI) and returns
//! the report. A host's failure is a value in the report, never an early return, so one host's
//! failure never stops the others.
//!
//! [`install`] puts one host's system onto a new machine's disks, from a live installer.

mod deploy;
mod error;
mod event;
pub mod install;
mod remote;
mod report;

use std::num::NonZeroUsize;

pub use deploy::deploy;
pub use error::{HostError, PipelineError};
pub use event::{Event, EventSender, Stage};
pub use report::{CopyStats, HostReport, Outcome, Report};

/// What `apply` should do with each host's new system; NixOS's own goals, plus two that stop
/// early. The system profile is set only for `switch` and `boot`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Goal {
    /// Make it the boot default and activate it now.
    #[default]
    Switch,
    /// Make it the boot default; do not activate it now.
    Boot,
    /// Activate it now; do not make it the boot default.
    Test,
    /// Show what activation would do.
    DryActivate,
    /// Stop after building.
    Build,
    /// Stop after copying to the host.
    Push,
}

impl Goal {
    /// Every goal, in the order `--help` lists them.
    pub const ALL: [Goal; 6] = [
        Goal::Switch,
        Goal::Boot,
        Goal::Test,
        Goal::DryActivate,
        Goal::Build,
        Goal::Push,
    ];

    /// The goal's name on the command line (and for `switch-to-configuration`).
    pub fn as_str(self) -> &'static str {
        match self {
            Goal::Switch => "switch",
            Goal::Boot => "boot",
            Goal::Test => "test",
            Goal::DryActivate => "dry-activate",
            Goal::Build => "build",
            Goal::Push => "push",
        }
    }

    /// Whether the system profile is set to the new system (NixOS semantics).
    pub fn sets_profile(self) -> bool {
        matches!(self, Goal::Switch | Goal::Boot)
    }

    /// Whether hosts are contacted at all.
    pub fn reaches_hosts(self) -> bool {
        self != Goal::Build
    }

    /// Whether `switch-to-configuration` runs.
    pub fn activates(self) -> bool {
        !matches!(self, Goal::Build | Goal::Push)
    }
}

impl std::fmt::Display for Goal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One host to deploy: its name, its flake attribute and how to reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPlan {
    /// The host's name in the fleet.
    pub name: String,
    /// `nixosConfigurations.<attr>`.
    pub attr: String,
    /// Where and how to connect.
    pub target: hbdeploy_ssh::Target,
}

/// A whole deployment.
#[derive(Debug, Clone)]
pub struct DeployRequest {
    /// The flake reference, as nix takes it.
    pub flake: String,
    /// The selected hosts (each once).
    pub hosts: Vec<HostPlan>,
    /// What to do with them.
    pub goal: Goal,
    /// How many hosts are copied to and activated at once.
    pub parallel: NonZeroUsize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_switch_and_boot_set_the_profile() {
        let setting: Vec<Goal> = Goal::ALL.into_iter().filter(|g| g.sets_profile()).collect();
        assert_eq!(setting, [Goal::Switch, Goal::Boot]);
    }

    #[test]
    fn build_and_push_stop_early() {
        assert!(!Goal::Build.reaches_hosts());
        assert!(Goal::Push.reaches_hosts() && !Goal::Push.activates());
        assert!(Goal::DryActivate.activates() && !Goal::DryActivate.sets_profile());
    }
}
