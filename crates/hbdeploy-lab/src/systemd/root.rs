//! The base root of the systemd hosts: a minimal Debian bookworm made by `debootstrap`, with
//! systemd, dbus, sshd and nix, configured for the lab by `configure-root.sh`.
//!
//! It takes a minute or two and about 500 MB, so it is made once per machine and cached outside
//! the repository (`/var/cache/hbdeploy-lab/`, or `$HBDEPLOY_LAB_CACHE`). Labs in parallel
//! (threads or processes) wait for one file lock; the root is made in a temporary directory and
//! renamed into place, so a half-made root is never used, and what a killed build left is removed
//! by the next. The directory name carries a version: change it with the recipe.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::LabError;
use crate::files::{mkdir, run};

/// The name of the cached root; bump the version when the recipe below changes.
const NAME: &str = "systemd-root-bookworm-v2";

/// What the hosts need: systemd as PID 1, dbus for `systemd-run`, sshd, nix (with its daemon
/// units), sudo for non-root deploy users, ps and ip for whoever debugs a host.
const PACKAGES: &str =
    "systemd,systemd-sysv,dbus,openssh-server,nix-bin,nix-setup-systemd,sudo,procps,iproute2";

/// Turns the fresh debootstrap root into the lab's base root (run with the root as `$1`).
const CONFIGURE: &str = include_str!("configure-root.sh");

fn io(what: String) -> impl FnOnce(std::io::Error) -> LabError {
    move |source| LabError::Io { what, source }
}

/// Where cached roots live.
fn cache_dir() -> PathBuf {
    std::env::var_os("HBDEPLOY_LAB_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/hbdeploy-lab"))
}

/// The base root, made first if it is not cached yet (the first call on a machine takes a
/// minute or two and needs the Debian archive; every later call returns at once).
pub(crate) fn base_root() -> Result<PathBuf, LabError> {
    let cache = cache_dir();
    let root = cache.join(NAME);
    if root.join("etc/hbdeploy-lab-root").exists() {
        return Ok(root);
    }
    mkdir(&cache)?;
    let lock_path = cache.join(format!("{NAME}.lock"));
    let lock: File = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(io(format!("open {}", lock_path.display())))?;
    lock.lock()
        .map_err(io(format!("lock {}", lock_path.display())))?;
    // Someone else may have made it while this lab waited for the lock.
    if root.join("etc/hbdeploy-lab-root").exists() {
        return Ok(root);
    }
    let temporary = cache.join(format!("{NAME}.tmp"));
    discard(&temporary)?;
    build(&temporary)?;
    std::fs::rename(&temporary, &root).map_err(io(format!(
        "rename {} to {}",
        temporary.display(),
        root.display()
    )))?;
    Ok(root)
}

/// Removes what a killed build left: its mounts first (never delete through a mounted /proc),
/// then the directory.
fn discard(temporary: &Path) -> Result<(), LabError> {
    super::unmount_under(temporary);
    if temporary.exists() {
        std::fs::remove_dir_all(temporary)
            .map_err(io(format!("remove {}", temporary.display())))?;
    }
    Ok(())
}

/// Makes a base root in `dir`.
fn build(dir: &Path) -> Result<(), LabError> {
    // debootstrap's own default archive for the suite, unless one is named.
    let mirror = std::env::var_os("HBDEPLOY_LAB_DEBIAN_MIRROR");
    // debootstrap exits 1 here: bookworm's libdbd-sqlite3-perl (pulled in by nix-bin) wants
    // perl-dbdabi-94, which minbase lacks, so nix-bin stays unconfigured. Its status is not the
    // verdict; the checks after the repair below are.
    let output = Command::new("debootstrap")
        .args([
            "--variant=minbase",
            &format!("--include={PACKAGES}"),
            "bookworm",
        ])
        .arg(dir)
        .args(mirror)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdin(Stdio::null())
        .output()
        .map_err(io(
            "run debootstrap (apt-get install debootstrap)".to_owned()
        ))?;
    if !dir.join("usr/bin/dpkg").exists() {
        return Err(failed("debootstrap", &output));
    }
    repair(dir)?;
    run(
        Command::new("/bin/sh")
            .args(["-c", CONFIGURE, "configure-root"])
            .arg(dir),
        "configure-root.sh (the lab's base root)",
    )?;
    check(dir)?;
    // The mark that the root is complete: written last.
    crate::files::write(&dir.join("etc/hbdeploy-lab-root"), &format!("{NAME}\n"))
}

fn failed(what: &str, output: &std::process::Output) -> LabError {
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let tail: Vec<&str> = stdout.lines().chain(stderr.lines()).collect();
    LabError::Command {
        what: what.to_owned(),
        status: output.status.to_string(),
        stderr: tail[tail.len().saturating_sub(20)..].join("\n"),
    }
}

/// Configures what debootstrap left unconfigured: installs the missing perl DBI, then lets apt
/// finish. Needs /proc inside the root, mounted for these two commands only.
fn repair(dir: &Path) -> Result<(), LabError> {
    let proc_dir = dir.join("proc");
    run(
        Command::new("mount")
            .args(["-t", "proc", "proc"])
            .arg(&proc_dir),
        "mount /proc in the new root",
    )?;
    let apt = |args: &[&str], what: &str| {
        run(
            Command::new("chroot")
                .arg(dir)
                .arg("apt-get")
                .args(args)
                .env("DEBIAN_FRONTEND", "noninteractive")
                .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
                .env("LANG", "C"),
            what,
        )
    };
    let result = apt(
        &["install", "-y", "libdbi-perl"],
        "apt-get install libdbi-perl (in the new root)",
    )
    .and_then(|_| {
        apt(
            &["-f", "install", "-y"],
            "apt-get -f install (in the new root)",
        )
    });
    let unmounted = run(
        Command::new("umount").arg(&proc_dir),
        "umount /proc of the new root",
    );
    result.and(unmounted).map(|_| ())
}

/// Fails unless every package is configured and the programs the hosts need are there.
fn check(dir: &Path) -> Result<(), LabError> {
    let audit = run(
        Command::new("chroot").arg(dir).args(["dpkg", "--audit"]),
        "dpkg --audit (in the new root)",
    )?;
    if !audit.trim().is_empty() {
        return Err(LabError::Command {
            what: "the lab's base root".to_owned(),
            status: "packages left unconfigured".to_owned(),
            stderr: audit,
        });
    }
    for program in [
        "lib/systemd/systemd",
        "usr/bin/dbus-daemon",
        "usr/sbin/sshd",
        "usr/bin/nix-store",
        "usr/bin/systemd-run",
    ] {
        if !dir.join(program).exists() {
            return Err(LabError::Command {
                what: "the lab's base root".to_owned(),
                status: "incomplete".to_owned(),
                stderr: format!("/{program} is missing"),
            });
        }
    }
    Ok(())
}
