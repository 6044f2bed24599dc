//! Faults of a systemd host's next boots, for checked reboots: written into the host's overlay
//! as unit drop-ins, so they last (every boot) until [`clear`]ed, and need nothing of the
//! cached base root.
//!
//! The lab's stage 2 is the unit `hbdeploy-lab-boot.service` (see `configure-root.sh`): at boot
//! it makes the toy system's boot default (what `switch-to-configuration boot` or `switch` of a
//! toy system set last) `/run/booted-system` and `/run/current-system`, as a NixOS boot loader
//! and stage 2 would.

use crate::{LabError, LabHost};

/// What goes wrong when a systemd lab host boots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootFault {
    /// The "boot loader" boots the generation before the system profile's (as when the new
    /// one failed to boot and an older entry was picked).
    OldSystem,
    /// sshd does not start at boot: the host never answers again.
    NoSshd,
    /// A new SSH host key is made at boot, as by a reinstalled machine.
    NewHostKey,
}

/// The drop-in directory of the lab's stage 2 and of its sshd.
const BOOT_DROPIN: &str = "/etc/systemd/system/hbdeploy-lab-boot.service.d";
const SSHD_DROPIN: &str = "/etc/systemd/system/hbdeploy-lab-sshd.service.d";
const FAULT_FILE: &str = "hbdeploy-lab-fault.conf";

/// The stage 2 of [`BootFault::OldSystem`]: the generation before the profile's.
const BOOT_PREVIOUS: &str = r#"#!/bin/sh
profile=/nix/var/nix/profiles/system
cur=$(readlink "$profile")
n=${cur#system-}
n=${n%-link}
prev=""
for l in "$profile"-*-link; do
  m=${l##*/system-}
  m=${m%-link}
  if [ "$m" -lt "$n" ] && { [ -z "$prev" ] || [ "$m" -gt "$prev" ]; }; then prev=$m; fi
done
[ -n "$prev" ] || exit 0
next=$(readlink -f "$profile-$prev-link")
ln -sfn "$next" /run/booted-system
ln -sfn "$next" /run/current-system
"#;

fn script(fault: BootFault) -> String {
    let (dir, unit) = match fault {
        BootFault::OldSystem => (
            BOOT_DROPIN,
            "[Service]\nExecStart=\nExecStart=/bin/sh /usr/local/sbin/hbdeploy-lab-boot-previous\n",
        ),
        BootFault::NoSshd => (
            SSHD_DROPIN,
            "[Unit]\nConditionPathExists=/hbdeploy-lab-sshd-is-disabled-at-boot\n",
        ),
        BootFault::NewHostKey => (
            SSHD_DROPIN,
            "[Service]\nExecStartPre=/bin/rm -f /var/lib/hbdeploy-lab/ssh_host_ed25519_key \
             /var/lib/hbdeploy-lab/ssh_host_ed25519_key.pub\n\
             ExecStartPre=/usr/bin/ssh-keygen -q -t ed25519 -N \"\" -f \
             /var/lib/hbdeploy-lab/ssh_host_ed25519_key\n",
        ),
    };
    format!(
        "cat >/usr/local/sbin/hbdeploy-lab-boot-previous <<'HBDEPLOY_EOF'\n{BOOT_PREVIOUS}HBDEPLOY_EOF\n\
         mkdir -p {dir}\n\
         cat >{dir}/{FAULT_FILE} <<'HBDEPLOY_EOF'\n{unit}HBDEPLOY_EOF\n\
         systemctl daemon-reload"
    )
}

/// Makes `fault` happen at every later boot of `host` (a systemd host).
pub(crate) fn set(host: &LabHost, fault: BootFault) -> Result<(), LabError> {
    host.sh(&script(fault)).map(|_| ())
}

/// Boots `host` normally again from its next boot on.
pub(crate) fn clear(host: &LabHost) -> Result<(), LabError> {
    host.sh(&format!(
        "rm -f {BOOT_DROPIN}/{FAULT_FILE} {SSHD_DROPIN}/{FAULT_FILE} && systemctl daemon-reload"
    ))
    .map(|_| ())
}
