//! From fleet.toml and the command line to the hosts a run works on: the fleet, the selection,
//! each host's [`HostPlan`] (with its SSH target and jump hosts), the parallelism, and the local
//! nix.

use std::num::NonZeroUsize;

use hbdeploy_inventory::{Fleet, Selector};
use hbdeploy_nix::Nix;
use hbdeploy_pipeline::{HostPlan, HostSafety, HostTransfer};
use hbdeploy_ssh::{Escalation, Target};

use crate::cli::{Cli, Selection};
use crate::error::AppError;

/// The plan for one inventory host.
fn plan(fleet: &Fleet, host: &hbdeploy_inventory::Host) -> HostPlan {
    HostPlan {
        name: host.name.to_string(),
        attr: host.attr.clone(),
        target: target(fleet, host, 0),
        safety: HostSafety {
            magic_rollback: host.safety.magic_rollback,
            confirm_timeout: host.safety.confirm_timeout,
            activation_timeout: host.safety.activation_timeout,
            reboot_timeout: host.safety.reboot_timeout,
        },
        wave: host.wave,
        health: host.health.clone(),
        transfer: HostTransfer {
            substitute: host.transfer.substitute,
            build_on_target: host.transfer.build_on == hbdeploy_inventory::BuildOn::Target,
            // Assumed trusted unless fleet.toml says otherwise: a nix that does not trust the
            // user ignores `--no-check-sigs`, and the copy's error then says what to do.
            trusted: host.transfer.trusted.unwrap_or(true),
        },
        system: None,
        secrets: Vec::new(),
    }
}

/// How to reach `host`, through its `proxy-jump` host when it has one. `depth` bounds chains of
/// jump hosts that name each other. The machine hbdeploy runs on (`address = "local"`) is
/// reached as the user hbdeploy runs as, through its escalation command for root.
fn target(fleet: &Fleet, host: &hbdeploy_inventory::Host, depth: usize) -> Target {
    let escalation = Some(Escalation {
        command: host.ssh.privilege_escalation.clone(),
    });
    if host.is_local() {
        return Target {
            escalation,
            ..with_settings_of(
                host,
                hbdeploy_ssh::LOCAL_ADDRESS.to_owned(),
                host.ssh.port,
                hbdeploy_ssh::local_user(),
            )
        };
    }
    let jump = host
        .proxy_jump
        .as_deref()
        .and_then(|jump| match fleet.host(jump) {
            Some(via) if depth < 8 => Some(Box::new(target(fleet, via, depth + 1))),
            Some(_) => None,
            None => Some(Box::new(jump_target(host, jump))),
        });
    Target {
        pinned_keys: host.host_keys.clone(),
        jump,
        escalation,
        compress: host.transfer.compress,
        ..with_settings_of(
            host,
            host.address.clone(),
            host.ssh.port,
            host.ssh.user.clone(),
        )
    }
}

/// A machine reached with `host`'s SSH settings (identity, known_hosts, timeout, keepalives) that
/// is not `host` itself: a jump host on the way to it, or the live installer it is installed
/// from. Directly, with no pinned keys (its key is its own), and nothing run on it as root.
pub(crate) fn with_settings_of(
    host: &hbdeploy_inventory::Host,
    address: String,
    port: u16,
    user: String,
) -> Target {
    Target {
        address,
        port,
        user,
        identity_file: host.ssh.identity_file.clone(),
        known_hosts: host.ssh.known_hosts.clone(),
        pinned_keys: Vec::new(),
        accept_new: false,
        jump: None,
        connect_timeout: host.ssh.connect_timeout,
        escalation: None,
        keepalive: host.ssh.keepalive,
        compress: false,
    }
}

/// A jump host given as `[user@]address[:port]`, with `host`'s key, known_hosts and timeout.
fn jump_target(host: &hbdeploy_inventory::Host, spec: &str) -> Target {
    let (user, rest) = match spec.split_once('@') {
        Some((user, rest)) => (user.to_owned(), rest),
        None => (host.ssh.user.clone(), spec),
    };
    let (address, port) = match rest.rsplit_once(':') {
        Some((address, port)) if port.parse::<u16>().is_ok() => {
            (address.to_owned(), port.parse().unwrap_or(22))
        }
        _ => (rest.to_owned(), 22),
    };
    // Nothing runs on a jump host but the forwarding of the connection.
    with_settings_of(host, address, port, user)
}

/// The fleet and the plans of the hosts `selection` names; with `default_all`, no selection
/// means every host.
pub(crate) fn load(
    cli: &Cli,
    selection: &Selection,
    default_all: bool,
    overrides: &Overrides,
) -> Result<(Fleet, Vec<HostPlan>), AppError> {
    let fleet = Fleet::load(&cli.fleet).map_err(AppError::Inventory)?;
    // For commands that default to every host, exclusions alone take away from every host
    // (`hbdeploy status '!laptop'`); `apply` and the like want a positive selection.
    let only_exclusions = selection.selectors.iter().all(|s| s.starts_with('!'));
    let all = selection.all || (default_all && only_exclusions);
    let selectors = Selector::parse_args(all, &selection.selectors).map_err(AppError::Select)?;
    let plans = fleet
        .select(&selectors)
        .map_err(AppError::Select)?
        .into_iter()
        .map(|host| {
            let mut plan = plan(&fleet, host);
            overrides.apply(&mut plan);
            plan
        })
        .collect::<Vec<_>>();
    crate::preflight::check(&plans, fleet.transfer.signing_key.as_deref())
        .map_err(AppError::File)?;
    Ok((fleet, plans))
}

/// The command line's settings for this run over fleet.toml's, given to every selected host as
/// its plan is made (`--accept-new` to every hop of its jump chain too), so that everything the
/// run does with a host, `apply --ask`'s plan included, sees the same settings.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Overrides {
    /// `--no-magic-rollback`.
    pub no_magic_rollback: bool,
    /// `--confirm-timeout` (seconds).
    pub confirm_timeout: Option<u64>,
    /// `--activation-timeout` (seconds).
    pub activation_timeout: Option<u64>,
    /// `--reboot-timeout` (seconds).
    pub reboot_timeout: Option<u64>,
    /// `--no-substitute`.
    pub no_substitute: bool,
    /// `--accept-new`.
    pub accept_new: bool,
    /// `--build-on-target` (`Some(true)`), or built here whatever fleet.toml says
    /// (`Some(false)`: `hbdeploy build`).
    pub build_on_target: Option<bool>,
}

impl Overrides {
    fn apply(&self, plan: &mut HostPlan) {
        if self.no_magic_rollback {
            plan.safety.magic_rollback = false;
        }
        let secs = |value: Option<u64>| value.map(std::time::Duration::from_secs);
        if let Some(limit) = secs(self.confirm_timeout) {
            plan.safety.confirm_timeout = limit;
        }
        if let Some(limit) = secs(self.activation_timeout) {
            plan.safety.activation_timeout = limit;
        }
        if let Some(limit) = secs(self.reboot_timeout) {
            plan.safety.reboot_timeout = limit;
        }
        if self.no_substitute {
            plan.transfer.substitute = false;
        }
        if self.accept_new {
            plan.target.set_accept_new(true);
        }
        if let Some(on_target) = self.build_on_target {
            plan.transfer.build_on_target = on_target;
        }
    }
}

/// A checked reboot waits for the host to come back; the machine hbdeploy runs on cannot be
/// waited for by the hbdeploy it reboots, so it is refused before anything is changed.
pub(crate) fn refuse_local_reboot(hosts: &[HostPlan]) -> Result<(), AppError> {
    let Some(host) = hosts.iter().find(|h| h.target.is_local()) else {
        return Ok(());
    };
    Err(AppError::Usage(
        format!(
            "cannot reboot {}: it is the machine hbdeploy runs on (address = \"local\"), which \
             hbdeploy cannot wait for to come back; nothing was changed",
            host.name
        ),
        Some(format!(
            "leave it out ('!{}') and reboot it yourself (systemctl reboot), after apply --goal \
             boot if you want the new system to start then",
            host.name
        )),
    ))
}

/// `--parallel` when given, else the fleet's setting.
pub(crate) fn parallel(fleet: &Fleet, flag: Option<u16>) -> NonZeroUsize {
    flag.and_then(|n| NonZeroUsize::new(n.into()))
        .unwrap_or(fleet.parallel)
}

/// Finds nix, or says how to install it.
pub(crate) async fn nix() -> Result<Nix, AppError> {
    Nix::detect()
        .await
        .map_err(|err| AppError::Pipeline(err.into()))
}

/// The evaluation limits: the flags, else fleet.toml, else the machine's.
pub(crate) fn eval_limits(
    fleet: &Fleet,
    flags: &crate::cli::EvalArgs,
) -> hbdeploy_pipeline::EvalLimits {
    let workers = flags
        .eval_workers
        .and_then(|n| NonZeroUsize::new(n.into()))
        .or(fleet.eval.workers);
    let mut limits =
        hbdeploy_pipeline::EvalLimits::detect(workers, flags.eval_memory.or(fleet.eval.memory));
    limits.chunk = flags.eval_chunk.and_then(|n| NonZeroUsize::new(n.into()));
    limits
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    const KEY: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGj113EX/f11MrfEDFtM7/0p6RG4OjNxS2B3SgOaqfB4";

    fn fleet(hosts: &str) -> Fleet {
        let text = format!(
            "[fleet]\nflake = \".\"\n[ssh]\nuser = \"deploy\"\nidentity-file = \"/k/id\"\n\
             known-hosts = \"/k/known\"\nconnect-timeout = 7\n{hosts}"
        );
        Fleet::parse(&text, Path::new("/f/fleet.toml"), None).expect("valid fleet")
    }

    #[test]
    fn a_jump_host_has_the_hosts_ssh_settings_but_not_its_keys_or_sudo() {
        let fleet = fleet(&format!(
            "[hosts.web]\naddress = \"10.0.0.5\"\nhost-key = \"{KEY}\"\n\
             proxy-jump = \"hop@bastion:2200\"\n"
        ));
        let host = fleet.host("web").expect("web");
        let web = plan(&fleet, host).target;
        assert_eq!(web.display(), "deploy@10.0.0.5:22");
        assert_eq!(web.pinned_keys, [KEY]);
        assert!(web.escalation.is_some());
        let Some(jump) = web.jump.as_deref() else {
            panic!("no jump host");
        };
        assert_eq!(jump.display(), "hop@bastion:2200");
        assert_eq!(jump.identity_file.as_deref(), Some(Path::new("/k/id")));
        assert_eq!(jump.known_hosts, Path::new("/k/known"));
        assert_eq!(jump.connect_timeout, std::time::Duration::from_secs(7));
        assert!(jump.pinned_keys.is_empty() && jump.escalation.is_none() && jump.jump.is_none());
    }

    #[test]
    fn the_machine_hbdeploy_runs_on_is_reached_as_the_user_it_runs_as() {
        assert_eq!(
            hbdeploy_inventory::LOCAL_ADDRESS,
            hbdeploy_ssh::LOCAL_ADDRESS
        );
        let fleet = fleet("[hosts.desk]\naddress = \"local\"\n");
        let desk = plan(&fleet, fleet.host("desk").expect("desk")).target;
        assert!(desk.is_local());
        assert_eq!(desk.user, hbdeploy_ssh::local_user());
        assert_ne!(
            desk.user, "deploy",
            "fleet.toml's SSH login is not this machine's user"
        );
        assert!(desk.escalation.is_some() && desk.jump.is_none());
    }

    #[test]
    fn a_jump_host_in_the_fleet_is_reached_as_the_fleet_says() {
        let fleet = fleet(
            "[hosts.bastion]\naddress = \"b.example.org\"\nuser = \"hop\"\nport = 2222\n\
             [hosts.web]\naddress = \"10.0.0.5\"\nproxy-jump = \"bastion\"\n",
        );
        let web = plan(&fleet, fleet.host("web").expect("web")).target;
        let jump = web.jump.as_deref().expect("jump");
        assert_eq!(jump.display(), "hop@b.example.org:2222");
    }

    #[test]
    fn the_command_lines_settings_reach_every_host_and_every_hop_of_its_jump_chain() {
        let fleet = fleet(
            "[hosts.web]\naddress = \"10.0.0.5\"\nproxy-jump = \"hop@bastion:2200\"\n\
             [hosts.db]\naddress = \"10.0.0.6\"\n",
        );
        let overrides = Overrides {
            no_magic_rollback: true,
            confirm_timeout: Some(7),
            activation_timeout: Some(40),
            reboot_timeout: Some(90),
            no_substitute: true,
            accept_new: true,
            build_on_target: Some(true),
        };
        for name in ["web", "db"] {
            let mut plan = plan(&fleet, fleet.host(name).expect("host"));
            overrides.apply(&mut plan);
            assert!(
                !plan.safety.magic_rollback && !plan.transfer.substitute,
                "{name}"
            );
            assert_eq!(
                (
                    plan.safety.confirm_timeout.as_secs(),
                    plan.safety.activation_timeout.as_secs(),
                    plan.safety.reboot_timeout.as_secs()
                ),
                (7, 40, 90),
                "{name}"
            );
            assert!(plan.transfer.build_on_target, "{name}");
            let mut hop = Some(&plan.target);
            while let Some(target) = hop {
                assert!(target.accept_new, "{name}: {}", target.display());
                hop = target.jump.as_deref();
            }
        }
        let mut untouched = plan(&fleet, fleet.host("web").expect("web"));
        Overrides::default().apply(&mut untouched);
        assert_eq!(untouched, plan(&fleet, fleet.host("web").expect("web")));
    }
}
