//! Lab hosts that run systemd as PID 1: containers booted by `systemd-nspawn --boot` from a
//! cached Debian root (see `root.rs`), each on an overlay of that root in its own directory.
//!
//! A host shares the machine's network; its sshd (the unit `hbdeploy-lab-sshd.service`) listens
//! on the host's own loopback address only. The lab binds the host's `state/` on
//! `/var/lib/hbdeploy-lab`, `etc-nix/` on `/etc/nix` and `root/` on `/root`, as the namespace
//! hosts do, so the same outside views (activations, sshd log, nix.conf) work for both kinds;
//! its nix store is its own, inside its overlay. The slot directory is bound at its own path
//! (without the mounts below it), for the toy systems' barrier and gate files.
//!
//! The holder is `sh`, which moves itself into the host's cgroups (`cgroup.rs`) and runs
//! `systemd-nspawn` in a loop, again when the container asks for a reboot (exit status 133), so
//! a host reboots like a machine and keeps its disk. The container's init is nspawn's child in
//! a PID namespace of its own; [`nsenter`] enters its namespaces. Stopping a host is by PID:
//! SIGTERM to nspawn, which SIGKILLs the container's init (`--kill-signal=SIGKILL`), and with it
//! every process in the container; then the holder exits, the overlay is unmounted and the
//! cgroups removed.

mod cgroup;
pub(crate) mod faults;
pub(crate) mod inotify;
mod root;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::files::{HOST_STATE, mkdir, run, write};
use crate::host::{HostKind, Pam, wait_for_port, write_host_files};
use crate::slot::Slot;
use crate::{LabError, LabHost};

use crate::process;
pub(crate) use crate::process::{children, unmount_under};
pub(crate) use root::base_root;

/// The lab's sshd unit in the base root.
const SSHD_UNIT: &str = "hbdeploy-lab-sshd.service";

/// How long a container may take to boot (or reboot) before the lab gives up. A boot takes a
/// second or two; a loaded machine running many tests at once needs more.
const BOOT: Duration = Duration::from_secs(90);

/// The holder: joins the cgroups named before `--`, then runs the command after it until it
/// exits with anything but 133 (systemd-nspawn's "the container rebooted").
const HOLDER: &str = r#"while [ "$1" != -- ]; do echo $$ > "$1" || exit 125; shift; done; shift
while :; do "$@"; rc=$?; [ "$rc" = 133 ] || exit "$rc"; done"#;

fn io(what: String) -> impl FnOnce(std::io::Error) -> LabError {
    move |source| LabError::Io { what, source }
}

/// Lays out a systemd host's directories and overlay, boots it, and waits for its systemd and
/// sshd. Returns the host and its public host key. On failure, everything started is stopped.
pub(crate) fn start(
    name: &str,
    address: Ipv4Addr,
    port: u16,
    dir: PathBuf,
    client_pubkey: &str,
    slot: &Slot,
    base: &Path,
) -> Result<(LabHost, String), LabError> {
    for sub in ["upper", "work", "fs", "state", "etc-nix", "root/.ssh"] {
        mkdir(&dir.join(sub))?;
    }
    let host_key = write_host_files(
        &dir,
        name,
        SocketAddr::from((address, port)),
        client_pubkey,
        Pam::On,
    )?;
    let fs = dir.join("fs");
    if let Err(error) = mount_root(base, &dir, name) {
        unmount_under(&dir);
        return Err(error);
    }
    let holder = match spawn_holder(name, &fs, slot) {
        Ok(holder) => holder,
        Err(error) => {
            unmount_under(&dir);
            cgroup::remove(slot.number, name);
            return Err(error);
        }
    };
    let mut host = LabHost {
        name: name.to_owned(),
        address,
        dir,
        kind: HostKind::Systemd,
        // The container's init changes with every boot: see `init_pid`.
        ns_pid: 0,
        holder,
        sshd: None,
        daemon: None,
        users: Vec::new(),
    };
    let started = slot
        .record_pid(host.holder.id())
        .and_then(|()| wait_booted(&host, None))
        .and_then(|()| wait_for_port(&host, port, BOOT));
    match started {
        Ok(()) => Ok((host, host_key)),
        Err(error) => {
            stop(&mut host);
            Err(error)
        }
    }
}

/// Mounts the host's root: an overlay of the base root with its upper layer in the host's
/// directory; a full copy where overlayfs is not available. Then writes the host's own name.
fn mount_root(base: &Path, dir: &Path, name: &str) -> Result<(), LabError> {
    let fs = dir.join("fs");
    let options = format!(
        "lowerdir={},upperdir={},workdir={}",
        base.display(),
        dir.join("upper").display(),
        dir.join("work").display()
    );
    let overlay = run(
        Command::new("mount")
            .args(["-t", "overlay", "overlay", "-o", &options])
            .arg(&fs),
        "mount the host's overlay",
    );
    if overlay.is_err() {
        run(
            Command::new("cp")
                .args(["-a", "--reflink=auto"])
                .arg(base.join("."))
                .arg(&fs),
            "copy the base root (overlayfs is not available)",
        )?;
    }
    write(&fs.join("etc/hostname"), &format!("{name}\n"))?;
    write(
        &fs.join("etc/hosts"),
        &format!("127.0.0.1 localhost\n::1 localhost\n127.0.1.1 {name}\n"),
    )
}

/// Starts the holder: into the host's cgroups, then `systemd-nspawn --boot` of `fs` in a loop.
fn spawn_holder(name: &str, fs: &Path, slot: &Slot) -> Result<std::process::Child, LabError> {
    let dir = fs.parent().unwrap_or(fs);
    let console = std::fs::File::create(dir.join("console.log"))
        .map_err(io(format!("create {}/console.log", dir.display())))?;
    let console_err = console
        .try_clone()
        .map_err(io("share the console log".to_owned()))?;
    let bind = |from: &Path, to: &str| format!("--bind={}:{to}", from.display());
    let slot_dir = slot.dir.display().to_string();
    let mut command = Command::new("/bin/sh");
    command
        .args(["-c", HOLDER, "hbdeploy-lab-holder"])
        .args(cgroup::create(slot.number, name)?)
        .arg("--")
        .args(["systemd-nspawn", "--boot", "--register=no", "--keep-unit"])
        .args([
            "--console=read-only",
            "--kill-signal=SIGKILL",
            "--link-journal=no",
        ])
        .arg(format!("--machine=hbdeploy-lab-{}-{name}", slot.number))
        .arg(format!("--hostname={name}"))
        .arg("-D")
        .arg(fs)
        .arg(bind(&dir.join("state"), HOST_STATE))
        .arg(bind(&dir.join("etc-nix"), "/etc/nix"))
        .arg(bind(&dir.join("root"), "/root"))
        .arg(format!("--bind={slot_dir}:{slot_dir}:norbind"))
        .stdin(Stdio::null())
        .stdout(console)
        .stderr(console_err);
    command.spawn().map_err(io(
        "start systemd-nspawn (apt-get install systemd-container)".to_owned(),
    ))
}

/// The last lines of the host's console, for errors.
fn console_tail(host: &LabHost) -> String {
    let text = std::fs::read_to_string(host.dir.join("console.log")).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

/// Waits until the container's systemd has finished booting (`running` or `degraded`), in a
/// boot whose init is not `previous`.
fn wait_booted(host: &LabHost, previous: Option<u32>) -> Result<(), LabError> {
    let deadline = Instant::now() + BOOT;
    loop {
        if !process::alive(host.holder.id()) {
            let console = console_tail(host);
            let hint = inotify::hint(&console)
                .map(|hint| format!("\n{hint}"))
                .unwrap_or_default();
            return Err(LabError::Startup {
                host: host.name.clone(),
                detail: format!("systemd-nspawn exited; its console:\n{console}{hint}"),
            });
        }
        let init = init_pid(host);
        if init.is_some() && init != previous {
            let state = host
                .sh("timeout 20 systemctl is-system-running --wait 2>/dev/null; true")
                .unwrap_or_default();
            match state.trim() {
                "running" | "degraded" => return Ok(()),
                _ => {}
            }
        }
        if Instant::now() > deadline {
            return Err(LabError::Startup {
                host: host.name.clone(),
                detail: format!(
                    "systemd did not finish booting; its console:\n{}",
                    console_tail(host)
                ),
            });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The PID (in this machine's PID namespace) of the container's init: the child of
/// systemd-nspawn that lives in another PID namespace.
pub(crate) fn init_pid(host: &LabHost) -> Option<u32> {
    let nspawn = process::children(host.holder.id()).into_iter().next()?;
    process::children(nspawn)
        .into_iter()
        .find(|&child| process::pid_namespace(child) != process::pid_namespace(nspawn))
}

/// A command that runs the program appended to it inside the container, as root, with a clean
/// environment: all of the init's namespaces but the network (shared anyway), its root and its
/// working directory.
pub(crate) fn nsenter(host: &LabHost) -> Command {
    let target = init_pid(host).unwrap_or(0).to_string();
    let mut command = Command::new("nsenter");
    command
        .args(["-t", &target, "-m", "-u", "-i", "-p", "-r", "-w", "--"])
        .args(["/usr/bin/env", "-i", "HOME=/root", "LANG=C.UTF-8"])
        .arg("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
        .stdin(Stdio::null());
    command
}

/// (Re)starts the host's sshd unit and waits until it listens.
pub(crate) fn start_sshd(host: &mut LabHost, port: u16) -> Result<(), LabError> {
    host.sh(&format!("systemctl restart {SSHD_UNIT}"))?;
    wait_for_port(host, port, BOOT)
}

/// Stops the host's sshd unit (only the listener: sessions stay, `KillMode=process`).
pub(crate) fn stop_sshd(host: &mut LabHost) {
    let _ = host.sh(&format!("systemctl stop {SSHD_UNIT}"));
}

/// The PID, in this machine's PID namespace, of the host's sshd listener.
pub(crate) fn sshd_pid(host: &LabHost) -> Option<u32> {
    let inner: u32 = host.sh("cat /run/sshd.pid").ok()?.trim().parse().ok()?;
    process::outer_pid(init_pid(host)?, inner)
}

/// Reboots the container for real: `systemctl reboot`, after which the holder boots it again
/// from the same overlay; returns when the new boot's systemd and sshd are up. The boot unit
/// makes the boot default the booted and running system.
pub(crate) fn reboot(host: &LabHost, port: u16) -> Result<(), LabError> {
    let previous = init_pid(host);
    host.sh("systemctl reboot --no-block")?;
    wait_booted(host, previous)?;
    wait_for_port(host, port, BOOT)
}

/// Stops the host by PID (see the module doc), unmounts its root and removes its cgroups.
pub(crate) fn stop(host: &mut LabHost) {
    let holder = host.holder.id();
    let nspawn = process::children(holder).into_iter().next();
    let init = init_pid(host);
    if let Some(nspawn) = nspawn {
        process::signal(nspawn, "TERM");
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while !matches!(host.holder.try_wait(), Ok(Some(_)) | Err(_)) {
        if Instant::now() > deadline {
            // nspawn did not stop the container: stop the holder first, so it cannot boot
            // another, then the container's init (and so everything in it), then nspawn.
            let _ = host.holder.kill();
            let _ = host.holder.wait();
            for pid in init.into_iter().chain(nspawn) {
                process::signal(pid, "KILL");
            }
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    for pid in nspawn.into_iter().chain(init) {
        process::wait_gone(pid, Duration::from_secs(10));
    }
    unmount_under(&host.dir);
    // A lab host's address is 127.77.<slot>.x (`Lab::address`).
    let slot = host.address.octets()[2];
    cgroup::remove(u32::from(slot), &host.name);
}

/// Cleans up after a dead lab whose processes were killed: its mounts, its cgroups, and the
/// empty directories a killed systemd-nspawn leaves in `/run/systemd/nspawn/propagate/` (one per
/// machine, named by the lab: `hbdeploy-lab-<slot>-<host>`).
pub(crate) fn clean_slot(dir: &Path, number: u32) {
    unmount_under(dir);
    cgroup::remove_slot(number);
    let propagate = Path::new("/run/systemd/nspawn/propagate");
    let prefix = format!("hbdeploy-lab-{number}-");
    for entry in std::fs::read_dir(propagate).into_iter().flatten().flatten() {
        if entry.file_name().to_string_lossy().starts_with(&prefix) {
            // Only an empty directory goes: whatever else is there is not the lab's.
            let _ = std::fs::remove_dir(entry.path());
        }
    }
}
