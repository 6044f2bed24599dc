//! A lab of simulated NixOS hosts on the local machine, for hbdeploy's integration tests,
//! benchmarks and demo.
//!
//! Every host has its own nix store (its own `/nix` in a private mount namespace), its own sshd
//! on its own loopback address, and root login by key. The lab's flake builds toy NixOS systems
//! with real nix and no nixpkgs. A lab claims its own address range and state directory, so labs
//! in parallel tests never see each other's hosts, and [`Drop`] stops every process it started,
//! by PID, also when a test panics. A host can also pose as a machine booted into the NixOS
//! installer, with stand-in disks and `nixos-install`, for `hbdeploy install`.
//!
//! A host is either kind of [`HostKind`]: a namespace with bash as its first process (fast), or
//! a container with systemd as PID 1 (`systemd-nspawn --boot`), like a real NixOS host's
//! process tree; one lab can hold both. The methods of [`Lab`] and [`LabHost`] work on both.
//!
//! A test can also run a program inside a host, as its root or as a lab user ([`Lab::inside`],
//! [`LabHost::inside`]): hbdeploy deploying the very host it runs on, with that host's nix and
//! store, its sudo and (on a systemd host) its systemd.
//!
//! Requires root, util-linux (`unshare`, `nsenter`, `script`), `nix-bin` and `openssh-server`;
//! systemd hosts also `systemd-container` and `debootstrap` (and, once per machine, the Debian
//! archive: see `systemd/root.rs`).

pub mod bench;
mod evalcost;
mod files;
mod flake;
mod host;
mod inside;
mod inspect;
mod installer;
mod keys;
mod kind;
mod process;
mod run;
mod slot;
mod systemd;
mod terminal;
mod users;

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;

pub use evalcost::{eval_cost, hashes_per_cpu_second};
pub use flake::{Activation, Buildability, Disko, Evaluation, HOST_STATE, SystemSpec};
pub use host::{HostKind, LabHost};
pub use inside::{INSIDE_PATH, Inside, user_home};
pub use installer::Medium;
pub use process::children;
pub use run::{Run, finish, hbdeploy};
pub use systemd::faults::BootFault;
pub use terminal::hbdeploy_on_a_terminal;

/// The port every lab sshd listens on (each on its own address).
pub const SSH_PORT: u16 = 2222;

/// Everything that can go wrong while running the lab.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// A file or process operation failed.
    #[error("lab: cannot {what}")]
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A helper program exited non-zero.
    #[error("lab: {what} failed ({status}): {stderr}")]
    Command {
        /// Which program.
        what: String,
        /// Its exit status.
        status: String,
        /// Its stderr.
        stderr: String,
    },
    /// A host did not come up.
    #[error("lab: host {host} did not start: {detail}")]
    Startup {
        /// The host.
        host: String,
        /// What was missing.
        detail: String,
    },
    /// Every address slot is in use.
    #[error("lab: all {} address slots are in use", slot::SLOTS)]
    NoFreeSlot,
    /// A host name that is not in the lab.
    #[error("lab: no host named {0}")]
    NoSuchHost(String),
    /// A user that was not added to the host (see [`Lab::add_user`]).
    #[error("lab: host {host} has no lab user {user} (add it with Lab::add_user)")]
    NoSuchUser {
        /// The host.
        host: String,
        /// The user.
        user: String,
    },
}

/// A login user added to every host of a lab (see [`Lab::add_user`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabUser {
    /// The login name.
    pub name: String,
    /// What sudo lets it do.
    pub sudo: Sudo,
    /// Whether the hosts' nix trusts it (`trusted-users`).
    pub trusted: bool,
}

/// A lab user's sudo rights.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sudo {
    /// None at all.
    None,
    /// Any command as root, without a password (`NOPASSWD`).
    Passwordless,
    /// Any command as root, after this password.
    Password(String),
}

/// A running lab.
#[derive(Debug)]
pub struct Lab {
    slot: slot::Slot,
    hosts: BTreeMap<String, LabHost>,
    systems: BTreeMap<String, SystemSpec>,
    known_hosts: PathBuf,
    identity: PathBuf,
}

/// The value of `NIX_CONFIG` that the deployer should run with in the lab: flakes on, and no
/// binary caches (none can be reached; each would cost a timeout per build).
pub const NIX_CONFIG: &str = "experimental-features = nix-command flakes\nsubstituters =\n";

impl Lab {
    /// Starts a lab with one namespace host per name, each with the default toy system in the
    /// flake.
    pub fn start(names: &[&str]) -> Result<Lab, LabError> {
        let hosts: Vec<(&str, HostKind)> =
            names.iter().map(|n| (*n, HostKind::Namespace)).collect();
        Lab::start_hosts(&hosts)
    }

    /// Starts a lab with one systemd host per name (see [`HostKind::Systemd`]). The first lab on
    /// a machine makes the hosts' base root first, which takes a minute or two.
    pub fn start_systemd(names: &[&str]) -> Result<Lab, LabError> {
        let hosts: Vec<(&str, HostKind)> = names.iter().map(|n| (*n, HostKind::Systemd)).collect();
        Lab::start_hosts(&hosts)
    }

    /// Starts a lab with these hosts, each of its kind, each with the default toy system.
    pub fn start_hosts(hosts: &[(&str, HostKind)]) -> Result<Lab, LabError> {
        let base = if hosts.iter().any(|(_, kind)| *kind == HostKind::Systemd) {
            systemd::inotify::raise();
            Some(systemd::base_root()?)
        } else {
            None
        };
        let slot = slot::Slot::claim(systemd::clean_slot)?;
        let dir = slot.dir.clone();
        let identity = dir.join("id_ed25519");
        files::run(
            Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-C", "hbdeploy-lab", "-f"])
                .arg(&identity),
            "ssh-keygen (deployer key)",
        )?;
        let pubkey = std::fs::read_to_string(identity.with_extension("pub")).map_err(|source| {
            LabError::Io {
                what: "read the deployer's public key".to_owned(),
                source,
            }
        })?;
        let mut lab = Lab {
            known_hosts: dir.join("known_hosts"),
            identity,
            slot,
            hosts: BTreeMap::new(),
            systems: BTreeMap::new(),
        };
        let mut known_hosts = String::new();
        for (index, (name, kind)) in hosts.iter().enumerate() {
            let address = lab.address(index);
            let host_dir = dir.join("hosts").join(name);
            let (host, key) = match (kind, &base) {
                (HostKind::Systemd, Some(base)) => {
                    systemd::start(name, address, SSH_PORT, host_dir, &pubkey, &lab.slot, base)?
                }
                _ => {
                    let (host, key) = LabHost::start(name, address, SSH_PORT, host_dir, &pubkey)?;
                    lab.slot.record_pid(host.holder_pid())?;
                    (host, key)
                }
            };
            lab.hosts.insert((*name).to_owned(), host);
            lab.systems
                .insert((*name).to_owned(), SystemSpec::default());
            let key = key.split_whitespace().take(2).collect::<Vec<_>>().join(" ");
            known_hosts.push_str(&format!("[{address}]:{SSH_PORT} {key}\n"));
        }
        files::write(&lab.known_hosts, &known_hosts)?;
        lab.write_flake()?;
        Ok(lab)
    }

    /// Adds `user` to every host, with the deployer's key in its authorized_keys.
    pub fn add_user(&mut self, user: &LabUser) -> Result<(), LabError> {
        let pubkey =
            std::fs::read_to_string(self.identity.with_extension("pub")).map_err(|source| {
                LabError::Io {
                    what: "read the deployer's public key".to_owned(),
                    source,
                }
            })?;
        for host in self.hosts.values_mut() {
            host.add_user(user, &pubkey)?;
        }
        Ok(())
    }

    /// The address of the `index`-th host: 127.77.<slot>.(11 + index).
    fn address(&self, index: usize) -> Ipv4Addr {
        let last = u8::try_from(11 + index).unwrap_or(u8::MAX);
        Ipv4Addr::new(127, 77, self.slot.number as u8, last)
    }

    /// An address in this lab's range where nothing listens, for unreachable-host tests.
    pub fn dead_address(&self) -> Ipv4Addr {
        Ipv4Addr::new(127, 77, self.slot.number as u8, 254)
    }

    /// The lab's state directory.
    pub fn dir(&self) -> &Path {
        &self.slot.dir
    }

    /// The deployer's private key, authorised on every host.
    pub fn identity_file(&self) -> &Path {
        &self.identity
    }

    /// The known_hosts file holding every host's key.
    pub fn known_hosts(&self) -> &Path {
        &self.known_hosts
    }

    /// The flake reference of the lab's toy systems (a `path:` flake: no git involved).
    pub fn flake_ref(&self) -> String {
        format!("path:{}", self.slot.dir.join("flake").display())
    }

    /// A host of the lab.
    pub fn host(&self, name: &str) -> Result<&LabHost, LabError> {
        self.hosts
            .get(name)
            .ok_or_else(|| LabError::NoSuchHost(name.to_owned()))
    }

    /// A host of the lab, to stop or restart its sshd.
    pub fn host_mut(&mut self, name: &str) -> Result<&mut LabHost, LabError> {
        self.hosts
            .get_mut(name)
            .ok_or_else(|| LabError::NoSuchHost(name.to_owned()))
    }

    /// The hosts, by name.
    pub fn hosts(&self) -> impl Iterator<Item = &LabHost> {
        self.hosts.values()
    }

    /// The toy system `host` will get from the flake.
    pub fn system(&self, host: &str) -> Result<&SystemSpec, LabError> {
        self.systems
            .get(host)
            .ok_or_else(|| LabError::NoSuchHost(host.to_owned()))
    }

    /// Changes `host`'s toy system (e.g. a new generation, or a failure mode) and rewrites the
    /// flake. A name that is no lab host adds a configuration without a host.
    pub fn set_system(&mut self, host: &str, spec: SystemSpec) -> Result<(), LabError> {
        self.systems.insert(host.to_owned(), spec);
        self.write_flake()
    }

    /// Sets the toy systems of several hosts at once, rewriting the flake once.
    pub fn set_systems<'a>(
        &mut self,
        specs: impl IntoIterator<Item = (&'a str, SystemSpec)>,
    ) -> Result<(), LabError> {
        for (host, spec) in specs {
            self.systems.insert(host.to_owned(), spec);
        }
        self.write_flake()
    }

    /// Gives every host a new generation of its system.
    pub fn bump_all(&mut self) -> Result<(), LabError> {
        for spec in self.systems.values_mut() {
            spec.generation += 1;
        }
        self.write_flake()
    }

    /// Lets the evaluations waiting with [`Evaluation::UntilReleased`] `token` go on.
    pub fn release_evaluations(&self, token: u64) -> Result<(), LabError> {
        let go = self
            .slot
            .dir
            .join(flake::EVAL_BARRIER_DIR)
            .join(format!("{token}-released"));
        files::write(&go, "")
    }

    fn write_flake(&self) -> Result<(), LabError> {
        let dir = self.slot.dir.join("flake");
        files::mkdir(&dir)?;
        files::mkdir(&self.slot.dir.join("barrier"))?;
        let meeting = self.slot.dir.join(flake::EVAL_BARRIER_DIR);
        files::mkdir(&meeting)?;
        // Builds run as nixbld users: each must be able to leave its mark here.
        std::fs::set_permissions(
            &meeting,
            std::os::unix::fs::PermissionsExt::from_mode(0o1777),
        )
        .map_err(|source| LabError::Io {
            what: format!("make {} writable for builds", meeting.display()),
            source,
        })?;
        let system = format!("{}-linux", std::env::consts::ARCH);
        files::write(
            &dir.join("flake.nix"),
            &flake::flake_text(
                &system,
                &self.systems,
                &self.slot.dir.to_string_lossy(),
                &self.systemd_hosts(),
            ),
        )
    }

    /// The names of the lab's systemd hosts, whose toy systems restart sshd as a unit.
    fn systemd_hosts(&self) -> BTreeSet<String> {
        self.hosts
            .values()
            .filter(|host| host.kind() == HostKind::Systemd)
            .map(|host| host.name.clone())
            .collect()
    }

    /// Lets activations waiting at [`Activation::Gate`] go on.
    pub fn open_gate(&self) -> Result<(), LabError> {
        files::write(&self.slot.dir.join("gate"), "")
    }

    /// A fleet.toml for this lab: every host with its address, the lab's key and known_hosts,
    /// and `tags` per host where given. `extra` is appended verbatim (more hosts, overrides).
    pub fn fleet_toml(&self, tags: &[(&str, &[&str])], extra: &str) -> String {
        let mut text = format!(
            "[fleet]\nflake = \"{}\"\nparallel = 10\n\n[ssh]\nuser = \"root\"\nport = {SSH_PORT}\n\
             identity-file = \"{}\"\nknown-hosts = \"{}\"\nconnect-timeout = 5\n",
            self.flake_ref(),
            self.identity.display(),
            self.known_hosts.display()
        );
        for host in self.hosts.values() {
            text.push_str(&format!(
                "\n[hosts.{}]\naddress = \"{}\"\n",
                host.name, host.address
            ));
            if let Some((_, host_tags)) = tags.iter().find(|(name, _)| *name == host.name) {
                let quoted: Vec<String> = host_tags.iter().map(|t| format!("\"{t}\"")).collect();
                text.push_str(&format!("tags = [{}]\n", quoted.join(", ")));
            }
        }
        text.push_str(extra);
        text
    }

    /// Writes [`Lab::fleet_toml`] into the lab directory and returns its path.
    pub fn write_fleet(&self, tags: &[(&str, &[&str])], extra: &str) -> Result<PathBuf, LabError> {
        let path = self.slot.dir.join("fleet.toml");
        files::write(&path, &self.fleet_toml(tags, extra))?;
        Ok(path)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for host in self.hosts.values_mut() {
            host.stop();
        }
        let _ = std::fs::remove_dir_all(&self.slot.dir);
    }
}
