//! The commands hbdeploy runs on a host, all over the host's one SSH connection. Store paths are
//! interpolated into command lines; [`StorePath`] guarantees they hold no shell syntax.

use hbdeploy_nix::StorePath;
use hbdeploy_ssh::{CommandOutput, Connection, OutputLine};

use crate::event::EventSender;
use crate::{Goal, HostError, Stage};

/// The system profile NixOS boots from.
pub const SYSTEM_PROFILE: &str = "/nix/var/nix/profiles/system";

/// Runs `command`, streaming its output as events of `host`/`stage`.
async fn run(
    conn: &Connection,
    host: &str,
    stage: Stage,
    events: &EventSender,
    command: &str,
) -> Result<CommandOutput, HostError> {
    conn.run(command, |line: &OutputLine| {
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
    let probed = run(conn, host, Stage::Activate, events, &probe).await?;
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
    let output = run(conn, host, Stage::Activate, events, &command).await?;
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
    run(conn, host, Stage::Activate, events, &command).await
}

/// Activates the copied system `path` for `goal`: checks it is a NixOS system, sets the system
/// profile for `switch` and `boot` (storing the new generation in `generation`, also when the
/// activation then fails), then runs `switch-to-configuration`.
pub async fn activate(
    conn: &Connection,
    host: &str,
    path: &StorePath,
    goal: Goal,
    events: &EventSender,
    generation: &mut Option<u32>,
) -> Result<(), HostError> {
    let probe = probe(conn, host, path, events).await?;
    if goal.sets_profile() {
        *generation = change_profile(conn, host, &format!("--set {path}"), events).await?;
    }
    let output = switch(conn, host, path, goal, probe, events).await?;
    if output.exit.success() {
        Ok(())
    } else {
        Err(HostError::Activation {
            goal,
            exit: output.exit.clone(),
            tail: tail(&output),
            profile_set: goal.sets_profile(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
