//! Errors: [`HostError`] is one host's failure, a value in the report; [`PipelineError`] stops the
//! whole run before any host could be handled (nix itself cannot run).

use hbdeploy_nix::{NixError, StorePath};
use hbdeploy_ssh::{Exit, SshError};

use crate::Goal;
use crate::report::OutcomeKind;

/// Why one host failed. Every variant says where the host was left.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// Its configuration did not evaluate; nothing was built or changed.
    #[error("nixosConfigurations.{attr} does not evaluate; the host was not changed")]
    Eval {
        /// The flake attribute.
        attr: String,
        /// nix's error.
        lines: Vec<String>,
    },
    /// Its system did not build; the host was not changed.
    #[error("the system of nixosConfigurations.{attr} failed to build; the host was not changed")]
    Build {
        /// The flake attribute.
        attr: String,
        /// nix's error lines that concern this host.
        lines: Vec<String>,
    },
    /// The host could not be reached; it was not changed.
    #[error("cannot reach the host; it was not changed")]
    Connect(#[source] SshError),
    /// A command on an open connection could not be run; the stage says how far it got.
    #[error("the SSH connection failed during {stage}; {}", channel_left(*stage))]
    Channel {
        /// Where it broke.
        stage: crate::Stage,
        /// The cause.
        #[source]
        source: SshError,
    },
    /// The login is not root and could not run commands as root (`sudo` refused).
    #[error("cannot run commands as root on the host; it was not changed")]
    Privilege(#[source] SshError),
    /// The local store could not be queried.
    #[error("cannot list the closure of {path} in the local store")]
    Closure {
        /// The system.
        path: StorePath,
        /// The cause.
        #[source]
        source: NixError,
    },
    /// A helper command on the host failed before anything was changed.
    #[error("`{command}` failed on the host ({exit}); the host was not changed")]
    Remote {
        /// The command.
        command: String,
        /// How it ended.
        exit: Exit,
        /// Its last lines of output.
        tail: Vec<String>,
    },
    /// A secret could not be written on the host (issue 19).
    #[error("secret `{name}` was not written to {dest}: {problem}; {}", secret_left(*upload))]
    Secret {
        /// The secret's name.
        name: String,
        /// Its destination on the host.
        dest: String,
        /// When `apply` was uploading it, which says where the host was left; `None` for
        /// `secrets upload`.
        upload: Option<crate::SecretUpload>,
        /// What went wrong.
        problem: crate::SecretProblem,
        /// The last lines of the writing script (never the content).
        tail: Vec<String>,
    },
    /// A step of the remote protocol got no answer in time.
    #[error(
        "the host did not answer {step} within {secs}s (overloaded, or hung?); check it with hbdeploy status"
    )]
    NoAnswer {
        /// The step.
        step: String,
        /// The limit, in seconds.
        secs: u64,
    },
    /// The relay that lends the connection to `nix copy` could not be set up; nothing was copied.
    #[error("cannot lend the SSH connection to nix copy; the host was not changed")]
    Relay(#[source] hbdeploy_ssh::relay::RelayError),
    /// Signing the closure with the fleet's signing key failed; nothing was copied.
    #[error("cannot sign the closure with {}; the host was not changed", key.display())]
    Sign {
        /// The key file.
        key: std::path::PathBuf,
        /// The cause.
        #[source]
        source: NixError,
    },
    /// `nix copy` failed; the host's running system was not changed.
    #[error("copying the closure failed; the host's running system was not changed")]
    Copy(#[source] NixError),
    /// The copied path has no `bin/switch-to-configuration`.
    #[error(
        "{path} is not a NixOS system (no bin/switch-to-configuration); the host was not changed"
    )]
    NotNixos {
        /// The path.
        path: StorePath,
    },
    /// A given system (`apply --systems`) is in none of the stores looked in; nothing was sent
    /// to the host or changed on it.
    #[error(
        "{path} is in none of the places looked in: {}; the host was not changed",
        looked.join("; ")
    )]
    Unobtainable {
        /// The system.
        path: StorePath,
        /// Each place looked in, with what it said.
        looked: Vec<String>,
    },
    /// The system is not in the host's store (a generation whose system was
    /// garbage-collected).
    #[error("{path} is not in the host's store (garbage-collected?); the host was not changed")]
    NotInStore {
        /// The path.
        path: StorePath,
    },
    /// `nix-env --set` of the system profile failed.
    #[error("setting the system profile failed ({exit}); the host was not changed")]
    Profile {
        /// How it ended.
        exit: Exit,
        /// Its last lines of output.
        tail: Vec<String>,
    },
    /// `rollback`: the profile has no generation before the current one; nothing was changed.
    #[error("{}", match current {
        Some(n) => format!("there is no generation before generation {n}; the host was not changed"),
        None => "the host has no system generations; the host was not changed".to_owned(),
    })]
    NoEarlierGeneration {
        /// The profile's current generation.
        current: Option<u32>,
    },
    /// `rollback --to N`: generation N does not exist; nothing was changed.
    #[error(
        "generation {requested} does not exist (the host has {}); the host was not changed",
        list(available)
    )]
    NoSuchGeneration {
        /// The generation asked for.
        requested: u32,
        /// The generations the host has.
        available: Vec<u32>,
    },
    /// `rollback --to-deploy`: no generation points at the deployment's system any more.
    #[error(
        "no generation of the system profile points at {path} any more{}; the host was not changed",
        generation.map(|n| format!(" (generation {n} was removed or replaced)")).unwrap_or_default()
    )]
    DeployedSystemGone {
        /// The generation the deployment left, if any.
        generation: Option<u32>,
        /// The system the deployment put on the host.
        path: StorePath,
    },
    /// `rollback`: the profile was switched, but activating that generation failed.
    #[error(
        "switch-to-configuration {goal} of generation {generation} failed ({exit}): the system \
         profile is at {}, /run/current-system is {}",
        profile_generation.map(|n| format!("generation {n}")).unwrap_or_else(|| "an unknown generation".to_owned()),
        current.as_ref().map(|p| p.to_string()).unwrap_or_else(|| "unknown".to_owned())
    )]
    RollbackActivation {
        /// The generation rolled back to.
        generation: u32,
        /// `switch` or `boot`.
        goal: Goal,
        /// How the activation ended.
        exit: Exit,
        /// Its last lines of output.
        tail: Vec<String>,
        /// The profile's generation afterwards, read back from the host.
        profile_generation: Option<u32>,
        /// `/run/current-system` afterwards, read back from the host.
        current: Option<StorePath>,
    },
    /// The host's task ended abnormally (a bug); its state is unknown.
    #[error("internal error: the host's task ended abnormally; its state is unknown")]
    TaskLost,
    /// `switch-to-configuration` failed.
    #[error("{}", activation_message(*goal, exit, *profile_set, restored))]
    Activation {
        /// The goal.
        goal: Goal,
        /// How it ended.
        exit: Exit,
        /// Its last lines of output.
        tail: Vec<String>,
        /// Whether the system profile already pointed at the new system.
        profile_set: bool,
        /// What automatic rollback did about it.
        restored: Restored,
    },
    /// The activation was still running when `activation-timeout` expired: it was stopped (by
    /// the host's watchdog or by the deployer) and the previous generation restored, if it was.
    #[error("{}", timeout_message(*secs, restored))]
    ActivationTimeout {
        /// The limit, in seconds.
        secs: u64,
        /// What was done about it.
        restored: Restored,
        /// Its last lines of output.
        tail: Vec<String>,
    },
    /// Magic rollback: nothing could be confirmed, and what became of the deployment is not
    /// known (e.g. the watchdog found the profile moved, or a later deployment settled it).
    #[error(
        "the new system could not be confirmed, and the host's watchdog did not restore it ({detail}); check the host: hbdeploy status HOST"
    )]
    Unsettled {
        /// What was found.
        detail: String,
    },
    /// The session was lost mid-activation; the activation was confirmed over a new
    /// connection, but the host could not be read or checked afterwards.
    #[error(
        "the new system was activated and confirmed, but the host could not be read again or checked ({detail}); it runs the new generation"
    )]
    Unchecked {
        /// What failed.
        detail: String,
    },
    /// A health check failed after activation.
    #[error("{}", check_message(failure, restored))]
    HealthCheck {
        /// Which check, and what it said.
        failure: crate::CheckFailure,
        /// What automatic rollback did about it.
        restored: Restored,
    },
    /// Another deployment holds the host's lock; nothing was changed.
    #[error("the host is locked by another deployment ({holder}); the host was not changed")]
    Locked {
        /// Who holds it and since when, as the holder described itself.
        holder: String,
    },
    /// Magic rollback: the deployer could not confirm the new system over a new connection, so
    /// the host restored its previous generation by itself.
    #[error(
        "rolled back: the new system could not be confirmed over a new SSH connection ({why}), so the host restored its previous generation by itself"
    )]
    RolledBack {
        /// Why confirming failed.
        why: String,
    },
    /// Magic rollback: the host's watchdog tried to restore the previous generation and failed.
    #[error(
        "the new system could not be confirmed, and the host's own rollback failed ({detail}); the host may be on either generation"
    )]
    WatchdogFailed {
        /// What the watchdog reported.
        detail: String,
    },
    /// Magic rollback: the host could not be reached to confirm, nor afterwards.
    #[error(
        "unreachable, rollback pending: the new system could not be confirmed ({why}); the host restores its previous generation by itself once the confirmation timeout passes"
    )]
    RollbackPending {
        /// Why confirming failed.
        why: String,
    },
    /// The SSH session ended while a detached job changed the host: the job runs on without
    /// this deployer, which cannot tell how it ends.
    #[error(
        "the SSH session was lost while hbdeploy's {job} job ran on the host; the job runs on by itself, so the host may be on either system: check it with hbdeploy status"
    )]
    JobLost {
        /// The job.
        job: &'static str,
        /// Its last lines of output.
        tail: Vec<String>,
    },
    /// Settling found an earlier deployment unfinished (its activation stopped, or never
    /// confirmed), and putting back the system the host had before it failed or did not finish
    /// in time; nothing of this run was started.
    #[error(
        "restoring the generation the host had before an earlier, unfinished deployment ({token}) failed ({detail}); the host may be on either system, and this run changed nothing"
    )]
    SettleRestore {
        /// The earlier deployment's token.
        token: String,
        /// How the restore ended.
        detail: String,
        /// Its last lines of output.
        tail: Vec<String>,
    },
    /// A reboot (`reboot`, `apply --reboot`): the host did not answer SSH from a new boot
    /// within `reboot-timeout`.
    #[error(
        "the host did not come back within {secs}s (reboot-timeout) of being told to reboot ({last}); it may still be booting, or be stuck in its firmware, boot loader or boot"
    )]
    DidNotComeBack {
        /// The limit, in seconds.
        secs: u64,
        /// What the last attempt to reach it found.
        last: String,
    },
    /// A reboot: the host came back, but booted another system than the one expected.
    #[error(
        "the host rebooted, but booted {} instead of {expected}; it runs the old system",
        booted.as_ref().map(|p| p.to_string()).unwrap_or_else(|| "no NixOS system (no /run/booted-system)".to_owned())
    )]
    BootedOldSystem {
        /// The system that should have been booted.
        expected: StorePath,
        /// `/run/booted-system` after the reboot.
        booted: Option<StorePath>,
    },
    /// A reboot: the host came back into the expected system, but a health check failed.
    #[error(
        "the host rebooted into {booted}, but health check {} failed after {} attempt{} ({})",
        failure.check, failure.attempts, if failure.attempts == 1 { "" } else { "s" }, failure.detail
    )]
    RebootHealth {
        /// The booted system.
        booted: StorePath,
        /// Which check, and what it said.
        failure: crate::CheckFailure,
    },
    /// A reboot: after it, the host answered with a host key the connection refused (changed,
    /// revoked, or not known); the host was not trusted, nothing was checked.
    #[error("after the reboot the host's key was refused; it was not trusted and not checked")]
    RebootHostKey(#[source] SshError),
    /// A reboot: the run was interrupted (Ctrl-C) while it waited for the host to come back.
    #[error(
        "interrupted while waiting for the host to come back from its reboot; what it booted was not checked"
    )]
    RebootInterrupted,
    /// A reboot: the boot-time restore of hbdeploy's NixOS module found a deployment that was
    /// never confirmed and put the generation before it back, by itself, in the new boot.
    #[error(
        "the host rebooted and restored an earlier generation by itself: a deployment was never confirmed before the reboot, so hbdeploy's boot-time restore {}",
        what.join("; ")
    )]
    RestoredAtBoot {
        /// What the boot-time restore did, one entry per deployment.
        what: Vec<String>,
        /// Whether every restore it tried succeeded.
        restored: bool,
    },
}

fn list(numbers: &[u32]) -> String {
    if numbers.is_empty() {
        return "none".to_owned();
    }
    numbers
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn secret_left(upload: Option<crate::SecretUpload>) -> &'static str {
    match upload {
        None => "the file at that path is as it was",
        Some(crate::SecretUpload::PreActivation) => {
            "the host was not activated (the file at that path is as it was)"
        }
        Some(crate::SecretUpload::PostActivation) => {
            "the new system is active, but this secret was not updated (the file at that path is \
             as it was)"
        }
    }
}

fn channel_left(stage: crate::Stage) -> &'static str {
    match stage {
        crate::Stage::Activate => {
            "the activation may have been cut off: the host's system profile and running system \
             are unknown until it is reachable again"
        }
        _ => "the host's running system was not changed",
    }
}

fn activation_message(goal: Goal, exit: &Exit, profile_set: bool, restored: &Restored) -> String {
    let failed = format!("switch-to-configuration {goal} failed ({exit})");
    let left = if profile_set {
        "the system profile already points at the new system (it is the boot default), and the \
         running system may be partly switched"
    } else {
        "the running system may be partly switched; the system profile was not changed"
    };
    match restored {
        Restored::Yes => format!(
            "{failed}; rolled back: the previous generation is active again and the failed one \
             was removed from the profile"
        ),
        Restored::Failed(exit) => format!("{failed}; rolling back failed too ({exit}): {left}"),
        Restored::No(why) => format!("{failed} ({why}): {left}"),
    }
}

fn timeout_message(secs: u64, restored: &Restored) -> String {
    restore_message(
        format!(
            "switch-to-configuration was still running after {secs}s (activation-timeout) and \
             was stopped"
        ),
        restored,
        "the system profile points at the new system and the running system may be partly \
         switched",
    )
}

fn check_message(failure: &crate::CheckFailure, restored: &Restored) -> String {
    let failed = format!(
        "health check {} failed after {} attempt{} ({})",
        failure.check,
        failure.attempts,
        if failure.attempts == 1 { "" } else { "s" },
        failure.detail
    );
    restore_message(failed, restored, "the host runs the new generation")
}

/// `failed`, then what the restore of the previous generation did; `left` says where a host
/// that was not restored is.
fn restore_message(failed: String, restored: &Restored, left: &str) -> String {
    match restored {
        Restored::Yes => format!(
            "{failed}; rolled back: the previous generation is active again and the new one was \
             removed from the profile"
        ),
        Restored::Failed(exit) => format!(
            "{failed}; rolling back failed too ({exit}): the host may be on either generation"
        ),
        Restored::No(why) => format!("{failed} ({why}): {left}"),
    }
}

/// What automatic rollback did after a failed activation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Restored {
    /// The previous generation was put back and activated.
    Yes,
    /// Putting it back failed, with this exit.
    Failed(Exit),
    /// It was not done, for this reason.
    No(String),
}

impl HostError {
    /// The last lines of the failing command's output, for the report.
    pub fn tail(&self) -> Vec<String> {
        match self {
            HostError::Eval { lines, .. } | HostError::Build { lines, .. } => lines.clone(),
            HostError::Remote { tail, .. }
            | HostError::Profile { tail, .. }
            | HostError::Activation { tail, .. }
            | HostError::RollbackActivation { tail, .. }
            | HostError::ActivationTimeout { tail, .. }
            | HostError::SettleRestore { tail, .. }
            | HostError::Secret { tail, .. }
            | HostError::JobLost { tail, .. } => tail.clone(),
            HostError::HealthCheck { failure, .. } => failure.output.clone(),
            HostError::Copy(err)
            | HostError::Closure { source: err, .. }
            | HostError::Sign { source: err, .. } => err.tail().to_vec(),
            HostError::Connect(_)
            | HostError::Privilege(_)
            | HostError::Channel { .. }
            | HostError::NotNixos { .. }
            | HostError::Unobtainable { .. }
            | HostError::NotInStore { .. }
            | HostError::NoEarlierGeneration { .. }
            | HostError::NoSuchGeneration { .. }
            | HostError::DeployedSystemGone { .. }
            | HostError::Locked { .. }
            | HostError::RolledBack { .. }
            | HostError::WatchdogFailed { .. }
            | HostError::RollbackPending { .. }
            | HostError::Unsettled { .. }
            | HostError::Unchecked { .. }
            | HostError::NoAnswer { .. }
            | HostError::Relay(_)
            | HostError::DidNotComeBack { .. }
            | HostError::BootedOldSystem { .. }
            | HostError::RebootHostKey(_)
            | HostError::RestoredAtBoot { .. }
            | HostError::RebootInterrupted
            | HostError::TaskLost => Vec::new(),
            HostError::RebootHealth { failure, .. } => failure.output.clone(),
        }
    }
}

impl hbdeploy_files::Hint for HostError {
    /// Advice for the user, where there is one.
    fn hint(&self) -> Option<String> {
        match self {
            HostError::Connect(err)
            | HostError::Channel { source: err, .. }
            | HostError::Privilege(err) => err.hint(),
            HostError::RebootHostKey(_) => Some(
                "a host's key should survive a reboot: find out why it changed (a reinstalled \
                 machine, keys on a disk that is not persistent, another machine on its \
                 address) before trusting the new key"
                    .to_owned(),
            ),
            HostError::DidNotComeBack { .. } => Some(
                "look at the host's console; a slow machine needs a longer reboot-timeout \
                 (fleet.toml or --reboot-timeout)"
                    .to_owned(),
            ),
            HostError::BootedOldSystem { .. } => Some(
                "the boot loader's default entry is not the system profile's generation, or \
                 booting it failed and an older entry was booted: check the boot loader's \
                 entries and the previous boot's journal (journalctl -b -1), then hbdeploy \
                 apply --goal boot HOST --reboot again"
                    .to_owned(),
            ),
            HostError::RebootInterrupted => {
                Some("check it once it is back: hbdeploy status HOST".to_owned())
            }
            HostError::RestoredAtBoot { .. } => Some(
                "see the boot-time restore's log: journalctl -b -u hbdeploy-boot-restore; then \
                 hbdeploy status HOST"
                    .to_owned(),
            ),
            HostError::Copy(err) if err.tail().iter().any(|l| is_signature_refusal(l)) => Some(
                "the host's nix accepts unsigned paths only from a user it trusts: add the \
                     login user to the host's trusted-users (NixOS: nix.settings.trusted-users) \
                     and leave trusted = true, or set signing-key in [fleet] to a nix secret key \
                     whose public key is in the host's trusted-public-keys"
                    .to_owned(),
            ),
            HostError::Copy(err) => err.hint(),
            HostError::Activation {
                profile_set: true,
                goal,
                restored: Restored::No(_) | Restored::Failed(_),
                ..
            } => Some(format!(
                "fix the configuration and apply again, or put the previous generation back: \
                 hbdeploy rollback HOST{}",
                if *goal == Goal::Boot {
                    " --goal boot"
                } else {
                    ""
                }
            )),
            HostError::ActivationTimeout { restored, .. } => Some(match restored {
                Restored::Yes => "find what the activation waits for (the host keeps its log in \
                                  /run/hbdeploy/last-activation.log), or give it longer: \
                                  activation-timeout in fleet.toml or --activation-timeout"
                    .to_owned(),
                Restored::No(_) | Restored::Failed(_) => "put the previous generation back \
                                                          with hbdeploy rollback HOST, then \
                                                          find what the activation waits for"
                    .to_owned(),
            }),
            HostError::Locked { .. } => Some(
                "wait for the other deployment to finish; a lock dies with its deployer's \
                 connection"
                    .to_owned(),
            ),
            HostError::RollbackPending { .. } => {
                Some("check the host once it is reachable again: hbdeploy status HOST".to_owned())
            }
            HostError::NotInStore { .. } => Some(
                "choose a generation whose system is still on the host: hbdeploy generations HOST"
                    .to_owned(),
            ),
            HostError::Secret { name, problem, .. } => secret_hint(name, problem),
            HostError::NotNixos { .. } => Some(
                "the flake attribute must be a NixOS configuration (nixosConfigurations.<attr>)"
                    .to_owned(),
            ),
            HostError::Unobtainable { .. } => Some(
                "push the system to a binary cache (nix copy --to URL PATH on the machine that \
                 built it) and name that cache with --from URL, or add the cache to the host's \
                 substituters"
                    .to_owned(),
            ),
            _ => None,
        }
    }
}

/// What to do about a secret that could not be written.
fn secret_hint(name: &str, problem: &crate::SecretProblem) -> Option<String> {
    use crate::SecretProblem;
    match problem {
        SecretProblem::UnknownOwner(_) | SecretProblem::UnknownGroup(_) => Some(format!(
            "fix `owner`/`group` of the secret `{name}` in fleet.toml; if the new system creates \
             that user or group, set upload = \"post-activation\" for it"
        )),
        SecretProblem::DestIsDirectory => Some(format!(
            "give the secret `{name}` a file path as `dest`, or remove that directory on the host"
        )),
        SecretProblem::Failed(_) => None,
    }
}

impl HostError {
    /// How a host that failed with this error ended: `failed`, or how it was saved.
    pub fn outcome(&self) -> OutcomeKind {
        match self {
            HostError::RolledBack { .. }
            | HostError::Activation {
                restored: Restored::Yes,
                ..
            }
            | HostError::HealthCheck {
                restored: Restored::Yes,
                ..
            }
            | HostError::ActivationTimeout {
                restored: Restored::Yes,
                ..
            } => OutcomeKind::RolledBack,
            HostError::RollbackPending { .. } => OutcomeKind::RollbackPending,
            HostError::RestoredAtBoot { restored: true, .. } => OutcomeKind::RolledBack,
            HostError::BootedOldSystem { .. } => OutcomeKind::BootedOldSystem,
            HostError::DidNotComeBack { .. } => OutcomeKind::DidNotComeBack,
            HostError::RebootHealth { .. } => OutcomeKind::HealthFailed,
            HostError::RebootInterrupted => OutcomeKind::Interrupted,
            _ => OutcomeKind::Failed,
        }
    }
}

/// A failure that stops the whole run.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// nix could not be run or answered nonsense.
    #[error(transparent)]
    Nix(#[from] NixError),
}

impl hbdeploy_files::Hint for PipelineError {
    /// Advice for the user, where there is one.
    fn hint(&self) -> Option<String> {
        match self {
            PipelineError::Nix(err) => err.hint(),
        }
    }
}

/// Whether a line of nix's output says the host refused a path for its missing signature:
/// nix 2.8 writes "lacks a valid signature", newer nix "lacks a signature by a trusted key".
pub(crate) fn is_signature_refusal(line: &str) -> bool {
    line.contains("lacks a valid signature") || line.contains("lacks a signature by a trusted key")
}

#[cfg(test)]
mod tests {
    use super::is_signature_refusal;

    #[test]
    fn signature_refusals_of_old_and_new_nix_are_recognised() {
        assert!(is_signature_refusal(
            "error: cannot add path '/nix/store/x' because it lacks a valid signature"
        ));
        assert!(is_signature_refusal(
            "error: cannot add path '/nix/store/x' because it lacks a signature by a trusted key"
        ));
        assert!(!is_signature_refusal("error: unexpected end-of-file"));
    }
}
