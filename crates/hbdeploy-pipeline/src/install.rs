//! `hbdeploy install`: putting a host's system on a new machine, wiping its disks.
//!
//! Two ways, both starting from the host's disko disk names ([`resolve_disks`]: one `nix eval`
//! of `config.disko.devices.disk`, matched against the `--disk` options):
//!
//! - **On the machine itself**, booted into the NixOS installer: [`check_this_machine`], then the
//!   binary runs the `disko-install` command line ([`hbdeploy_nix::disko_install_argv`]), or only
//!   prints it.
//! - **Pushed from the workstation**: [`plan`] evaluates the system and the disko script with the
//!   given devices, [`connect`] checks the target (a live installer, root, `nixos-install`, the
//!   devices), the binary obtains a [`WipeConsent`], and [`Installer::install`] builds both in
//!   one `nix build`, copies them, runs the disko script, then `nixos-install`, and returns an
//!   [`InstallReport`].
//!
//! A target is a live installer when its `/etc/os-release` says `ID=nixos` and
//! `VARIANT_ID=installer`, as NixOS's installation-device profile writes it on the ISO, netboot
//! and kexec images (and as nixos-anywhere checks it). Anything else is refused unless `--force`.
//!
//! Like a deployment, an install never prints: it sends [`InstallEvent`]s to whoever listens.
//! Refusals are [`InstallError`]s (nothing was changed); a step that fails after the consent is a
//! [`StepError`] in the report.

mod disks;
mod error;
mod live;
mod push;

use std::time::Duration;

use hbdeploy_nix::{DiskDevice, StorePath};

use crate::CopyStats;

pub use disks::{DiskArg, DiskArgError, resolve_disks};
pub use error::{InstallError, StepError};
pub use live::{LIVE_RULE, check_this_machine};
pub use push::{InstallPlan, Installer, ProbedDisk, connect, plan};

/// The steps of a pushed install, in order. One name per concept: `build` and `copy` are the
/// same steps as in a deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum InstallStep {
    /// Evaluating the configuration: its disks, system and disko script.
    Evaluate,
    /// Connecting to the target and checking it.
    Connect,
    /// Building the system and the disko script (one `nix build`).
    Build,
    /// Copying both closures to the target's store.
    Copy,
    /// Running the disko script: wipe, partition, format, mount at `/mnt`.
    Disko,
    /// Running `nixos-install --system`.
    NixosInstall,
}

impl InstallStep {
    /// The steps that run after the wipe was consented to, in order.
    pub const AFTER_CONSENT: [InstallStep; 4] = [
        InstallStep::Build,
        InstallStep::Copy,
        InstallStep::Disko,
        InstallStep::NixosInstall,
    ];

    /// The step's name in progress lines and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            InstallStep::Evaluate => "evaluate",
            InstallStep::Connect => "connect",
            InstallStep::Build => "build",
            InstallStep::Copy => "copy",
            InstallStep::Disko => "disko",
            InstallStep::NixosInstall => "nixos-install",
        }
    }
}

impl std::fmt::Display for InstallStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which host to install, from which flake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallRequest {
    /// The flake reference, as nix takes it.
    pub flake: String,
    /// The host's name in the fleet.
    pub host: String,
    /// `nixosConfigurations.<attr>`.
    pub attr: String,
}

/// Something that happened during an install.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InstallEvent {
    /// A step started.
    Step(InstallStep),
    /// A line of output of a step's command.
    Output {
        /// The step.
        step: InstallStep,
        /// The line.
        line: String,
    },
    /// A short note, e.g. how many paths were copied.
    Note(String),
}

impl crate::event::Output for InstallEvent {
    fn is_output(&self) -> bool {
        matches!(self, InstallEvent::Output { .. })
    }
}

/// Where an install sends its events: the one event channel ([`crate::EventSender`]). Sending
/// never fails the install.
pub type InstallEvents = crate::EventSender<InstallEvent>;

impl crate::EventSender<InstallEvent> {
    pub(crate) fn step(&self, step: InstallStep) {
        self.send(InstallEvent::Step(step));
    }

    pub(crate) fn output(&self, step: InstallStep, line: &str) {
        self.send(InstallEvent::Output {
            step,
            line: line.to_owned(),
        });
    }

    pub(crate) fn note(&self, text: String) {
        self.send(InstallEvent::Note(text));
    }
}

/// The user's consent to wipe the disks: required by [`Installer::install`], so no code path
/// can reach the disko script without one. The binary makes it only after `--yes-wipe-disk` or
/// after the user typed each device at the prompt.
#[derive(Debug)]
pub struct WipeConsent(());

impl WipeConsent {
    /// The user consented (see the type's documentation for when that is true).
    pub fn given() -> WipeConsent {
        WipeConsent(())
    }
}

/// One step that ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepRecord {
    /// The step.
    pub step: InstallStep,
    /// Whether it succeeded.
    pub ok: bool,
    /// How long it took.
    pub duration: Duration,
}

/// The result of a pushed install.
#[derive(Debug)]
pub struct InstallReport {
    /// The host.
    pub host: String,
    /// `user@address:port` of the installer.
    pub target: String,
    /// Each disk and its device.
    pub disks: Vec<DiskDevice>,
    /// The system installed (or to be).
    pub system: StorePath,
    /// Where the disko script mounted the new root.
    pub root: String,
    /// The steps after the consent that ran, in order; the failed one last.
    pub steps: Vec<StepRecord>,
    /// What the copy sent, if it ran.
    pub copy: Option<CopyStats>,
    /// Success, or the step's failure.
    pub outcome: Result<(), StepError>,
}

impl InstallReport {
    /// The step that failed, if one did.
    pub fn failed_step(&self) -> Option<InstallStep> {
        self.steps.iter().find(|s| !s.ok).map(|s| s.step)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_after_consent_run_in_the_documented_order() {
        let names: Vec<&str> = InstallStep::AFTER_CONSENT
            .iter()
            .map(|s| s.as_str())
            .collect();
        assert_eq!(names, ["build", "copy", "disko", "nixos-install"]);
        assert!(InstallStep::AFTER_CONSENT.is_sorted());
    }
}
