//! What a host runs: its system profile's generations, the running system
//! (`/run/current-system`) and the booted one (`/run/booted-system`), read with one command.

use crate::port::{Dial, Host, Reach};
use hbdeploy_nix::StorePath;

use crate::remote::reply::link_number;
use crate::{HostError, Stage};

/// One generation of the system profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generation {
    /// Its number, as `nix-env --list-generations` shows it.
    pub number: u32,
    /// When it was created, in seconds since the Unix epoch (the link's mtime).
    pub created: u64,
    /// The system it points at.
    pub path: StorePath,
}

/// The system-related state of a host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostState {
    /// `/run/current-system`: the running system.
    pub current: Option<StorePath>,
    /// `/run/booted-system`: the system the host booted.
    pub booted: Option<StorePath>,
    /// The generation the system profile points at.
    pub profile_generation: Option<u32>,
    /// Every generation, oldest first.
    pub generations: Vec<Generation>,
    /// Whether the booted and the running system differ in kernel, initrd or kernel modules.
    pub reboot_needed: bool,
    /// Whether the host runs systemd (`/run/systemd/system` exists): activations and the
    /// watchdog then run in transient units.
    pub systemd: bool,
    /// Deployments under magic rollback recorded on the host and not settled yet (their
    /// tokens): being confirmed right now, or left unconfirmed by a deployer that died or a
    /// host that rebooted; the next `apply` or `rollback` settles them.
    pub pending: Vec<String>,
}

impl HostState {
    /// The generation the profile points at.
    pub fn profile(&self) -> Option<&Generation> {
        let number = self.profile_generation?;
        self.generations.iter().find(|g| g.number == number)
    }

    /// The generation with this number.
    pub fn generation(&self, number: u32) -> Option<&Generation> {
        self.generations.iter().find(|g| g.number == number)
    }

    /// The newest generation older than the profile's, as `nix-env --rollback` picks it.
    pub fn previous(&self) -> Option<&Generation> {
        let current = self.profile_generation?;
        self.generations
            .iter()
            .filter(|g| g.number < current)
            .max_by_key(|g| g.number)
    }

    /// The generation of the running system: the newest generation pointing at it.
    pub fn current_generation(&self) -> Option<u32> {
        let current = self.current.as_ref()?;
        self.generations
            .iter()
            .filter(|g| &g.path == current)
            .map(|g| g.number)
            .max()
    }
}

/// Parses the output of `remote/state.sh`. Lines it does not understand are ignored.
pub(crate) fn parse_state(text: &str) -> HostState {
    let mut state = HostState::default();
    let mut boot_differs = false;
    let mut boot_files_seen = false;
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        match fields.as_slice() {
            ["link", "/run/current-system", path] => state.current = StorePath::new(*path).ok(),
            ["link", "/run/booted-system", path] => state.booted = StorePath::new(*path).ok(),
            ["profile", link] => state.profile_generation = link_number(link),
            ["systemd"] => state.systemd = true,
            ["pending", token] => state.pending.push((*token).to_owned()),
            ["boot", _, paths @ ..] if !paths.is_empty() => {
                boot_files_seen = true;
                boot_differs |= paths.len() != 2 || paths[0] != paths[1];
            }
            ["gen", link, created, path] => {
                if let (Some(number), Ok(created), Ok(path)) =
                    (link_number(link), created.parse(), StorePath::new(*path))
                {
                    state.generations.push(Generation {
                        number,
                        created,
                        path,
                    });
                }
            }
            _ => {}
        }
    }
    state.generations.sort_by_key(|g| g.number);
    // Without kernel files on either side (not a real NixOS system), compare the systems.
    state.reboot_needed = match (&state.booted, &state.current) {
        (Some(_), Some(_)) if boot_files_seen => boot_differs,
        (Some(booted), Some(current)) => booted != current,
        _ => false,
    };
    state
}

/// Connects to the host and reads its state; nothing is changed.
pub async fn host_state(
    plan: &crate::HostPlan,
    session: &hbdeploy_ssh::Session,
) -> Result<HostState, HostError> {
    let ssh = Reach {
        session: session.clone(),
    };
    host_state_via(&ssh, plan).await
}

/// [`host_state`] over `transport`.
pub(crate) async fn host_state_via(
    dial: &impl Dial,
    plan: &crate::HostPlan,
) -> Result<HostState, HostError> {
    let conn = dial
        .connect(&plan.target)
        .await
        .map_err(HostError::Connect)?;
    let state = read_state(&conn, Stage::Connect).await;
    conn.close().await;
    state
}

/// Reads the host's state over `conn`.
pub async fn read_state(conn: &impl Host, stage: Stage) -> Result<HostState, HostError> {
    Ok(parse_state(&crate::remote::state_text(conn, stage).await?))
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "/nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-nixos-system-a";
    const B: &str = "/nix/store/bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-nixos-system-b";

    fn sample(booted: &str) -> String {
        format!(
            "link /run/current-system {B}\nlink /run/booted-system {booted}\nprofile system-3-link\n\
             boot kernel  \nboot initrd  \nboot kernel-modules  \n\
             gen /nix/var/nix/profiles/system-1-link 1700000000 {A}\n\
             gen /nix/var/nix/profiles/system-3-link 1700000300 {B}\n\
             gen /nix/var/nix/profiles/system-2-link 1700000100 {A}\n"
        )
    }

    #[test]
    fn parses_links_profile_and_generations() {
        let state = parse_state(&sample(A));
        assert_eq!(state.current.as_ref().map(StorePath::as_str), Some(B));
        assert_eq!(state.profile_generation, Some(3));
        let numbers: Vec<u32> = state.generations.iter().map(|g| g.number).collect();
        assert_eq!(numbers, [1, 2, 3]);
        assert_eq!(state.previous().map(|g| g.number), Some(2));
        assert_eq!(state.current_generation(), Some(3));
        assert_eq!(state.generation(1).map(|g| g.created), Some(1_700_000_000));
        assert!(!state.systemd);
        assert!(parse_state(&format!("{}systemd\n", sample(A))).systemd);
        assert!(state.pending.is_empty());
        let pending = parse_state(&format!("{}pending ab12\n", sample(A))).pending;
        assert_eq!(pending, ["ab12"]);
    }

    #[test]
    fn reboot_is_needed_when_booted_and_running_differ() {
        assert!(parse_state(&sample(A)).reboot_needed);
        assert!(!parse_state(&sample(B)).reboot_needed);
        // A file that neither system has (no loadable modules) is no difference.
        let modules_missing = sample(A)
            .replace(
                "boot kernel  \n",
                &format!("boot kernel {A}/kernel {A}/kernel\n"),
            )
            .replace(
                "boot initrd  \n",
                &format!("boot initrd {A}/initrd {A}/initrd\n"),
            );
        assert!(!parse_state(&modules_missing).reboot_needed);
        let modules_added = modules_missing.replace(
            "boot kernel-modules  \n",
            &format!("boot kernel-modules  {B}/kernel-modules\n"),
        );
        assert!(parse_state(&modules_added).reboot_needed);
        let kernels_same = sample(A).replace(
            "boot kernel  \n",
            &format!("boot kernel {A}/kernel {A}/kernel\n"),
        );
        assert!(
            !parse_state(&kernels_same).reboot_needed,
            "same kernel, no reboot"
        );
    }

    #[test]
    fn a_fresh_host_has_nothing() {
        let state = parse_state("link /run/current-system \nlink /run/booted-system \nprofile \n");
        assert_eq!(state, HostState::default());
        assert!(state.previous().is_none());
    }
}
