//! What a lab host looks like from the inside, for assertions: its running and profile systems,
//! store, activations and logins, the same for both kinds of host; and a reboot.

use crate::files::HOST_STATE;
use crate::host::HostKind;
use crate::{LabError, LabHost, SSH_PORT};

impl LabHost {
    /// The target of `/run/current-system`, if any.
    pub fn current_system(&self) -> Result<Option<String>, LabError> {
        self.link("/run/current-system")
    }

    /// The store path the system profile points at, if any.
    pub fn profile_system(&self) -> Result<Option<String>, LabError> {
        self.link("/nix/var/nix/profiles/system")
    }

    /// The boot default (set by `switch` and `boot`), if any.
    pub fn boot_default(&self) -> Result<Option<String>, LabError> {
        self.link(&format!("{HOST_STATE}/boot-default"))
    }

    fn link(&self, path: &str) -> Result<Option<String>, LabError> {
        let out = self.sh(&format!("readlink -f {path} 2>/dev/null || true"))?;
        let out = out.trim();
        Ok((!out.is_empty() && out != path).then(|| out.to_owned()))
    }

    /// Whether `path` is a valid path in this host's own nix store.
    pub fn has_store_path(&self, path: &str) -> Result<bool, LabError> {
        let out = self.sh(&format!(
            "nix-store --check-validity --print-invalid {path} 2>/dev/null || echo invalid"
        ))?;
        Ok(out.trim().is_empty())
    }

    /// The names of the entries of this host's `/nix/store`.
    pub fn store_entries(&self) -> Result<Vec<String>, LabError> {
        let out = self.sh("ls /nix/store 2>/dev/null || true")?;
        Ok(out.lines().map(str::to_owned).collect())
    }

    /// Every activation the toy systems recorded, oldest first: `<goal> <store path>`.
    pub fn activations(&self) -> Result<Vec<String>, LabError> {
        let log = self.dir.join("state/activations.log");
        Ok(std::fs::read_to_string(log)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect())
    }

    /// The system profile's generations as `nix-env --list-generations` prints them.
    pub fn generations(&self) -> Result<String, LabError> {
        self.sh("nix-env -p /nix/var/nix/profiles/system --list-generations 2>/dev/null || true")
    }

    /// Appends settings to this host's own `/etc/nix/nix.conf` (e.g. `require-sigs = true`);
    /// every later `nix` on the host reads them.
    pub fn append_nix_conf(&self, text: &str) -> Result<(), LabError> {
        use std::io::Write;
        let path = self.dir.join("etc-nix/nix.conf");
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(|source| LabError::Io {
                what: format!("open {}", path.display()),
                source,
            })?;
        writeln!(file, "{text}").map_err(|source| LabError::Io {
            what: format!("write {}", path.display()),
            source,
        })
    }

    /// Reboots the host: the boot default becomes both the booted and the running system. A
    /// namespace host simulates it (its processes go on); a systemd host really reboots (every
    /// process and `/run` start afresh, its disk stays) and this returns once sshd is back.
    pub fn reboot(&self) -> Result<(), LabError> {
        if self.kind == HostKind::Systemd {
            return crate::systemd::reboot(self, SSH_PORT);
        }
        self.sh(&format!(
            "set -e; next=$(readlink -f {HOST_STATE}/boot-default); \
             ln -sfn \"$next\" /run/booted-system; ln -sfn \"$next\" /run/current-system"
        ))
        .map(|_| ())
    }

    /// Makes `fault` happen at every later boot of this host, until [`LabHost::clear_boot_faults`];
    /// for systemd hosts only (a namespace host does not really boot).
    pub fn set_boot_fault(&self, fault: crate::BootFault) -> Result<(), LabError> {
        if self.kind != HostKind::Systemd {
            return Err(LabError::Startup {
                host: self.name.clone(),
                detail: "boot faults need a systemd host (Lab::start_systemd)".to_owned(),
            });
        }
        crate::systemd::faults::set(self, fault)
    }

    /// Boots this (systemd) host normally again from its next boot on.
    pub fn clear_boot_faults(&self) -> Result<(), LabError> {
        crate::systemd::faults::clear(self)
    }

    /// The id of the boot the host is in (`/proc/sys/kernel/random/boot_id`; a namespace host
    /// shares the machine's).
    pub fn boot_id(&self) -> Result<String, LabError> {
        Ok(self
            .sh("cat /proc/sys/kernel/random/boot_id")?
            .trim()
            .to_owned())
    }

    /// How many commands (SSH sessions: exec channels) this host's sshd started; a login that
    /// ran nothing has none.
    pub fn sessions_started(&self) -> usize {
        self.sshd_log_lines("Starting session:")
    }

    /// How many SSH logins this host's sshd accepted.
    pub fn accepted_logins(&self) -> usize {
        self.sshd_log_lines("Accepted publickey")
    }

    /// How many lines of this host's sshd log hold `text`.
    fn sshd_log_lines(&self, text: &str) -> usize {
        std::fs::read_to_string(self.dir.join("state/sshd.log"))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(text))
            .count()
    }

    /// The processes the lab started for this host, by PID in this machine's namespace: the
    /// holder and the namespace's first process, or for a systemd host the holder,
    /// systemd-nspawn and the container's init. For tests that check they are gone after a drop.
    pub fn pids(&self) -> Vec<u32> {
        let holder = self.holder.id();
        match self.kind {
            HostKind::Namespace => vec![holder, self.ns_pid],
            HostKind::Systemd => std::iter::once(holder)
                .chain(crate::systemd::children(holder).into_iter().take(1))
                .chain(crate::systemd::init_pid(self))
                .collect(),
        }
    }
}
