//! The errors of `hbdeploy install`: [`InstallError`] refuses or stops an install before any
//! disk was touched; [`StepError`] is a step that failed after the wipe was consented to, a value
//! in the [`super::InstallReport`]. Every message says what happened to the target's disks.

use hbdeploy_nix::{NixError, StorePath};
use hbdeploy_ssh::{Exit, SshError};

use super::InstallStep;

/// Why an install did not start. Nothing on the target, and no disk, was changed.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// nix could not be run or answered nonsense.
    #[error(transparent)]
    Nix(#[from] NixError),
    /// `install` was given a tag where it takes one host.
    #[error("`@{tag}` is a tag; install takes one host by name")]
    TagNotHost {
        /// The tag, without `@`.
        tag: String,
    },
    /// The configuration does not evaluate.
    #[error(
        "nixosConfigurations.{attr} does not evaluate; nothing was changed{}",
        lines_below(lines)
    )]
    Eval {
        /// The flake attribute.
        attr: String,
        /// nix's error.
        lines: Vec<String>,
    },
    /// The configuration declares no disko disks.
    #[error(
        "nixosConfigurations.{attr} declares no disko disks (config.disko.devices.disk is empty or missing)"
    )]
    NoDisks {
        /// The flake attribute.
        attr: String,
    },
    /// A device without a name, for a host with several disks.
    #[error(
        "nixosConfigurations.{attr} declares {} disko disks ({}), so each --disk must name its disk",
        declared.len(), declared.join(", ")
    )]
    NameTheDisks {
        /// The flake attribute.
        attr: String,
        /// Its disk names.
        declared: Vec<String>,
    },
    /// More `--disk` options than the host's one disk.
    #[error(
        "nixosConfigurations.{attr} declares one disko disk, `{declared}`, but --disk was given {given} times"
    )]
    TooManyDisks {
        /// The flake attribute.
        attr: String,
        /// Its one disk.
        declared: String,
        /// How many `--disk` options there were.
        given: usize,
    },
    /// `--disk NAME=…` for a disk the host does not declare.
    #[error("nixosConfigurations.{attr} declares no disko disk `{name}` (it has {})", declared.join(", "))]
    UnknownDisk {
        /// The flake attribute.
        attr: String,
        /// The name given.
        name: String,
        /// Its disk names.
        declared: Vec<String>,
    },
    /// The same disk named twice.
    #[error("--disk names disk `{name}` twice")]
    DuplicateDisk {
        /// The disk.
        name: String,
    },
    /// Declared disks without a `--disk`.
    #[error("no --disk for disko disk {} of nixosConfigurations.{attr}: every disk it declares is wiped and needs its device", missing.join(", "))]
    MissingDisks {
        /// The flake attribute.
        attr: String,
        /// The disks without a device.
        missing: Vec<String>,
    },
    /// One device given for two disks.
    #[error("--disk gives {device} for two disks")]
    SameDevice {
        /// The device.
        device: String,
    },
    /// `config.disko.rootMountPoint` is not a plain absolute path.
    #[error(
        "nixosConfigurations.{attr} sets disko.rootMountPoint to {root:?}, which hbdeploy cannot pass to nixos-install safely"
    )]
    BadRootMountPoint {
        /// The flake attribute.
        attr: String,
        /// Its value.
        root: String,
    },
    /// The wipe was not consented to and could not be asked for.
    #[error("refusing to wipe {} without a confirmation, and there is no terminal to ask on; nothing was changed", devices.join(", "))]
    NoConsent {
        /// The devices that would be wiped.
        devices: Vec<String>,
    },
    /// The user did not type the device at the confirmation prompt.
    #[error("the answer was not {device}; nothing was changed")]
    Declined {
        /// The device that was to be typed.
        device: String,
    },
    /// The target could not be reached.
    #[error("cannot reach the target; nothing was changed")]
    Connect(#[source] Box<SshError>),
    /// The SSH channel broke while looking at the target.
    #[error("the SSH connection failed while checking the target; nothing was changed")]
    Channel(#[source] Box<SshError>),
    /// The probe of the target failed.
    #[error(
        "checking {target} failed ({exit}); nothing was changed{}",
        lines_below(tail)
    )]
    Probe {
        /// `user@address:port`, or "this machine".
        target: String,
        /// How the probe ended.
        exit: Exit,
        /// Its last lines of output.
        tail: Vec<String>,
    },
    /// The target is not a NixOS live installer.
    #[error("{target} is not a NixOS live installer: {evidence}; nothing was changed")]
    NotLive {
        /// `user@address:port`, or "this machine".
        target: String,
        /// What it looks like instead.
        evidence: String,
    },
    /// The login on the target is not root.
    #[error(
        "{target} logs hbdeploy in as uid {uid}, but partitioning and nixos-install need root; nothing was changed"
    )]
    NotRoot {
        /// `user@address:port`.
        target: String,
        /// The uid.
        uid: String,
    },
    /// The target has no `nixos-install`.
    #[error(
        "{target} has no nixos-install (looked on PATH and in /run/current-system/sw/bin); nothing was changed"
    )]
    NoNixosInstall {
        /// `user@address:port`.
        target: String,
    },
    /// A device to wipe does not exist on the target.
    #[error("{device} does not exist on {target}; nothing was changed")]
    NoDevice {
        /// `user@address:port`, or "this machine".
        target: String,
        /// The device.
        device: String,
    },
}

/// `lines` as indented lines after the message, or nothing.
fn lines_below(lines: &[String]) -> String {
    lines.iter().map(|l| format!("\n  | {l}")).collect()
}

impl hbdeploy_files::Hint for InstallError {
    /// Advice for the user, where there is one.
    fn hint(&self) -> Option<String> {
        Some(match self {
            InstallError::Nix(err) => return err.hint(),
            InstallError::Connect(err) => match **err {
                SshError::Connect { .. } | SshError::Timeout { .. } => "check that the machine \
                    is up, booted into the installer with sshd started (systemctl start sshd), \
                    and that --target names its address (and port, when not 22)"
                    .to_owned(),
                _ => return err.hint(),
            },
            InstallError::Channel(err) => return err.hint(),
            InstallError::TagNotHost { .. } => {
                "name the host: hbdeploy install HOST --disk DEVICE".to_owned()
            }
            InstallError::NoDisks { .. } => "declare the disk layout for disko in the host's \
                disk.nix (disko.devices.disk.NAME) and import disko's NixOS module; see \
                docs/nixos.md"
                .to_owned(),
            InstallError::NameTheDisks { declared, .. } => format!(
                "give one --disk NAME=DEVICE per disk, e.g. {}",
                declared
                    .iter()
                    .map(|n| format!("--disk {n}=/dev/…"))
                    .collect::<Vec<_>>()
                    .join(" ")
            ),
            InstallError::TooManyDisks { declared, .. } => {
                format!("give --disk once: --disk /dev/… (or --disk {declared}=/dev/…)")
            }
            InstallError::UnknownDisk { .. } => {
                "NAME is the attribute under disko.devices.disk in the host's disk.nix".to_owned()
            }
            InstallError::MissingDisks { missing, .. } => format!(
                "add {}",
                missing
                    .iter()
                    .map(|n| format!("--disk {n}=/dev/…"))
                    .collect::<Vec<_>>()
                    .join(" ")
            ),
            InstallError::NoConsent { .. } => "run it on a terminal to be asked, or pass \
                --yes-wipe-disk to wipe the disks without asking"
                .to_owned(),
            InstallError::NotLive { .. } => "boot the machine into the NixOS installer (ISO, \
                netboot or kexec image) first; if you are sure its disks may be wiped as it \
                is, pass --force"
                .to_owned(),
            InstallError::NotRoot { .. } => "log in as root: --target root@ADDRESS".to_owned(),
            InstallError::NoNixosInstall { .. } => {
                "boot the machine into the NixOS installer, which has nixos-install".to_owned()
            }
            InstallError::NoDevice { .. } => {
                "list the machine's disks with lsblk and give the right device".to_owned()
            }
            _ => return None,
        })
    }
}

/// Why a step of a consented install failed; the message says what became of the disks.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// The system or the disko script did not build.
    #[error("building the system and the disko script failed; the target was not changed")]
    Build {
        /// nix's error lines.
        lines: Vec<String>,
    },
    /// The local store could not be queried.
    #[error("cannot list the closure of {path} in the local store; the target was not changed")]
    Closure {
        /// The path.
        path: StorePath,
        /// The cause.
        #[source]
        source: NixError,
    },
    /// Asking the target which paths it lacks failed.
    #[error(
        "`nix-store --check-validity` failed on the target ({exit}); its disks were not touched"
    )]
    Check {
        /// How it ended.
        exit: Exit,
        /// Its last lines of output.
        tail: Vec<String>,
    },
    /// `nix copy` failed.
    #[error("copying to the target failed; its disks were not touched")]
    Copy(#[source] NixError),
    /// The relay that lends the connection to `nix copy` could not be set up.
    #[error("cannot lend the SSH connection to nix copy; the target's disks were not touched")]
    Relay(#[source] hbdeploy_ssh::relay::RelayError),
    /// The connection broke during a step.
    #[error("the SSH connection failed during {step}; {}", channel_left(*step))]
    Channel {
        /// The step.
        step: InstallStep,
        /// The cause.
        #[source]
        source: SshError,
    },
    /// The disko script failed.
    #[error("the disko script failed ({exit}): {} may be partly partitioned or formatted; nothing was installed", devices.join(", "))]
    Disko {
        /// How it ended.
        exit: Exit,
        /// Its last lines of output.
        tail: Vec<String>,
        /// The devices it was writing.
        devices: Vec<String>,
    },
    /// `nixos-install` failed.
    #[error(
        "nixos-install failed ({exit}): the disks are partitioned, formatted and mounted at {root}, but the system is not completely installed"
    )]
    NixosInstall {
        /// How it ended.
        exit: Exit,
        /// Its last lines of output.
        tail: Vec<String>,
        /// The system.
        system: StorePath,
        /// Where the new root is mounted.
        root: String,
    },
    /// `disko-install`, run on the machine hbdeploy runs on, failed; its output was shown.
    #[error("disko-install failed ({status}): {} may be partly partitioned or formatted, and the system is not completely installed", devices.join(", "))]
    DiskoInstall {
        /// How it exited.
        status: String,
        /// The devices it was given.
        devices: Vec<String>,
    },
}

fn channel_left(step: InstallStep) -> &'static str {
    match step {
        InstallStep::Disko => "the disks may be partly partitioned or formatted",
        InstallStep::NixosInstall => {
            "the disks are formatted, and the system may be partly installed"
        }
        _ => "its disks were not touched",
    }
}

impl StepError {
    /// The last lines of the failing command's output, for the report.
    pub fn tail(&self) -> Vec<String> {
        match self {
            StepError::Build { lines } => lines.clone(),
            StepError::Check { tail, .. }
            | StepError::Disko { tail, .. }
            | StepError::NixosInstall { tail, .. } => tail.clone(),
            StepError::Closure { source: err, .. } | StepError::Copy(err) => err.tail().to_vec(),
            StepError::Channel { .. } | StepError::DiskoInstall { .. } | StepError::Relay(_) => {
                Vec::new()
            }
        }
    }
}

impl hbdeploy_files::Hint for StepError {
    /// Advice for the user, where there is one.
    fn hint(&self) -> Option<String> {
        match self {
            StepError::Copy(err) => err.hint(),
            StepError::Channel { source, .. } => source.hint(),
            StepError::Disko { .. } | StepError::DiskoInstall { .. } => Some(
                "read the output above, fix the cause (the device, or disk.nix) and run the same \
                 hbdeploy install again: it wipes and formats the disks from the start"
                    .to_owned(),
            ),
            StepError::NixosInstall { system, root, .. } => Some(format!(
                "run the same hbdeploy install again (it formats the disks from the start), or \
                 finish on the target: nixos-install --no-root-passwd --no-channel-copy --root \
                 {root} --system {system}"
            )),
            _ => None,
        }
    }
}
