//! Login users on lab hosts: an account, a home with the deployer's key, sudo rules, and the
//! host's nix-daemon, through which a user who is not root reaches the store.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::files::{io, run};
use crate::flake::HOST_STATE;
use crate::host::{HostKind, STARTUP};
use crate::{LabError, LabHost, LabUser, Sudo};

/// The uid and gid of every lab user.
pub(crate) const LAB_USER_ID: u32 = 1500;

impl LabHost {
    /// Adds a login user to this host: an account (uid 1500), a home with `pubkey` in its
    /// authorized_keys, the sudo rule, and — when nix should trust it — `trusted-users`. Starts
    /// the host's nix-daemon (once), which a user who is not root reaches the store through.
    pub(crate) fn add_user(&mut self, user: &LabUser, pubkey: &str) -> Result<(), LabError> {
        let name = &user.name;
        let home = format!("{HOST_STATE}/home/{name}");
        let shadow = match &user.sudo {
            Sudo::Password(password) => run(
                Command::new("openssl").args(["passwd", "-6", password]),
                "openssl passwd (lab user's password hash)",
            )?
            .trim()
            .to_owned(),
            _ => "*".to_owned(),
        };
        let rule = match user.sudo {
            Sudo::None => String::new(),
            Sudo::Passwordless => format!("{name} ALL=(ALL:ALL) NOPASSWD: ALL"),
            Sudo::Password(_) => format!("{name} ALL=(ALL:ALL) ALL"),
        };
        let trusted = if user.trusted {
            format!("echo 'trusted-users = root {name}' >> /etc/nix/nix.conf; ")
        } else {
            String::new()
        };
        // Debian's nix (the systemd hosts' root) lets only the group nix-users reach its daemon's
        // socket. /etc/group is rewritten in place, not renamed over: on a namespace host it is a
        // bind mount.
        let nix_users = format!(
            "if grep -q '^nix-users:' /etc/group; then \
             groups=$(awk -F: -v OFS=: '$1 == \"nix-users\" {{ $4 = ($4 == \"\" ? \"{name}\" : $4 \",{name}\") }} 1' /etc/group); \
             printf '%s\\n' \"$groups\" > /etc/group; fi"
        );
        self.sh(&format!(
            "set -e; echo '{name}:x:{id}:{id}::{home}:/bin/sh' >> /etc/passwd; \
             echo '{name}:x:{id}:' >> /etc/group; \
             echo '{name}:{shadow}:20000:0:99999:7:::' >> /etc/shadow; \
             if [ -n '{rule}' ]; then echo '{rule}' >> /etc/sudoers; fi; \
             mkdir -p {home}/.ssh; echo '{pubkey}' > {home}/.ssh/authorized_keys; \
             chown -R {id}:{id} {home}; chmod 700 {home}/.ssh; {trusted}\
             mkdir -p /nix/var/nix/profiles/per-user /nix/var/nix/gcroots/per-user; \
             chmod 1777 /nix/var/nix/profiles/per-user /nix/var/nix/gcroots/per-user; \
             {nix_users}",
            pubkey = pubkey.trim(),
            id = LAB_USER_ID,
        ))?;
        self.users.push(name.clone());
        self.start_daemon()
    }

    /// Starts the host's nix-daemon (once) and waits for its socket.
    fn start_daemon(&mut self) -> Result<(), LabError> {
        if self.kind == HostKind::Systemd {
            // nix-daemon.socket is enabled in the systemd hosts' root. A daemon already started
            // (by an earlier connection) read nix.conf before its trusted-users changed: it is
            // started again, so the lab user is trusted as nix.conf now says.
            return self
                .sh("systemctl start nix-daemon.socket && systemctl try-restart nix-daemon.service")
                .map(|_| ());
        }
        if self.daemon.is_some() {
            return Ok(());
        }
        let child = self
            .nsenter()
            .args(["nix-daemon", "--daemon"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(io(format!("start nix-daemon of {}", self.name)))?;
        self.daemon = Some(child);
        let socket = self.dir.join("nix/var/nix/daemon-socket/socket");
        let deadline = Instant::now() + STARTUP;
        while !socket.exists() {
            if Instant::now() > deadline {
                return Err(LabError::Startup {
                    host: self.name.clone(),
                    detail: "nix-daemon did not create its socket".to_owned(),
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }
}
