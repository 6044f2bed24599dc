//! Is this a machine booted into the NixOS installer, whose disks may be wiped?
//!
//! The rule: `/etc/os-release` says `ID=nixos` and `VARIANT_ID=installer`. NixOS's
//! installation-device profile sets that variant (`system.nixos.variant_id`) on the ISO, netboot
//! and kexec installer images, and nixos-anywhere decides the same way. An installed NixOS has
//! no variant, or another one, so pointing `install` at a running machine by mistake is refused.
//!
//! The same rule is checked on a pushed install's target (one probe over SSH, which also finds
//! `nixos-install` and the devices) and, for `disko-install`, on the machine hbdeploy runs on.

use std::path::Path;

use hbdeploy_nix::DiskDevice;

use super::InstallError;

/// The rule, in words, for messages and documentation.
pub const LIVE_RULE: &str = "/etc/os-release says ID=nixos and VARIANT_ID=installer";

/// Where NixOS keeps `nixos-install` when it is not on the login's `PATH`.
pub(crate) const SYSTEM_BIN: &str = "/run/current-system/sw/bin";

/// `Ok` if `os_release` (the text of `/etc/os-release`) is a NixOS installer's; otherwise what
/// the machine looks like instead.
pub(crate) fn judge(os_release: &str) -> Result<(), String> {
    let field = |key: &str| {
        os_release.lines().find_map(|line| {
            let value = line.trim().strip_prefix(key)?.strip_prefix('=')?;
            Some(value.trim_matches(['"', '\'']).to_owned())
        })
    };
    let id = field("ID");
    let variant = field("VARIANT_ID");
    if id.as_deref() == Some("nixos") && variant.as_deref() == Some("installer") {
        return Ok(());
    }
    let name = field("PRETTY_NAME")
        .map(|n| format!(" ({n})"))
        .unwrap_or_default();
    Err(match (id, variant) {
        (None, _) => "it has no /etc/os-release with an ID".to_owned(),
        (Some(id), _) if id != "nixos" => format!("its /etc/os-release says ID={id}{name}"),
        (Some(_), None) => {
            format!(
                "its /etc/os-release says ID=nixos without VARIANT_ID=installer{name}, which is an installed system"
            )
        }
        (Some(_), Some(variant)) => format!(
            "its /etc/os-release says ID=nixos with VARIANT_ID={variant}{name}, not installer"
        ),
    })
}

/// Checks the machine hbdeploy runs on before `disko-install` wipes `disks`: a live installer
/// (unless `force`) on which every device exists.
pub fn check_this_machine(disks: &[DiskDevice], force: bool) -> Result<(), InstallError> {
    let target = "this machine".to_owned();
    if !force {
        let os_release = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
        judge(&os_release).map_err(|evidence| InstallError::NotLive {
            target: target.clone(),
            evidence,
        })?;
    }
    for disk in disks {
        if !Path::new(&disk.device).exists() {
            return Err(InstallError::NoDevice {
                target,
                device: disk.device.clone(),
            });
        }
    }
    Ok(())
}

/// What the probe found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Probe {
    /// `id -u` of the login.
    pub uid: String,
    /// The text of `/etc/os-release`.
    pub os_release: String,
    /// Whether `nixos-install` was found.
    pub nixos_install: bool,
    /// Per existing device: its size and model, as lsblk says (empty if lsblk cannot tell).
    pub devices: Vec<(String, String)>,
    /// Devices that do not exist.
    pub missing: Vec<String>,
}

/// Reads the probe's output.
pub(crate) fn parse_probe(stdout: &str) -> Probe {
    let mut probe = Probe::default();
    for line in stdout.lines() {
        if let Some(uid) = line.strip_prefix("uid ") {
            probe.uid = uid.trim().to_owned();
        } else if let Some(text) = line.strip_prefix("os-release ") {
            probe.os_release.push_str(text);
            probe.os_release.push('\n');
        } else if line == "nixos-install" {
            probe.nixos_install = true;
        } else if let Some(rest) = line.strip_prefix("device ") {
            let (device, about) = rest.split_once(' ').unwrap_or((rest, ""));
            probe
                .devices
                .push((device.to_owned(), about.trim().to_owned()));
        } else if let Some(device) = line.strip_prefix("missing ") {
            probe.missing.push(device.to_owned());
        }
    }
    probe
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_nixos_installer_is_live() {
        let iso = "NAME=NixOS\nID=nixos\nVERSION_ID=\"26.05\"\nVARIANT_ID=installer\n";
        assert_eq!(judge(iso), Ok(()));
        assert_eq!(judge("ID=\"nixos\"\nVARIANT_ID=\"installer\""), Ok(()));
        let installed = "ID=nixos\nPRETTY_NAME=\"NixOS 26.05 (Yarara)\"\n";
        assert_eq!(
            judge(installed),
            Err(
                "its /etc/os-release says ID=nixos without VARIANT_ID=installer (NixOS 26.05 \
                 (Yarara)), which is an installed system"
                    .to_owned()
            )
        );
        assert_eq!(
            judge("ID=debian\nVARIANT_ID=installer\nPRETTY_NAME=\"Debian GNU/Linux 12\"\n"),
            Err("its /etc/os-release says ID=debian (Debian GNU/Linux 12)".to_owned())
        );
        assert_eq!(
            judge("ID=nixos\nVARIANT_ID=server\n"),
            Err(
                "its /etc/os-release says ID=nixos with VARIANT_ID=server, not installer"
                    .to_owned()
            )
        );
        assert_eq!(
            judge(""),
            Err("it has no /etc/os-release with an ID".to_owned())
        );
        // ID_LIKE and VERSION_ID are other keys, not prefixes of ID.
        assert!(judge("ID_LIKE=nixos\nVARIANT_ID=installer\n").is_err());
    }

    #[test]
    fn probe_output_is_read_back() {
        let stdout = "uid 0\nos-release ID=nixos\nos-release VARIANT_ID=installer\nnixos-install\n\
                      device /dev/sda 1.8T Samsung SSD 980\ndevice /lab/disk \nmissing /dev/sdz\n";
        let probe = parse_probe(stdout);
        assert_eq!(probe.uid, "0");
        assert_eq!(judge(&probe.os_release), Ok(()));
        assert!(probe.nixos_install);
        assert_eq!(
            probe.devices,
            [
                ("/dev/sda".to_owned(), "1.8T Samsung SSD 980".to_owned()),
                ("/lab/disk".to_owned(), String::new())
            ]
        );
        assert_eq!(probe.missing, ["/dev/sdz"]);
    }
}
