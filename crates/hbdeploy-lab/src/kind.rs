//! What differs between the two kinds of lab host: entering it, its sshd and stopping it, done
//! here for a namespace host and by `systemd/` for a host with systemd as PID 1.

use std::process::{Command, Stdio};

use crate::LabError;
use crate::files::{HOST_STATE, io};
use crate::host::{HostKind, LabHost, STARTUP, wait_for_port};

impl LabHost {
    /// A command that runs `argv` inside this host's namespaces.
    pub(crate) fn nsenter(&self) -> Command {
        if self.kind == HostKind::Systemd {
            return crate::systemd::nsenter(self);
        }
        let mut command = Command::new("nsenter");
        command
            .args(["-t", &self.ns_pid.to_string(), "-m", "-u", "-p", "--"])
            .stdin(Stdio::null());
        command
    }

    /// Starts (or restarts) the host's sshd and waits until it accepts connections.
    pub fn start_sshd(&mut self, port: u16) -> Result<(), LabError> {
        if self.kind == HostKind::Systemd {
            return crate::systemd::start_sshd(self, port);
        }
        self.stop_sshd();
        let config = self.dir.join("state/sshd_config");
        let child = self
            .nsenter()
            .arg("/usr/sbin/sshd")
            .arg("-D")
            .arg("-f")
            .arg(&config)
            .arg("-E")
            .arg(format!("{HOST_STATE}/sshd.log"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(io(format!("start sshd of {}", self.name)))?;
        self.sshd = Some(child);
        wait_for_port(self, port, STARTUP)
    }

    /// The PID (in this machine's PID namespace) of the sshd listener the lab started, to stop
    /// or freeze it by PID.
    pub fn sshd_pid(&self) -> Option<u32> {
        if self.kind == HostKind::Systemd {
            return crate::systemd::sshd_pid(self);
        }
        let nsenter = self.sshd.as_ref()?.id();
        std::fs::read_to_string(format!("/proc/{nsenter}/task/{nsenter}/children"))
            .ok()?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    }

    /// Stops the host's sshd listener (its PID is the `nsenter` child's only child), so the host
    /// becomes unreachable. Sessions already open are not affected.
    pub fn stop_sshd(&mut self) {
        if self.kind == HostKind::Systemd {
            return crate::systemd::stop_sshd(self);
        }
        if let Some(mut nsenter) = self.sshd.take() {
            let pid = nsenter.id();
            let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
                .unwrap_or_default();
            for child in children.split_whitespace() {
                let _ = Command::new("kill").args(["-TERM", child]).status();
            }
            let _ = nsenter.wait();
        }
    }

    /// Stops the whole host: every process in its namespace dies with the holder.
    pub(crate) fn stop(&mut self) {
        if self.kind == HostKind::Systemd {
            return crate::systemd::stop(self);
        }
        // The listener (nsenter's child), found before anything is killed.
        let listener = self.sshd_pid();
        let _ = self.holder.kill();
        let _ = self.holder.wait();
        if let Some(mut daemon) = self.daemon.take() {
            let _ = daemon.kill();
            let _ = daemon.wait();
        }
        if let Some(mut nsenter) = self.sshd.take() {
            // nsenter stops itself when its child is stopped (a test may freeze sshd): kill it
            // rather than wait for it.
            let _ = nsenter.kill();
            let _ = nsenter.wait();
        }
        // The kernel kills the rest of the host's PID namespace, sshd with it, after the waits
        // above have returned. Until sshd has exited its socket still listens, and the next lab
        // given this slot would reach it instead of its own (a handshake reset by the dying
        // listener): wait for it, bounded.
        if let Some(pid) = listener {
            crate::process::wait_gone(pid, STARTUP);
        }
    }
}
