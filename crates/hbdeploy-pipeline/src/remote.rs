//! The commands hbdeploy runs on a host, all over the host's one SSH connection. Store paths are
//! interpolated into command lines; [`StorePath`] guarantees they hold no shell syntax.

use hbdeploy_nix::StorePath;
use hbdeploy_ssh::{CommandOutput, Connection, Exit, OutputLine};

use crate::event::EventSender;
use crate::{Goal, HostError, Stage};

/// The system profile NixOS boots from.
pub const SYSTEM_PROFILE: &str = "/nix/var/nix/profiles/system";

/// hbdeploy's own runtime directory on a host: locks, watchdogs, activation logs.
pub const RUN_DIR: &str = "/run/hbdeploy";

/// Runs `command` as root (through `sudo` when the login is not root), streaming its output as
/// events of `host`/`stage`.
async fn run_root(
    conn: &Connection,
    host: &str,
    stage: Stage,
    events: &EventSender,
    command: &str,
) -> Result<CommandOutput, HostError> {
    conn.run_root(command, |line: &OutputLine| {
        events.output(Some(host), stage, &line.text);
    })
    .await
    .map_err(|source| HostError::Channel { stage, source })
}

pub(crate) fn tail(output: &CommandOutput) -> Vec<String> {
    output.tail.iter().map(|l| l.text.clone()).collect()
}

/// The paths of `closure` that the host's store lacks.
pub async fn missing_paths(
    conn: &Connection,
    closure: &[StorePath],
) -> Result<Vec<StorePath>, HostError> {
    let mut command = String::from("nix-store --check-validity --print-invalid");
    for path in closure {
        command.push(' ');
        command.push_str(path.as_str());
    }
    let output = conn
        .run(&command, |_| {})
        .await
        .map_err(|source| HostError::Channel {
            stage: Stage::Copy,
            source,
        })?;
    if !output.exit.success() {
        return Err(HostError::Remote {
            command: "nix-store --check-validity".to_owned(),
            exit: output.exit.clone(),
            tail: tail(&output),
        });
    }
    Ok(closure
        .iter()
        .filter(|p| output.stdout.lines().any(|l| l == p.as_str()))
        .cloned()
        .collect())
}

/// The command that runs `switch-to-configuration`: in a transient systemd unit where the host
/// runs systemd, so a dropped connection cannot kill it halfway; directly where it does not.
fn switch_command(path: &StorePath, goal: Goal, systemd: bool) -> String {
    let switch = format!("{path}/bin/switch-to-configuration {goal}");
    if systemd {
        format!(
            "systemd-run -E LOCALE_ARCHIVE -E NIXOS_INSTALL_BOOTLOADER --collect \
             --no-ask-password --pipe --quiet --service-type=exec \
             --unit=hbdeploy-switch-to-configuration --wait {switch}"
        )
    } else {
        switch
    }
}

/// What hbdeploy learned about a host before switching it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probe {
    /// The host runs systemd: switch in a transient unit.
    pub systemd: bool,
}

/// Checks that `path` on the host is a NixOS system and whether the host runs systemd.
pub async fn probe(
    conn: &Connection,
    host: &str,
    path: &StorePath,
    events: &EventSender,
) -> Result<Probe, HostError> {
    let probe = format!(
        "test -x {path}/bin/switch-to-configuration || echo not-nixos; \
         test -d /run/systemd/system && echo systemd; true"
    );
    let probed = conn
        .run(&probe, |line: &OutputLine| {
            events.output(Some(host), Stage::Activate, &line.text);
        })
        .await
        .map_err(|source| HostError::Channel {
            stage: Stage::Activate,
            source,
        })?;
    if probed.stdout.lines().any(|l| l == "not-nixos") {
        return Err(HostError::NotNixos { path: path.clone() });
    }
    Ok(Probe {
        systemd: probed.stdout.lines().any(|l| l == "systemd"),
    })
}

/// Runs a `nix-env` operation on the system profile (`--set PATH`, `--rollback`,
/// `--switch-generation N`) and returns the generation the profile points at afterwards.
pub async fn change_profile(
    conn: &Connection,
    host: &str,
    operation: &str,
    events: &EventSender,
) -> Result<Option<u32>, HostError> {
    let command = format!("nix-env -p {SYSTEM_PROFILE} {operation} && readlink {SYSTEM_PROFILE}");
    let output = run_root(conn, host, Stage::Activate, events, &command).await?;
    if !output.exit.success() {
        return Err(HostError::Profile {
            exit: output.exit.clone(),
            tail: tail(&output),
        });
    }
    Ok(output
        .stdout
        .lines()
        .last()
        .and_then(|link| link.strip_prefix("system-"))
        .and_then(|rest| rest.strip_suffix("-link"))
        .and_then(|n| n.parse().ok()))
}

/// Runs `switch-to-configuration goal` of `path`, streaming its output.
pub async fn switch(
    conn: &Connection,
    host: &str,
    path: &StorePath,
    goal: Goal,
    probe: Probe,
    events: &EventSender,
) -> Result<CommandOutput, HostError> {
    let command = switch_command(path, goal, probe.systemd);
    run_root(conn, host, Stage::Activate, events, &command).await
}

/// What became of one activation command.
#[derive(Debug)]
pub struct Activation {
    /// How `switch-to-configuration` ended; `Unknown` when the output ended without saying.
    pub exit: Exit,
    /// The profile's generation after `nix-env --set`, when it was set.
    pub generation: Option<u32>,
    /// `nix-env --set` itself failed (nothing was activated).
    pub profile_failed: bool,
    /// The last lines of output.
    pub tail: Vec<String>,
}

const GENERATION_MARK: &str = "hbdeploy-generation:";
const EXIT_MARK: &str = "hbdeploy-exit:";
const PROFILE_FAILED_MARK: &str = "hbdeploy-profile-failed:";

/// The shell script that sets the profile (for `switch` and `boot`) and switches, as one
/// command, printing markers the deployer reads back. Runs under `sh -c '…'`: no single quotes.
fn activation_script(path: &StorePath, goal: Goal, systemd: bool) -> String {
    let mut script = String::new();
    if goal.sets_profile() {
        script.push_str(&format!(
            "nix-env -p {SYSTEM_PROFILE} --set {path} || {{ echo {PROFILE_FAILED_MARK}$?; exit 97; }}; \
             echo {GENERATION_MARK}$(readlink {SYSTEM_PROFILE}); "
        ));
    }
    script.push_str(&switch_command(path, goal, systemd));
    script.push_str(&format!("; echo {EXIT_MARK}$?"));
    script
}

/// Where the host has systemd, the switch already runs in a transient unit that survives a lost
/// connection, so the script runs in the session. Elsewhere the whole script is detached with
/// `setsid` in a subshell that exits at once (so the host's init, not this session, is its
/// parent and reaps it), writes its pid, and its log is followed with `tail --pid`; neither a
/// lost connection nor a killed deployer can cut an activation off between setting the profile
/// and switching.
fn activation_command(path: &StorePath, goal: Goal, systemd: bool, token: &str) -> String {
    let script = activation_script(path, goal, systemd);
    if systemd {
        return format!("sh -c '{script}'");
    }
    let base = format!("{RUN_DIR}/activate-{token}");
    format!(
        "mkdir -p {RUN_DIR} && : > {base}.log && rm -f {base}.pid && \
         ( setsid sh -c 'echo $$ > {base}.pid; {script}' >> {base}.log 2>&1 < /dev/null & ) && \
         while [ ! -s {base}.pid ]; do sleep 0.01; done && \
         exec tail -s 0.02 -n +1 --pid=$(cat {base}.pid) -f {base}.log"
    )
}

/// Sets the profile (for `switch` and `boot`) and runs `switch-to-configuration goal` of
/// `path`, streaming its output (without hbdeploy's own markers).
pub async fn activate(
    conn: &Connection,
    host: &str,
    path: &StorePath,
    goal: Goal,
    probe: Probe,
    events: &EventSender,
    token: &str,
) -> Result<Activation, HostError> {
    let command = activation_command(path, goal, probe.systemd, token);
    let mut activation = Activation {
        exit: Exit::Unknown,
        generation: None,
        profile_failed: false,
        tail: Vec::new(),
    };
    let mut tail: std::collections::VecDeque<String> = std::collections::VecDeque::new();
    let output = conn
        .run_root(&command, |line: &OutputLine| {
            let text = line.text.as_str();
            if let Some(link) = text.strip_prefix(GENERATION_MARK) {
                activation.generation = link
                    .strip_prefix("system-")
                    .and_then(|rest| rest.strip_suffix("-link"))
                    .and_then(|n| n.parse().ok());
            } else if let Some(code) = text.strip_prefix(EXIT_MARK) {
                activation.exit = code.parse().map(Exit::Code).unwrap_or(Exit::Unknown);
            } else if let Some(code) = text.strip_prefix(PROFILE_FAILED_MARK) {
                activation.profile_failed = true;
                activation.exit = code.parse().map(Exit::Code).unwrap_or(Exit::Unknown);
            } else {
                events.output(Some(host), Stage::Activate, text);
                if tail.len() == 20 {
                    tail.pop_front();
                }
                tail.push_back(text.to_owned());
            }
        })
        .await
        .map_err(|source| HostError::Channel {
            stage: Stage::Activate,
            source,
        })?;
    activation.tail = tail.into_iter().collect();
    // Where the script ran in the session, its own exit status is the fallback.
    if activation.exit == Exit::Unknown && probe.systemd {
        activation.exit = output.exit;
    }
    Ok(activation)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn activation_sets_the_profile_only_for_switch_and_boot_and_has_no_single_quotes() {
        let path = StorePath::new("/nix/store/1j1d0hfqa121v0sk9380s5hrd4xm6g1y-nixos-system-h1")
            .expect("valid");
        for goal in [Goal::Switch, Goal::Boot, Goal::Test, Goal::DryActivate] {
            for systemd in [false, true] {
                let script = activation_script(&path, goal, systemd);
                assert!(!script.contains('\''), "{script}");
                assert_eq!(script.contains("--set"), goal.sets_profile(), "{script}");
                assert!(script.ends_with("; echo hbdeploy-exit:$?"), "{script}");
            }
        }
        let detached = activation_command(&path, Goal::Switch, false, "t0k3n");
        assert!(
            detached.contains("( setsid sh -c 'echo $$ > "),
            "{detached}"
        );
        assert!(
            detached.contains("/run/hbdeploy/activate-t0k3n.log"),
            "{detached}"
        );
        assert!(activation_command(&path, Goal::Switch, true, "t").starts_with("sh -c '"));
    }

    #[test]
    fn switch_runs_in_a_transient_unit_only_under_systemd() {
        let path = StorePath::new("/nix/store/1j1d0hfqa121v0sk9380s5hrd4xm6g1y-nixos-system-h1")
            .expect("valid");
        assert_eq!(
            switch_command(&path, Goal::Test, false),
            format!("{path}/bin/switch-to-configuration test")
        );
        let unit = switch_command(&path, Goal::Switch, true);
        assert!(unit.starts_with("systemd-run "), "{unit}");
        assert!(unit.contains("--wait") && unit.contains("--pipe"), "{unit}");
        assert!(unit.ends_with(&format!("{path}/bin/switch-to-configuration switch")));
    }
}
