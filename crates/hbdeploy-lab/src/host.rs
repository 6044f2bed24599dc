//! One simulated host: a private mount, UTS and PID namespace kept alive by a holder process,
//! with its own `/nix`, `/etc/nix`, `/root`, state directory and `/run`, and its own `sshd` on its
//! own loopback address.
//!
//! The holder is `unshare --kill-child … bash`: killing the `unshare` process (by its PID) kills
//! the namespace's first process, and with it every process in the namespace (sshd, sessions,
//! hung activations). bash, as that first process, reaps the orphans sshd leaves behind.
//!
//! A host of [`HostKind::Systemd`] is the same `LabHost` with another inside (see `systemd/`):
//! the methods below hand over to that module where the two kinds differ.

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::LabError;
use crate::files::{HOST_STATE, io, mkdir, run, write};

/// How long a host may take to come up before the lab gives up.
pub(crate) const STARTUP: Duration = Duration::from_secs(20);

/// What runs a lab host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HostKind {
    /// A private mount, UTS and PID namespace with bash as its first process and sshd started
    /// into it: fast (milliseconds), but no systemd.
    #[default]
    Namespace,
    /// A container booted by `systemd-nspawn --boot` from a cached Debian root, with systemd as
    /// PID 1, dbus, its own nix store and its own sshd (a unit): like a real NixOS host's
    /// process tree, at the cost of a boot (a second or two; the first root takes minutes).
    Systemd,
}

/// A running simulated host.
#[derive(Debug)]
pub struct LabHost {
    /// Its name (also its hostname inside the namespace).
    pub name: String,
    /// Its loopback address.
    pub address: Ipv4Addr,
    /// The host's directory on the outside: `nix/`, `etc-nix/`, `root/`, `state/`.
    pub dir: PathBuf,
    pub(crate) kind: HostKind,
    pub(crate) holder: Child,
    pub(crate) ns_pid: u32,
    pub(crate) sshd: Option<Child>,
    pub(crate) daemon: Option<Child>,
    /// The lab users added to it ([`crate::Lab::add_user`]), by name.
    pub(crate) users: Vec<String>,
}

const SSHD_CONFIG: &str = "\
ListenAddress @listen@
HostKey /var/lib/hbdeploy-lab/ssh_host_ed25519_key
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PidFile /run/sshd.pid
AuthorizedKeysFile .ssh/authorized_keys
MaxStartups 100:30:200
MaxSessions 20
LogLevel VERBOSE
";

/// The account files each host has its own copy of (those that exist on this machine).
const ACCOUNT_FILES: [&str; 4] = ["passwd", "group", "shadow", "sudoers"];

/// The nix.conf of every lab host: no binary caches (none can be reached), flakes on, and builds
/// as root rather than as the machine's shared `nixbld` users: every lab host's nix has its own
/// user pool lock, and a nix that finishes a build kills every process of its build user, which
/// would kill another store's build running as the same user.
const HOST_NIX_CONF: &str = "\
experimental-features = nix-command flakes
substituters =
sandbox = false
build-users-group =
";

/// Waits until `host` accepts TCP connections on `port`, for at most `limit`.
pub(crate) fn wait_for_port(host: &LabHost, port: u16, limit: Duration) -> Result<(), LabError> {
    let addr = SocketAddr::from((host.address, port));
    let deadline = Instant::now() + limit;
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        if Instant::now() > deadline {
            return Err(LabError::Startup {
                host: host.name.clone(),
                detail: format!("sshd does not listen on {addr}"),
            });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// Whether a host's sshd runs logins through PAM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pam {
    /// Not on namespace hosts: there is no logind to open a session with.
    Off,
    /// On systemd hosts: logins get a logind session, as on NixOS.
    On,
}

/// Writes what every kind of host has in its directory — its nix.conf (`etc-nix/`), the
/// deployer's key in root's authorized_keys, a new host key and its sshd_config (`state/`) —
/// and returns the host's public key.
pub(crate) fn write_host_files(
    dir: &Path,
    name: &str,
    listen: SocketAddr,
    client_pubkey: &str,
    pam: Pam,
) -> Result<String, LabError> {
    write(&dir.join("etc-nix/nix.conf"), HOST_NIX_CONF)?;
    write(&dir.join("root/.ssh/authorized_keys"), client_pubkey)?;
    let key = dir.join("state/ssh_host_ed25519_key");
    run(
        Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
            .arg(&key),
        "ssh-keygen (host key)",
    )?;
    let host_key = std::fs::read_to_string(key.with_extension("pub"))
        .map_err(io(format!("read {}.pub", key.display())))?;
    let mut config = SSHD_CONFIG.replace("@listen@", &listen.to_string());
    if pam == Pam::On {
        config = config.replace("UsePAM no", "UsePAM yes");
    }
    write(&dir.join("state/sshd_config"), &config)?;
    Ok(host_key)
}

impl LabHost {
    /// Lays out the host's directories, starts its namespace and its sshd.
    pub(crate) fn start(
        name: &str,
        address: Ipv4Addr,
        port: u16,
        dir: PathBuf,
        client_pubkey: &str,
    ) -> Result<(LabHost, String), LabError> {
        for sub in ["nix", "etc-nix", "root/.ssh", "state", "etc"] {
            mkdir(&dir.join(sub))?;
        }
        // Private copies of the account files, so that a test can add users to one host.
        let mut accounts = String::new();
        for file in ACCOUNT_FILES {
            let real = Path::new("/etc").join(file);
            if real.exists() {
                let own = dir.join("etc").join(file);
                std::fs::copy(&real, &own).map_err(io(format!("copy {}", real.display())))?;
                accounts.push_str(&format!(
                    "mount --bind {} {}; ",
                    own.display(),
                    real.display()
                ));
            }
        }
        write(
            &dir.join("etc/hosts"),
            &format!("127.0.0.1 localhost\n{address} {name}\n"),
        )?;
        accounts.push_str(&format!(
            "mount --bind {}/etc/hosts /etc/hosts; ",
            dir.display()
        ));
        let host_key = write_host_files(
            &dir,
            name,
            SocketAddr::from((address, port)),
            client_pubkey,
            Pam::Off,
        )?;
        // /var/lib/hbdeploy-lab must exist on the real root to serve as a mount point.
        mkdir(Path::new(HOST_STATE))?;

        let d = dir.display();
        let script = format!(
            "set -e; mount --bind {d}/nix /nix; mount --bind {d}/etc-nix /etc/nix; \
             mount --bind {d}/root /root; mount --bind {d}/state {HOST_STATE}; {accounts}\
             mount -t tmpfs -o mode=755 tmpfs /run; mkdir -p /run/sshd; hostname {name}; \
             touch {HOST_STATE}/ready; while :; do sleep 3600; done"
        );
        let holder = Command::new("unshare")
            .args([
                "--mount",
                "--uts",
                "--pid",
                "--fork",
                "--kill-child",
                "--propagation",
                "private",
                "--",
                "/bin/bash",
                "-c",
                &script,
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(io("start unshare (util-linux)".to_owned()))?;
        let mut host = LabHost {
            name: name.to_owned(),
            address,
            dir,
            kind: HostKind::Namespace,
            ns_pid: 0,
            holder,
            sshd: None,
            daemon: None,
            users: Vec::new(),
        };
        host.ns_pid = host.wait_for_namespace()?;
        host.start_sshd(port)?;
        Ok((host, host_key))
    }

    /// The PID of the holder, for the slot's record of what to stop.
    pub(crate) fn holder_pid(&self) -> u32 {
        self.holder.id()
    }

    /// What runs this host.
    pub fn kind(&self) -> HostKind {
        self.kind
    }

    fn wait_for_namespace(&mut self) -> Result<u32, LabError> {
        let ready = self.dir.join("state/ready");
        let deadline = Instant::now() + STARTUP;
        let holder = self.holder.id();
        loop {
            if let Ok(Some(status)) = self.holder.try_wait() {
                let mut stderr = String::new();
                if let Some(mut pipe) = self.holder.stderr.take() {
                    use std::io::Read;
                    let _ = pipe.read_to_string(&mut stderr);
                }
                return Err(LabError::Command {
                    what: format!("unshare for host {}", self.name),
                    status: status.to_string(),
                    stderr,
                });
            }
            let children =
                std::fs::read_to_string(format!("/proc/{holder}/task/{holder}/children"))
                    .unwrap_or_default();
            if let Some(pid) = children.split_whitespace().next()
                && ready.exists()
            {
                return pid.parse().map_err(|_| LabError::Startup {
                    host: self.name.clone(),
                    detail: format!("odd child pid {pid:?}"),
                });
            }
            if Instant::now() > deadline {
                return Err(LabError::Startup {
                    host: self.name.clone(),
                    detail: "the namespace did not come up".to_owned(),
                });
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Gives the host an OpenSSH host certificate: signs its host key with the CA private key
    /// `ca` (`ssh-keygen -s CA -h`) for `principals` (none: valid for any name) and `validity`
    /// (`-V`, e.g. `-1d:+1d`), makes sshd present it (`HostCertificate`) and restarts sshd on
    /// `port`. Signing again replaces the certificate.
    pub fn certify(
        &mut self,
        ca: &Path,
        principals: &[&str],
        validity: &str,
        port: u16,
    ) -> Result<(), LabError> {
        let mut sign = Command::new("ssh-keygen");
        sign.args(["-q", "-s"])
            .arg(ca)
            .args(["-h", "-I", &self.name, "-V", validity]);
        if !principals.is_empty() {
            sign.args(["-n", &principals.join(",")]);
        }
        run(
            sign.arg(self.dir.join("state/ssh_host_ed25519_key.pub")),
            "ssh-keygen (host certificate)",
        )?;
        let config = self.dir.join("state/sshd_config");
        let text =
            std::fs::read_to_string(&config).map_err(io(format!("read {}", config.display())))?;
        let line = format!("HostCertificate {HOST_STATE}/ssh_host_ed25519_key-cert.pub\n");
        if !text.contains(&line) {
            write(&config, &format!("{text}{line}"))?;
        }
        self.start_sshd(port)
    }

    /// Runs a shell command inside the host, as root, and returns its stdout.
    pub fn sh(&self, script: &str) -> Result<String, LabError> {
        run(
            self.nsenter().args(["/bin/sh", "-c", script]),
            &format!("`{script}` on lab host {}", self.name),
        )
    }
}
