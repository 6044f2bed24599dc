//! hbdeploy's orchestration: a deployment is data flowing one way, from a [`DeployRequest`]
//! through one evaluation and one build for all hosts, then one task per host (connect, copy,
//! activate) bounded by a semaphore, to a [`Report`] with one outcome per host.
//!
//! The pipeline never prints: it sends [`Event`]s to whoever listens (the binary's UI) and returns
//! the report. A host's failure is a value in the report, never an early return, so one host's
//! failure never stops the others.
//!
//! [`plan`] tells what a deployment would change without changing it, [`exec`] runs a command on
//! hosts, and [`install`] puts one host's system onto a new machine's disks, from a live installer.

mod build;
pub mod closure_diff;
mod deploy;
mod error;
mod event;
mod exec;
#[cfg(test)]
mod fake;
mod fanout;
mod health;
pub mod install;
mod plan;
pub mod port;
mod prebuilt;
mod reboot;
mod remote;
mod report;
mod rollback;
mod safe;
mod secrets;
mod settle;
mod state;
mod status;
mod transfer;
mod waves;

use std::num::NonZeroUsize;

pub use deploy::deploy;
pub use error::{HostError, PipelineError, Restored};
pub use event::{Event, EventReceiver, EventSender, OUTPUT_BACKLOG, Output, Stage};
pub use exec::{ExecError, ExecLine, ExecRequest, ExecResult, exec};
pub use hbdeploy_files::time;
pub use hbdeploy_nix::EvalLimits;
pub use health::{Check, CheckFailure, CheckProbe, HostChecks, check_hosts, run_check, run_checks};
pub use plan::{DRY_ACTIVATE_LINES, DryActivation, HostChanges, PlanOutcome, PlanRequest, plan};
pub use reboot::{RebootRequest, reboot};
pub use report::{CopyStats, HostReport, Outcome, OutcomeKind, Report, UnknownOutcome};
pub use rollback::{RollbackRequest, RollbackTarget, rollback};
pub use secrets::{
    MAX_SECRET_BYTES, Secret, SecretChange, SecretContent, SecretError, SecretOnHost,
    SecretProblem, SecretRecord, SecretSource, SecretUpload, SecretsRequest, SecretsResult, load,
    upload_secrets,
};
pub use state::{Generation, HostState, host_state};
pub use status::{FlakeMatch, HostStatus, StatusRequest, status};

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
    /// How the host is protected while it switches.
    pub safety: HostSafety,
    /// Its rollout wave (0 first).
    pub wave: u32,
    /// Checks run after activation; a failure rolls the host back like a failed activation.
    pub health: Vec<Check>,
    /// Where its system is built and how it is copied.
    pub transfer: HostTransfer,
    /// The system to deploy, already built here (what `apply --ask` showed): it is deployed as
    /// it is, not evaluated and built again. Not for a host that builds on its target.
    pub system: Option<hbdeploy_nix::StorePath>,
    /// Its secrets, with their content read, for the commands that upload them (`apply`,
    /// `secrets upload`) or compare them (`plan`); empty for the others.
    pub secrets: Vec<Secret>,
}

/// How one host's system is built and copied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostTransfer {
    /// `nix copy --substitute-on-destination`: the host fetches what its caches have.
    pub substitute: bool,
    /// Copy the derivation and build on the host instead of building here.
    pub build_on_target: bool,
    /// The login user is trusted by the host's nix: unsigned copies use `--no-check-sigs`.
    pub trusted: bool,
}

impl Default for HostTransfer {
    fn default() -> Self {
        HostTransfer {
            substitute: true,
            build_on_target: false,
            trusted: true,
        }
    }
}

/// Magic-rollback settings of one host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostSafety {
    /// Arm the on-host watchdog for `switch` and `test`.
    pub magic_rollback: bool,
    /// How long the watchdog waits for the deployer's confirmation, from the end of the
    /// activation.
    pub confirm_timeout: std::time::Duration,
    /// How long an activation may run before it is stopped and the previous generation
    /// restored (by the watchdog where one is armed, else by the deployer).
    pub activation_timeout: std::time::Duration,
    /// How long a reboot (`reboot`, `apply --reboot`) may take until the host answers SSH from
    /// its new boot.
    pub reboot_timeout: std::time::Duration,
}

impl Default for HostSafety {
    fn default() -> Self {
        HostSafety {
            magic_rollback: true,
            confirm_timeout: std::time::Duration::from_secs(30),
            activation_timeout: std::time::Duration::from_secs(300),
            reboot_timeout: std::time::Duration::from_secs(600),
        }
    }
}

/// Tells a running deployment to stop starting new hosts and stages (the first Ctrl-C).
#[derive(Debug, Clone)]
pub struct Cancel(tokio::sync::watch::Receiver<bool>);

/// The sending side of a [`Cancel`].
#[derive(Debug)]
pub struct CancelHandle(tokio::sync::watch::Sender<bool>);

impl Cancel {
    /// A pair: the handle cancels, the `Cancel` is handed to the pipeline.
    pub fn new() -> (CancelHandle, Cancel) {
        let (tx, rx) = tokio::sync::watch::channel(false);
        (CancelHandle(tx), Cancel(rx))
    }

    /// Whether cancellation was asked for.
    pub fn is_cancelled(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves when cancellation is asked for (never, if the handle is dropped first).
    pub async fn cancelled(&self) {
        let mut rx = self.0.clone();
        if rx.wait_for(|c| *c).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

impl CancelHandle {
    /// Asks the deployment to stop starting new work.
    pub fn cancel(&self) {
        let _ = self.0.send(true);
    }
}

/// A whole deployment.
#[derive(Debug, Clone)]
pub struct DeployRequest {
    /// The run's credentials, for every connection.
    pub session: hbdeploy_ssh::Session,
    /// The flake reference, as nix takes it.
    pub flake: String,
    /// The selected hosts (each once).
    pub hosts: Vec<HostPlan>,
    /// What to do with them.
    pub goal: Goal,
    /// How many hosts are copied to and activated at once.
    pub parallel: NonZeroUsize,
    /// Activate even hosts that already run the new system (otherwise they are `unchanged`).
    pub reactivate: bool,
    /// Put the previous generation back when an activation fails.
    pub auto_rollback: bool,
    /// Hosts deployed first, as a wave of their own; the rest only if they all succeed.
    pub canary: Vec<String>,
    /// At most this many hosts per wave.
    pub batch: Option<NonZeroUsize>,
    /// The first Ctrl-C.
    pub cancel: Cancel,
    /// `--builders` for the local `nix build`.
    pub builders: Option<String>,
    /// Sign closures with this nix secret key before copying them.
    pub signing_key: Option<std::path::PathBuf>,
    /// Hosts copied to at once.
    pub parallel_copy: NonZeroUsize,
    /// Hosts activated at once.
    pub parallel_activate: NonZeroUsize,
    /// How much evaluation runs at once.
    pub eval: hbdeploy_nix::EvalLimits,
    /// `--reboot`: after a host's successful `boot` (or `switch`) deployment, reboot it and
    /// check that it booted the new system ([`reboot`]).
    pub reboot: bool,
    /// Where given systems (`HostPlan::system`) missing from the local store are fetched from
    /// (`apply --from URL`): a nix store URL.
    pub from: Option<String>,
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
