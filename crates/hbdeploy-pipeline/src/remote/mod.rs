//! The remote protocol: every command hbdeploy runs on a host to read or change its system.
//!
//! Each command is a shell script of this directory, included with `include_str!` and run as
//! `sh -c SCRIPT hbdeploy ARG…`: the script text is constant, and every argument goes through
//! one quoting function, [`quote`]. Replies are parsed once, here, into typed values
//! ([`reply`]). Everything that changes a host runs as a detached job ([`job`]) from script files
//! written to the deployment's directory on the host, so systemd never expands a script's `$`.

#[cfg(test)]
mod ask_tests;
mod boot;
mod job;
#[cfg(test)]
mod local_tests;
pub(crate) mod reply;
pub(crate) mod secret;
mod settled;

use std::time::Duration;

use hbdeploy_nix::{SizedClosure, StorePath};
use hbdeploy_ssh::OutputLine;

use crate::port::Host;
use crate::port::Lock;

use crate::event::EventSender;
use crate::{HostError, Stage};

pub(crate) use boot::{Booted, booted, start_reboot};
pub(crate) use job::{Arm, Change, Deployment, JobKind, JobOutcome, Op, Progress};
pub use reply::{DRY_ACTIVATE_LINES, DryActivation};
pub(crate) use reply::{Decision, LockReply, Probe, Under, WatchdogReason};
pub(crate) use settled::{Before, SETTLE_WAIT, settle};

/// hbdeploy's own runtime directory on a host: the lock, and one directory per deployment.
pub const RUN_DIR: &str = "/run/hbdeploy";

/// The one quoting function for anything put on a host's command line.
pub(crate) use hbdeploy_ssh::shell_quote as quote;

/// The scripts of the remote protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Script {
    Lock,
    State,
    Probe,
    CheckValidity,
    Install,
    Launch,
    Run,
    Stop,
    Switch,
    Watchdog,
    Decide,
    Settle,
    Closure,
    DryActivate,
    Realise,
    Check,
    InstallProbe,
    NixosInstall,
    Prepare,
    Reboot,
    Booted,
    Secret,
    SecretState,
}

impl Script {
    #[cfg(test)]
    pub(crate) const ALL: [Script; 23] = [
        Script::Lock,
        Script::State,
        Script::Probe,
        Script::CheckValidity,
        Script::Install,
        Script::Launch,
        Script::Run,
        Script::Stop,
        Script::Switch,
        Script::Watchdog,
        Script::Decide,
        Script::Settle,
        Script::Closure,
        Script::DryActivate,
        Script::Realise,
        Script::Check,
        Script::InstallProbe,
        Script::NixosInstall,
        Script::Prepare,
        Script::Reboot,
        Script::Booted,
        Script::Secret,
        Script::SecretState,
    ];

    /// The file name, also on the host for the scripts that jobs run from files.
    pub(crate) fn file(self) -> &'static str {
        match self {
            Script::Lock => "lock.sh",
            Script::State => "state.sh",
            Script::Probe => "probe.sh",
            Script::CheckValidity => "check-validity.sh",
            Script::Install => "install.sh",
            Script::Launch => "launch.sh",
            Script::Run => "run.sh",
            Script::Stop => "stop.sh",
            Script::Switch => "switch.sh",
            Script::Watchdog => "watchdog.sh",
            Script::Decide => "decide.sh",
            Script::Settle => "settle.sh",
            Script::Closure => "closure.sh",
            Script::DryActivate => "dry-activate.sh",
            Script::Realise => "realise.sh",
            Script::Check => "check.sh",
            Script::InstallProbe => "install-probe.sh",
            Script::NixosInstall => "nixos-install.sh",
            Script::Prepare => "prepare.sh",
            Script::Reboot => "reboot.sh",
            Script::Booted => "booted.sh",
            Script::Secret => "secret.sh",
            Script::SecretState => "secret-state.sh",
        }
    }

    pub(crate) fn text(self) -> &'static str {
        match self {
            Script::Lock => include_str!("lock.sh"),
            Script::State => include_str!("state.sh"),
            Script::Probe => include_str!("probe.sh"),
            Script::CheckValidity => include_str!("check-validity.sh"),
            Script::Install => include_str!("install.sh"),
            Script::Launch => include_str!("launch.sh"),
            Script::Run => include_str!("run.sh"),
            Script::Stop => include_str!("stop.sh"),
            Script::Switch => include_str!("switch.sh"),
            Script::Watchdog => include_str!("watchdog.sh"),
            Script::Decide => include_str!("decide.sh"),
            Script::Settle => include_str!("settle.sh"),
            Script::Closure => include_str!("closure.sh"),
            Script::DryActivate => include_str!("dry-activate.sh"),
            Script::Realise => include_str!("realise.sh"),
            Script::Check => include_str!("check.sh"),
            Script::InstallProbe => include_str!("install-probe.sh"),
            Script::NixosInstall => include_str!("nixos-install.sh"),
            Script::Prepare => include_str!("prepare.sh"),
            Script::Reboot => include_str!("reboot.sh"),
            Script::Booted => include_str!("booted.sh"),
            Script::Secret => include_str!("secret.sh"),
            Script::SecretState => include_str!("secret-state.sh"),
        }
    }

    /// How long the host lets this script run before it stops it, with its children: a little
    /// less than the deployer waits for a step ([`STEP_LIMIT`]), so nothing of a step the
    /// deployer gave up on is left running. `None` for the lock (held for the whole change), a
    /// launch and the round trip that starts one (they follow a job, bounded by
    /// `activation-timeout`), settling, a build and a health check (their own bounds), and for
    /// the steps every deployment takes that end on their own: the state (links and a
    /// directory, read by the lock's holder in its own shell), the check of what the store
    /// lacks (`check-validity.sh` bounds its one `nix-store` itself) and magic rollback's
    /// decision (`decide.sh`: files in /run, a `kill`, and an `rm` of the pending record only
    /// once the decision is written). Each `timeout` costs the host two programs to start, per
    /// host and step.
    fn host_limit(self) -> Option<Duration> {
        match self {
            Script::Probe
            | Script::Install
            | Script::Stop
            | Script::Closure
            | Script::DryActivate
            | Script::InstallProbe
            | Script::Reboot
            | Script::Secret
            | Script::SecretState => Some(HOST_STEP_LIMIT),
            Script::Lock
            | Script::State
            | Script::CheckValidity
            | Script::Decide
            | Script::Prepare
            | Script::Launch
            | Script::Run
            | Script::Switch
            | Script::Watchdog
            | Script::Settle
            | Script::Realise
            | Script::Check
            | Script::NixosInstall
            | Script::Booted => None,
        }
    }

    /// The command line that runs this script with `args` (`$1`… in the script), under
    /// coreutils' `timeout` where it has a [host limit](Script::host_limit).
    pub(crate) fn command<S: AsRef<str>>(self, args: &[S]) -> String {
        let bound = self
            .host_limit()
            .map(|limit| format!("timeout -k 5 {} ", limit.as_secs()))
            .unwrap_or_default();
        with_args(
            format!("{bound}sh -c {} hbdeploy", quote(self.text())),
            args,
        )
    }

    /// The command that a deployment lock's holder (`lock.sh`) runs for this script with
    /// `args`: for a script without a [host limit](Script::host_limit), its text run by the
    /// holder's own subshell after `set --` gives it its arguments, which saves starting a
    /// shell; else [`Script::command`] (coreutils' `timeout` must have a program to stop).
    pub(crate) fn asked<S: AsRef<str>>(self, args: &[S]) -> String {
        if self.host_limit().is_some() {
            return self.command(args);
        }
        let mut command = with_args("set --".to_owned(), args);
        command.push('\n');
        command.push_str(self.text());
        command
    }
}

/// `command` followed by each of `args`, quoted, a blank before each.
fn with_args<S: AsRef<str>>(mut command: String, args: &[S]) -> String {
    for arg in args {
        command.push(' ');
        command.push_str(&quote(arg.as_ref()));
    }
    command
}

fn channel_error(stage: Stage) -> impl FnOnce(hbdeploy_ssh::SshError) -> HostError {
    move |source| HostError::Channel { stage, source }
}

/// How long a step of the protocol that reads or records may take before the host is taken for
/// hung. (Jobs, builds and dry activations have bounds of their own.)
pub(crate) const STEP_LIMIT: Duration = Duration::from_secs(120);

/// How long the host lets a step run ([`Script::host_limit`]): a little less than the deployer
/// waits for it.
const HOST_STEP_LIMIT: Duration = Duration::from_secs(STEP_LIMIT.as_secs() - 10);

/// Runs one step (`what`, at `stage`), bounded by [`STEP_LIMIT`].
pub(crate) async fn step<T>(
    stage: Stage,
    what: &str,
    run: impl std::future::Future<Output = Result<T, hbdeploy_ssh::SshError>>,
) -> Result<T, HostError> {
    match tokio::time::timeout(STEP_LIMIT, run).await {
        Ok(result) => result.map_err(channel_error(stage)),
        Err(_) => Err(HostError::NoAnswer {
            step: what.to_owned(),
            secs: STEP_LIMIT.as_secs(),
        }),
    }
}

/// `nix-store --check-validity` of `paths` on the host (`check-validity.sh`), unparsed. On a
/// channel of its own the paths go on the command's input, one per line: a real system's
/// thousands would not fit on a command line. Under a deployment `lock`, its holder runs it (no
/// channel of its own), with the paths as an argument of the request itself, which is read
/// whole and never becomes a program's command line.
pub(crate) async fn check_validity<H: Host>(
    conn: &H,
    lock: Option<&Lock<H>>,
    paths: &[&str],
) -> Result<hbdeploy_ssh::CommandOutput, hbdeploy_ssh::SshError> {
    let limit = HOST_STEP_LIMIT.as_secs().to_string();
    if let Some(mut held) = Lock::holder_of(lock).await {
        let command = Script::CheckValidity.asked(&[limit.as_str(), &paths.join("\n")]);
        return conn.ask(&mut held, &command, &[], true, |_| {}).await;
    }
    let mut input = String::with_capacity(paths.iter().map(|p| p.len() + 1).sum());
    for path in paths {
        input.push_str(path);
        input.push('\n');
    }
    let command = Script::CheckValidity.command(&[limit.as_str()]);
    conn.run_with_stdin(&command, input.as_bytes(), |_| {})
        .await
}

/// `install-probe.sh`: what a pushed install's target is, and which of `devices` it has.
pub(crate) async fn install_probe(
    conn: &impl Host,
    system_bin: &str,
    devices: &[&str],
) -> Result<hbdeploy_ssh::CommandOutput, hbdeploy_ssh::SshError> {
    let mut args = vec![system_bin];
    args.extend_from_slice(devices);
    conn.run(&Script::InstallProbe.command(&args), |_| {}).await
}

/// Runs a store path that is a program (a disko script) on the host, passing its output on.
pub(crate) async fn store_program(
    conn: &impl Host,
    program: &StorePath,
    on_line: impl FnMut(&OutputLine) + Send,
) -> Result<hbdeploy_ssh::CommandOutput, hbdeploy_ssh::SshError> {
    conn.run(&quote(program.as_str()), on_line).await
}

/// `nixos-install.sh`: installs `system` onto `root`, passing its output on.
pub(crate) async fn nixos_install(
    conn: &impl Host,
    (system_bin, root, system): (&str, &str, &StorePath),
    on_line: impl FnMut(&OutputLine) + Send,
) -> Result<hbdeploy_ssh::CommandOutput, hbdeploy_ssh::SshError> {
    let command = Script::NixosInstall.command(&[system_bin, root, system.as_str()]);
    conn.run(&command, on_line).await
}

/// The paths of `closure` that the host's store lacks. Put the path most likely to be new first
/// (a closure's top): when the host lacks it, the others are counted from what is on disk,
/// without a `nix-store` process (`check-validity.sh`); "nothing missing" is always nix-store's.
/// Under a deployment `lock`, its holder asks.
pub async fn missing_paths<H: Host>(
    conn: &H,
    lock: Option<&Lock<H>>,
    closure: &[StorePath],
) -> Result<Vec<StorePath>, HostError> {
    let paths: Vec<&str> = closure.iter().map(StorePath::as_str).collect();
    let output = step(
        Stage::Copy,
        "nix-store --check-validity",
        check_validity(conn, lock, &paths),
    )
    .await?;
    if !output.exit.success() {
        return Err(HostError::Remote {
            command: "nix-store --check-validity".to_owned(),
            exit: output.exit.clone(),
            tail: output.tail_lines(),
        });
    }
    let lacked: std::collections::HashSet<&str> = output.stdout.lines().collect();
    Ok(closure
        .iter()
        .filter(|p| lacked.contains(p.as_str()))
        .cloned()
        .collect())
}

/// Checks that `path` on the host is a NixOS system and whether the host runs systemd.
pub async fn probe(
    conn: &impl Host,
    host: &str,
    path: &StorePath,
    events: &EventSender,
) -> Result<Probe, HostError> {
    let command = Script::Probe.command(&[path.as_str()]);
    let output = step(
        Stage::Activate,
        "checking the system on the host",
        conn.run(&command, |line: &OutputLine| {
            events.output(Some(host), Stage::Activate, &line.text);
        }),
    )
    .await?;
    let probe = Probe::parse(&output.stdout);
    if probe.missing {
        return Err(HostError::NotInStore { path: path.clone() });
    }
    if !probe.nixos {
        return Err(HostError::NotNixos { path: path.clone() });
    }
    Ok(probe)
}

/// Takes the host's deployment lock, held by a command that lives as long as this connection's
/// channel; `held` is `None` only when the command ended at once. With `read`, the holder reads
/// the host's state (`state.sh`) under the lock and answers it with its first line.
pub(crate) async fn lock<H: Host>(
    conn: &H,
    holder: &str,
    read: bool,
) -> Result<(LockReply, Option<H::Held>), HostError> {
    let args: &[&str] = if read {
        &[holder, Script::State.text()]
    } else {
        &[holder]
    };
    let command = Script::Lock.command(args);
    let (line, held) = tokio::time::timeout(STEP_LIMIT, conn.hold_root(&command))
        .await
        .map_err(|_| HostError::NoAnswer {
            step: "taking the deployment lock".to_owned(),
            secs: STEP_LIMIT.as_secs(),
        })?
        .map_err(|source| match source {
            source @ hbdeploy_ssh::SshError::Escalation { .. } => HostError::Privilege(source),
            source => HostError::Channel {
                stage: Stage::Connect,
                source,
            },
        })?;
    Ok((LockReply::parse(&line), held))
}

/// The closure of `path` in the host's store, with sizes (`closure.sh`).
pub(crate) async fn closure(
    conn: &impl Host,
    path: &StorePath,
    stage: Stage,
) -> Result<SizedClosure, HostError> {
    let command = Script::Closure.command(&[path.as_str()]);
    let output = step(
        stage,
        "nix-store --query --requisites",
        conn.run(&command, |_| {}),
    )
    .await?;
    let closure = output
        .exit
        .success()
        .then(|| reply::parse_closure(&output.stdout))
        .flatten();
    closure.ok_or_else(|| HostError::Remote {
        command: format!("nix-store --query --requisites/--size {path}"),
        exit: output.exit.clone(),
        tail: output.tail_lines(),
    })
}

/// Builds the derivation `drv` on the host (`realise.sh`), passing its output on as it comes;
/// fails unless it produced `out`, the system evaluation promised.
pub(crate) async fn realise(
    conn: &impl Host,
    host: &str,
    drv: &StorePath,
    out: &StorePath,
    events: &EventSender,
) -> Result<(), HostError> {
    let output = conn
        .run(&Script::Realise.command(&[drv.as_str()]), |line| {
            events.output(Some(host), Stage::Copy, &line.text)
        })
        .await
        .map_err(channel_error(Stage::Copy))?;
    if output.exit.success() && reply::produced(&output.stdout, out) {
        return Ok(());
    }
    Err(HostError::Remote {
        command: format!("nix-store --realise {drv}"),
        exit: output.exit.clone(),
        tail: output.tail_lines(),
    })
}

/// Runs `dry-activate.sh` for `path` (as root), passing its output on as it comes.
pub(crate) async fn dry_activate(
    conn: &impl Host,
    host: &str,
    path: &StorePath,
    events: &EventSender,
) -> Result<DryActivation, HostError> {
    let mut lines = Vec::new();
    let command = Script::DryActivate.command(&[path.as_str()]);
    let output = step(
        Stage::Activate,
        "switch-to-configuration dry-activate",
        conn.run_root(&command, |line| {
            events.output(Some(host), Stage::Activate, &line.text);
            if lines.len() < DRY_ACTIVATE_LINES {
                lines.push(line.text.clone());
            }
        }),
    )
    .await?;
    if !output.exit.success() {
        return Err(HostError::Remote {
            command: "switch-to-configuration dry-activate".to_owned(),
            exit: output.exit.clone(),
            tail: output.tail_lines(),
        });
    }
    Ok(DryActivation {
        exit: output.exit,
        lines,
    })
}

/// The command line that runs a health check's `command` within `limit` (`check.sh`), its
/// process group given `kill_after` to stop once signalled.
pub(crate) fn check_command(command: &str, limit: Duration, kill_after: Duration) -> String {
    Script::Check.command(&[
        kill_after.as_secs().to_string(),
        limit.as_secs().max(1).to_string(),
        command.to_owned(),
    ])
}

/// Runs a health check's `command` on the host within `limit` (`check.sh`; see
/// [`check_command`]).
pub(crate) async fn check(
    conn: &impl Host,
    command: &str,
    limit: Duration,
    kill_after: Duration,
) -> Result<hbdeploy_ssh::CommandOutput, hbdeploy_ssh::SshError> {
    conn.run(&check_command(command, limit, kill_after), |_| {})
        .await
}

/// Runs `command`, the user's own (`hbdeploy exec`), as it is: the one remote command line
/// hbdeploy does not write.
pub(crate) async fn user_command(
    conn: &impl Host,
    command: &str,
    on_line: impl FnMut(&OutputLine) + Send,
) -> Result<hbdeploy_ssh::CommandOutput, hbdeploy_ssh::SshError> {
    conn.run(command, on_line).await
}

/// Reads the host's state (`state.sh`), unparsed.
pub(crate) async fn state_text(conn: &impl Host, stage: Stage) -> Result<String, HostError> {
    let command = Script::State.command::<&str>(&[]);
    let output = step(
        stage,
        "reading the system profile",
        conn.run(&command, |_| {}),
    )
    .await?;
    if !output.exit.success() {
        return Err(HostError::Remote {
            command: "reading the system profile and /run/current-system".to_owned(),
            exit: output.exit.clone(),
            tail: output.tail_lines(),
        });
    }
    Ok(output.stdout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_script_is_a_posix_shell_script_run_with_quoted_arguments() {
        for script in Script::ALL {
            assert!(
                script.text().starts_with("#!/bin/sh\n"),
                "{}",
                script.file()
            );
            let command = script.command(&["a b", "it's"]);
            let bounded = script.host_limit().is_some();
            let start = if bounded {
                "timeout -k 5 110 sh -c '#!/bin/sh"
            } else {
                "sh -c '#!/bin/sh"
            };
            assert!(command.starts_with(start), "{command}");
            assert!(command.ends_with(r" hbdeploy 'a b' 'it'\''s'"), "{command}");
        }
    }

    /// A command that follows a job runs as long as the job may (`activation-timeout`, 300 s by
    /// default): a host limit would cut the deployer off from an activation still running.
    #[test]
    fn what_follows_a_job_has_no_host_limit() {
        for script in [Script::Prepare, Script::Launch] {
            assert_eq!(script.host_limit(), None, "{}", script.file());
            assert!(script.command(&["x"]).starts_with("sh -c "));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_step_the_host_never_answers_ends_at_the_limit() {
        let never = std::future::pending::<Result<(), hbdeploy_ssh::SshError>>();
        let started = tokio::time::Instant::now();
        let result = step(Stage::Connect, "reading the system profile", never).await;
        assert!(
            matches!(&result, Err(HostError::NoAnswer { step, secs: 120 }) if step == "reading the system profile"),
            "{result:?}"
        );
        assert_eq!(started.elapsed(), STEP_LIMIT);
    }

    /// The scripts are shellcheck-clean as POSIX sh (CI needs `shellcheck`: apt-get install
    /// shellcheck).
    #[test]
    fn every_script_is_shellcheck_clean() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/remote");
        let files: Vec<_> = Script::ALL.iter().map(|s| dir.join(s.file())).collect();
        let checked = std::process::Command::new("shellcheck")
            .args(["-s", "sh"])
            .args(&files)
            .output()
            .expect("shellcheck runs (apt-get install shellcheck)");
        assert!(
            checked.status.success(),
            "{}",
            String::from_utf8_lossy(&checked.stdout)
        );
    }
}
