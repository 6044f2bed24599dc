//! A lab host acting as a machine booted into the NixOS installer, for `hbdeploy install`.
//!
//! Stand-ins take the place of what the lab cannot have, and only here: a regular file in the
//! host's state directory is its "disk", a shell script is its `nixos-install`, and the toy
//! systems' `diskoScript` "formats" a disk by overwriting that file. Every one of them appends a
//! line to the host's `install.log`, so tests can read what ran, in which order, with which
//! arguments.
//!
//! A real installer is recognised by its `/etc/os-release` (`ID=nixos`, `VARIANT_ID=installer`);
//! the lab bind-mounts such a file over the host's own inside its mount namespace, which nobody
//! outside the namespace sees.

use std::os::unix::fs::PermissionsExt;

use crate::files::{HOST_STATE, mkdir, write};
use crate::{LabError, LabHost};

/// What a lab installer host looks like to `hbdeploy install`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Medium {
    /// A NixOS live installer: `/etc/os-release` says `VARIANT_ID=installer`.
    LiveInstaller,
    /// An installed NixOS system: `ID=nixos` and no installer variant (it has `nixos-install`
    /// too, as every NixOS system does).
    InstalledSystem,
}

/// The toy `diskoScript`, written by the toy flake's builder after a `disks='NAME=DEVICE …'`
/// line; `@host@` and `@failure@` are filled in by [`disko_script_for`].
const DISKO_SCRIPT: &str = r#"# Toy diskoScript of the hbdeploy lab: "formats" each stand-in disk by overwriting it.
state=/var/lib/hbdeploy-lab
echo "disko: wiping, partitioning and formatting the disks of @host@: $disks"
@failure@
for pair in $disks; do
  name=${pair%%=*}
  dev=${pair#*=}
  if [ ! -e "$dev" ]; then
    echo "disko: error: $dev does not exist" >&2
    exit 1
  fi
  echo "toy GPT and btrfs of disk $name, by disko" > "$dev"
  echo "formatted $name $dev" >> "$state/install.log"
done
echo "disko: mounted the new file systems at /mnt"
"#;

/// The text of a toy disko script for `host`; with `fails`, it stops with an error after its
/// first line of output, before touching any disk.
pub(crate) fn disko_script_for(host: &str, fails: bool) -> String {
    let failure = if fails {
        format!(
            "echo \"mkfs.btrfs: error: toy disko script of {host} fails on purpose\" >&2; exit 1"
        )
    } else {
        String::new()
    };
    DISKO_SCRIPT
        .replace("@failure@", &failure)
        .replace("@host@", host)
}

/// The stand-in `nixos-install`. Like the real one it needs the new root mounted (here: a disko
/// run recorded in the log) and a NixOS system in the local store.
const NIXOS_INSTALL: &str = r#"#!/bin/sh
# Stand-in nixos-install of the hbdeploy lab's installer hosts.
state=/var/lib/hbdeploy-lab
args="$*"
root=/mnt
system=
while [ $# -gt 0 ]; do
  case "$1" in
    --system) system="$2"; shift 2 ;;
    --root) root="$2"; shift 2 ;;
    --no-root-passwd|--no-root-password|--no-channel-copy) shift ;;
    *) echo "nixos-install (lab stand-in): unexpected argument $1" >&2; exit 1 ;;
  esac
done
if ! grep -q '^formatted ' "$state/install.log" 2>/dev/null; then
  echo "error: nothing is mounted at $root; partition and mount the disks first" >&2
  exit 1
fi
if [ ! -x "$system/bin/switch-to-configuration" ]; then
  echo "error: $system is not a NixOS system in this machine's store" >&2
  exit 1
fi
echo "nixos-install $args" >> "$state/install.log"
echo "installing the boot loader..."
echo "installation finished!"
"#;

impl LabHost {
    /// Makes the host look like `medium` to `hbdeploy install`: its `/etc/os-release`, and a
    /// `nixos-install` in `/run/current-system/sw/bin` (where NixOS keeps it).
    pub fn make_installer(&self, medium: Medium) -> Result<(), LabError> {
        let live = self.dir.join("state/live-system");
        mkdir(&live.join("sw/bin"))?;
        let tool = live.join("sw/bin/nixos-install");
        write(&tool, NIXOS_INSTALL)?;
        std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).map_err(
            |source| LabError::Io {
                what: format!("make {} executable", tool.display()),
                source,
            },
        )?;
        let os_release = match medium {
            Medium::LiveInstaller => {
                "NAME=NixOS\nID=nixos\nVARIANT_ID=installer\nPRETTY_NAME=\"NixOS (lab live installer)\"\n"
            }
            Medium::InstalledSystem => "NAME=NixOS\nID=nixos\nPRETTY_NAME=\"NixOS (lab)\"\n",
        };
        write(&self.dir.join("state/os-release"), os_release)?;
        self.sh(&format!(
            "set -e; ln -sfn {HOST_STATE}/live-system /run/current-system; \
             mount --bind {HOST_STATE}/os-release /etc/os-release"
        ))?;
        Ok(())
    }

    /// Adds a stand-in disk: a file holding one line of "data". Returns its path inside the host
    /// (`/var/lib/hbdeploy-lab/disks/<name>`), the device to pass to `--disk`.
    pub fn add_disk(&self, name: &str) -> Result<String, LabError> {
        mkdir(&self.dir.join("state/disks"))?;
        write(
            &self.dir.join("state/disks").join(name),
            &format!("precious data on {name}\n"),
        )?;
        Ok(format!("{HOST_STATE}/disks/{name}"))
    }

    /// What the stand-in disk `name` holds now.
    pub fn disk_content(&self, name: &str) -> Result<String, LabError> {
        let path = self.dir.join("state/disks").join(name);
        std::fs::read_to_string(&path).map_err(|source| LabError::Io {
            what: format!("read {}", path.display()),
            source,
        })
    }

    /// What the toy disko scripts and the stand-in `nixos-install` recorded, oldest first:
    /// `formatted <name> <device>` and `nixos-install <arguments>`.
    pub fn install_log(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.join("state/install.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disko_script_fails_only_on_demand() {
        let good = disko_script_for("h", false);
        assert!(good.contains("disks of h:"));
        assert!(!good.contains("@failure@") && !good.contains("on purpose"));
        let bad = disko_script_for("h", true);
        assert!(bad.contains("toy disko script of h fails on purpose\" >&2; exit 1"));
    }
}
