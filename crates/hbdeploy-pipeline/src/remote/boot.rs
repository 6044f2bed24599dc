//! The two steps of a checked reboot on the host: starting it (`reboot.sh`, as root) and, in the
//! new boot, reading what was booted (`booted.sh`), with their replies parsed into types.

use std::time::Duration;

use crate::port::Host;
use hbdeploy_nix::StorePath;

use super::{Script, step};
use crate::{HostError, Stage};

/// What the host said as it was told to reboot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RebootStarted {
    /// The id of the boot it was in.
    pub boot_id: String,
    /// The system its profile pointed at: what its boot loader's default entry boots.
    pub profile: Option<StorePath>,
    /// The system it ran.
    pub current: Option<StorePath>,
}

/// What a host that answered after a reboot runs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Booted {
    /// The id of the boot it is in.
    pub boot_id: String,
    /// `/run/booted-system`.
    pub booted: Option<StorePath>,
    /// `/run/current-system`.
    pub current: Option<StorePath>,
    /// What the boot-time restore did in this boot: `restored TOKEN N PATH` or
    /// `failed TOKEN N PATH`, one per deployment.
    pub restores: Vec<String>,
}

fn path(text: &str) -> Option<StorePath> {
    StorePath::new(text.trim()).ok()
}

/// Tells the host to reboot (`reboot.sh`, as root): it answers with its boot id and the
/// profile's system, then reboots a second later, detached from the session.
pub(crate) async fn start_reboot(conn: &impl Host) -> Result<RebootStarted, HostError> {
    let command = Script::Reboot.command::<&str>(&[]);
    let output = step(
        Stage::Reboot,
        "starting the reboot",
        conn.run_root(&command, |_| {}),
    )
    .await?;
    let started = parse_started(&output.stdout);
    match started {
        Some(started) if output.exit.success() => Ok(started),
        _ => Err(HostError::Remote {
            command: "starting the reboot (systemctl reboot)".to_owned(),
            exit: output.exit.clone(),
            tail: output.tail_lines(),
        }),
    }
}

fn parse_started(text: &str) -> Option<RebootStarted> {
    let mut boot_id = None;
    let mut profile = None;
    let mut current = None;
    let mut started = false;
    for line in text.lines() {
        match line.split_once(' ') {
            Some(("boot-id", id)) if !id.trim().is_empty() => boot_id = Some(id.trim().to_owned()),
            Some(("profile", p)) => profile = path(p),
            Some(("current", p)) => current = path(p),
            _ if line == "started" => started = true,
            _ => {}
        }
    }
    started.then_some(())?;
    Some(RebootStarted {
        boot_id: boot_id?,
        profile,
        current,
    })
}

/// Reads what the host booted (`booted.sh`), first letting its boot finish for up to `wait`.
pub(crate) async fn booted(conn: &impl Host, wait: Duration) -> Result<Booted, HostError> {
    let secs = wait.as_secs().max(1).to_string();
    let command = Script::Booted.command(&[secs.as_str()]);
    let output = conn
        .run(&command, |_| {})
        .await
        .map_err(|source| HostError::Channel {
            stage: Stage::Reboot,
            source,
        })?;
    let booted = parse_booted(&output.stdout);
    if booted.boot_id.is_empty() {
        return Err(HostError::Remote {
            command: "reading the booted system".to_owned(),
            exit: output.exit.clone(),
            tail: output.tail_lines(),
        });
    }
    Ok(booted)
}

fn parse_booted(text: &str) -> Booted {
    let mut booted = Booted::default();
    for line in text.lines() {
        match line.split_once(' ') {
            Some(("boot-id", id)) => booted.boot_id = id.trim().to_owned(),
            Some(("booted", p)) => booted.booted = path(p),
            Some(("current", p)) => booted.current = path(p),
            Some(("boot-restore", what)) => booted.restores.push(what.trim().to_owned()),
            _ => {}
        }
    }
    booted
}

#[cfg(test)]
mod tests {
    use super::*;

    const SYS: &str = "/nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-nixos-system-a";

    #[test]
    fn a_started_reboot_gives_its_boot_id_and_profile() {
        let started = parse_started(&format!(
            "boot-id 1234\nprofile {SYS}\ncurrent {SYS}\nstarted\n"
        ));
        assert_eq!(
            started,
            Some(RebootStarted {
                boot_id: "1234".to_owned(),
                profile: path(SYS),
                current: path(SYS),
            })
        );
        assert_eq!(
            parse_started("boot-id 1234\nprofile \n"),
            None,
            "not started"
        );
        assert_eq!(
            parse_started("boot-id \nprofile \nstarted\n"),
            None,
            "no boot id"
        );
        assert_eq!(
            parse_started("boot-id 1\nprofile \nstarted\n").map(|s| s.profile),
            Some(None)
        );
    }

    #[test]
    fn what_was_booted_and_restored_is_read() {
        let booted = parse_booted(&format!(
            "state running\nboot-id 99\nbooted {SYS}\ncurrent {SYS}\nprofile \n\
             boot-restore restored ab12 3 {SYS}\n"
        ));
        assert_eq!(booted.boot_id, "99");
        assert_eq!(booted.booted, path(SYS));
        assert_eq!(booted.current, path(SYS));
        assert_eq!(booted.restores, [format!("restored ab12 3 {SYS}")]);
    }
}
