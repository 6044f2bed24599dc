//! What installing a host needs from nix: the names of its disko disks, its system and disko
//! script evaluated with each disk's device replaced by the one given on the command line, and
//! the `disko-install` command line that does the whole install on the machine itself.
//!
//! The device is replaced the way `disko-install` does it: through `extendModules`, with a module
//! that sets `disko.devices.disk.<NAME>.device` at the priority of `lib.mkVMOverride` (10), so it
//! wins over the `device` written in the host's `disk.nix`. The override is spelt out as the
//! attribute set `lib.mkOverride` returns, so the expression needs no `lib`.

use serde::Deserialize;

use crate::command::OutputSink;
use crate::{Nix, NixError, Toplevel, nix_string};

/// The installable `hbdeploy install --print` runs: disko's release tag, the same one the fleet's
/// flake takes its disko module from.
pub const DISKO_INSTALL: &str = "github:nix-community/disko/latest#disko-install";

/// One disko disk (`disko.devices.disk.<name>`) and the device it is written to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskDevice {
    /// The attribute name under `disko.devices.disk`.
    pub name: String,
    /// The device path, e.g. `/dev/nvme1n1`.
    pub device: String,
}

/// What `nix build` must produce to install a host, evaluated with the given devices.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct InstallDrvs {
    /// `config.system.build.toplevel`.
    pub system: Toplevel,
    /// `config.system.build.diskoScript`: wipes, partitions, formats and mounts the disks.
    #[serde(rename = "disko")]
    pub disko_script: Toplevel,
    /// `config.disko.rootMountPoint` (`/mnt` when unset): where the script mounts the new root.
    #[serde(rename = "root")]
    pub root_mount_point: String,
}

/// The `--apply` function listing the disko disk names of `nixosConfigurations.<attr>`; a
/// configuration without disko's module has none. (`cs.<attr>` is taken outside the `or`, so a
/// missing configuration is an error, not an empty list.)
pub(crate) fn disk_names_apply(attr: &str) -> String {
    format!(
        "cs: let c = cs.{}; in builtins.attrNames (c.config.disko.devices.disk or {{ }})",
        nix_string(attr)
    )
}

/// The `--apply` function returning [`InstallDrvs`] for `attr` with `disks`' devices.
pub(crate) fn install_apply(attr: &str, disks: &[DiskDevice]) -> String {
    let mut overrides = String::new();
    for disk in disks {
        overrides.push_str(&format!(
            " {} = {{ device = {{ _type = \"override\"; priority = 10; content = {}; }}; }};",
            nix_string(&disk.name),
            nix_string(&disk.device)
        ));
    }
    format!(
        "cs: let c = cs.{attr}; e = c.extendModules {{ modules = [ {{ _file = \
         \"hbdeploy install --disk\"; disko.devices.disk = {{{overrides} }}; }} ]; }}; \
         t = e.config.system.build.toplevel; d = e.config.system.build.diskoScript; \
         in {{ system = {{ drv = t.drvPath; out = t.outPath; }}; \
         disko = {{ drv = d.drvPath; out = d.outPath; }}; \
         root = e.config.disko.rootMountPoint or \"/mnt\"; }}",
        attr = nix_string(attr)
    )
}

/// The full argument vector, program first, of the `disko-install` run that installs
/// `flake#attr` onto `disks` on the machine it runs on.
pub fn disko_install_argv(flake: &str, attr: &str, disks: &[DiskDevice]) -> Vec<String> {
    let mut argv: Vec<String> = [
        "nix",
        "run",
        "--experimental-features",
        "nix-command flakes",
        DISKO_INSTALL,
        "--",
        "--flake",
    ]
    .map(String::from)
    .to_vec();
    argv.push(format!("{flake}#{attr}"));
    for disk in disks {
        argv.extend(["--disk".to_owned(), disk.name.clone(), disk.device.clone()]);
    }
    argv
}

impl Nix {
    /// The disko disk names of `flake`'s `nixosConfigurations.<attr>`, sorted; or nix's error.
    pub async fn disko_disks(
        &self,
        flake: &str,
        attr: &str,
        on_line: OutputSink<'_>,
    ) -> Result<Result<Vec<String>, Vec<String>>, NixError> {
        self.eval_apply(
            flake,
            "nixosConfigurations",
            &disk_names_apply(attr),
            on_line,
        )
        .await
    }

    /// The system and disko script of `nixosConfigurations.<attr>` with `disks`' devices; or
    /// nix's error.
    pub async fn install_drvs(
        &self,
        flake: &str,
        attr: &str,
        disks: &[DiskDevice],
        on_line: OutputSink<'_>,
    ) -> Result<Result<InstallDrvs, Vec<String>>, NixError> {
        let apply = install_apply(attr, disks);
        self.eval_apply(flake, "nixosConfigurations", &apply, on_line)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn disk(name: &str, device: &str) -> DiskDevice {
        DiskDevice {
            name: name.to_owned(),
            device: device.to_owned(),
        }
    }

    #[test]
    fn disk_names_come_from_the_configuration_itself() {
        assert_eq!(
            disk_names_apply("desktop"),
            "cs: let c = cs.\"desktop\"; in builtins.attrNames (c.config.disko.devices.disk or { })"
        );
    }

    #[test]
    fn install_expression_overrides_every_given_device() {
        let expr = install_apply(
            "server",
            &[disk("sda", "/dev/sdb"), disk("data", "/dev/disk/by-id/x")],
        );
        assert!(expr.starts_with("cs: let c = cs.\"server\"; e = c.extendModules"));
        assert!(expr.contains(
            "\"sda\" = { device = { _type = \"override\"; priority = 10; content = \"/dev/sdb\"; }; };"
        ));
        assert!(expr.contains("\"data\" = { device = { _type = \"override\"; priority = 10; content = \"/dev/disk/by-id/x\"; }; };"));
        assert!(expr.contains("d = e.config.system.build.diskoScript;"));
        assert!(expr.contains("t = e.config.system.build.toplevel;"));
    }

    #[test]
    fn disko_install_argv_names_each_disk_and_its_device() {
        let argv = disko_install_argv(
            "/srv/fleet/nixos",
            "desktop",
            &[disk("nvme1n1", "/dev/nvme1n1")],
        );
        assert_eq!(
            argv.join(" "),
            "nix run --experimental-features nix-command flakes \
             github:nix-community/disko/latest#disko-install -- --flake /srv/fleet/nixos#desktop \
             --disk nvme1n1 /dev/nvme1n1"
        );
    }
}
