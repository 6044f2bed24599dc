//! Which device each of the host's disko disks is written to: the `--disk` options, checked
//! against the disk names the configuration declares.
//!
//! `--disk DEVICE` serves a host with one disk; `--disk NAME=DEVICE` names the disk, and a host
//! with several disks needs one per disk, as `disko-install` does. Devices are absolute paths of
//! plain characters, checked when parsed: they end up in shell command lines on the target.

use hbdeploy_nix::{DiskDevice, Nix};

use super::{InstallError, InstallEvents, InstallRequest, InstallStep};

/// One `--disk` option.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiskArg {
    /// `--disk DEVICE`: the host's only disk.
    Device(String),
    /// `--disk NAME=DEVICE`.
    Named {
        /// `disko.devices.disk.<NAME>`.
        name: String,
        /// The device.
        device: String,
    },
}

impl DiskArg {
    /// The device.
    pub fn device(&self) -> &str {
        match self {
            DiskArg::Device(device) | DiskArg::Named { device, .. } => device,
        }
    }
}

/// A `--disk` value that is not `DEVICE` or `NAME=DEVICE`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DiskArgError {
    /// The device is not an absolute path of plain characters.
    #[error(
        "`{0}` is not a device path: give an absolute path such as /dev/nvme1n1, of letters, \
         digits and / . _ - : + @ ,"
    )]
    Device(String),
    /// The disk name is empty or has odd characters.
    #[error(
        "`{0}` is not a disko disk name: names are letters, digits, `-`, `_` and `.` (NAME in \
         --disk NAME=DEVICE is the attribute under disko.devices.disk)"
    )]
    Name(String),
}

/// No advice beyond the message, which says what to write.
impl hbdeploy_files::Hint for DiskArgError {}

fn check_device(device: &str) -> Result<String, DiskArgError> {
    let plain = device.len() > 1
        && device.starts_with('/')
        && device
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-:+@,".contains(&b));
    if plain {
        Ok(device.to_owned())
    } else {
        Err(DiskArgError::Device(device.to_owned()))
    }
}

impl std::str::FromStr for DiskArg {
    type Err = DiskArgError;

    fn from_str(text: &str) -> Result<DiskArg, DiskArgError> {
        let Some((name, device)) = text.split_once('=') else {
            return check_device(text).map(DiskArg::Device);
        };
        let name_ok = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        if !name_ok {
            return Err(DiskArgError::Name(name.to_owned()));
        }
        Ok(DiskArg::Named {
            name: name.to_owned(),
            device: check_device(device)?,
        })
    }
}

/// Matches the `--disk` options to the disks `attr` declares (`declared`, sorted). The result
/// is in declared order.
pub(crate) fn resolve(
    attr: &str,
    declared: &[String],
    args: &[DiskArg],
) -> Result<Vec<DiskDevice>, InstallError> {
    let attr = attr.to_owned();
    if declared.is_empty() {
        return Err(InstallError::NoDisks { attr });
    }
    let unnamed = args.iter().any(|a| matches!(a, DiskArg::Device(_)));
    if unnamed && declared.len() > 1 {
        return Err(InstallError::NameTheDisks {
            attr,
            declared: declared.to_vec(),
        });
    }
    if unnamed && args.len() > 1 {
        return Err(InstallError::TooManyDisks {
            attr,
            declared: declared[0].clone(),
            given: args.len(),
        });
    }
    let mut disks: Vec<DiskDevice> = Vec::new();
    for arg in args {
        let (name, device) = match arg {
            DiskArg::Device(device) => (declared[0].clone(), device.clone()),
            DiskArg::Named { name, device } => (name.clone(), device.clone()),
        };
        if !declared.contains(&name) {
            return Err(InstallError::UnknownDisk {
                attr,
                name,
                declared: declared.to_vec(),
            });
        }
        if disks.iter().any(|d| d.name == name) {
            return Err(InstallError::DuplicateDisk { name });
        }
        if disks.iter().any(|d| d.device == device) {
            return Err(InstallError::SameDevice { device });
        }
        disks.push(DiskDevice { name, device });
    }
    let missing: Vec<String> = declared
        .iter()
        .filter(|name| !disks.iter().any(|d| &d.name == *name))
        .cloned()
        .collect();
    if !missing.is_empty() {
        return Err(InstallError::MissingDisks { attr, missing });
    }
    disks.sort_by_key(|d| declared.iter().position(|n| *n == d.name));
    Ok(disks)
}

/// Evaluates the disko disk names of the request's configuration (one `nix eval`) and matches
/// the `--disk` options to them.
pub async fn resolve_disks(
    nix: &Nix,
    request: &InstallRequest,
    args: &[DiskArg],
    events: &InstallEvents,
) -> Result<Vec<DiskDevice>, InstallError> {
    events.step(InstallStep::Evaluate);
    let mut sink = |line: &str| events.output(InstallStep::Evaluate, line);
    let mut declared = nix
        .disko_disks(&request.flake, &request.attr, &mut sink)
        .await?
        .map_err(|lines| InstallError::Eval {
            attr: request.attr.clone(),
            lines,
        })?;
    declared.sort();
    resolve(&request.attr, &declared, args)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arg(text: &str) -> DiskArg {
        text.parse().expect("valid --disk")
    }

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    fn pairs(disks: &[DiskDevice]) -> Vec<(String, String)> {
        disks
            .iter()
            .map(|d| (d.name.clone(), d.device.clone()))
            .collect()
    }

    #[test]
    fn disk_options_parse() {
        assert_eq!(
            arg("/dev/nvme1n1"),
            DiskArg::Device("/dev/nvme1n1".to_owned())
        );
        assert_eq!(
            arg("data=/dev/disk/by-id/ata-X_Y-part1:0"),
            DiskArg::Named {
                name: "data".to_owned(),
                device: "/dev/disk/by-id/ata-X_Y-part1:0".to_owned()
            }
        );
        for bad in [
            "nvme1n1",
            "/",
            "/dev/a b",
            "/dev/x;rm",
            "/dev/$(x)",
            "a=/dev/'x'",
            "",
        ] {
            assert!(
                matches!(bad.parse::<DiskArg>(), Err(DiskArgError::Device(_))),
                "{bad:?}"
            );
        }
        for bad in ["=/dev/sda", "my disk=/dev/sda", "a$b=/dev/sda"] {
            assert!(
                matches!(bad.parse::<DiskArg>(), Err(DiskArgError::Name(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn one_disk_takes_an_unnamed_or_a_named_device() {
        let declared = names(&["nvme1n1"]);
        let one = resolve("desktop", &declared, &[arg("/dev/sdb")]).expect("ok");
        assert_eq!(pairs(&one), [("nvme1n1".into(), "/dev/sdb".into())]);
        let named = resolve("desktop", &declared, &[arg("nvme1n1=/dev/sdb")]).expect("ok");
        assert_eq!(one, named);
    }

    #[test]
    fn several_disks_need_one_named_device_each() {
        let declared = names(&["a", "b"]);
        let both = resolve("h", &declared, &[arg("b=/dev/sdb"), arg("a=/dev/sda")]).expect("ok");
        assert_eq!(
            pairs(&both),
            [
                ("a".into(), "/dev/sda".into()),
                ("b".into(), "/dev/sdb".into())
            ]
        );
        let check = |args: &[DiskArg], expected: &str| {
            let err = resolve("h", &declared, args).expect_err("refused");
            assert_eq!(err.to_string(), expected);
        };
        check(
            &[arg("/dev/sda")],
            "nixosConfigurations.h declares 2 disko disks (a, b), so each --disk must name its disk",
        );
        check(
            &[arg("a=/dev/sda")],
            "no --disk for disko disk b of nixosConfigurations.h: every disk it declares is \
             wiped and needs its device",
        );
        check(
            &[arg("a=/dev/sda"), arg("c=/dev/sdc")],
            "nixosConfigurations.h declares no disko disk `c` (it has a, b)",
        );
        check(
            &[arg("a=/dev/sda"), arg("a=/dev/sdb")],
            "--disk names disk `a` twice",
        );
        check(
            &[arg("a=/dev/sda"), arg("b=/dev/sda")],
            "--disk gives /dev/sda for two disks",
        );
    }

    #[test]
    fn no_disks_or_too_many_devices_are_refused() {
        let err = resolve("h", &[], &[arg("/dev/sda")]).expect_err("refused");
        assert!(matches!(err, InstallError::NoDisks { .. }));
        let err = resolve("h", &names(&["sda"]), &[arg("/dev/sda"), arg("/dev/sdb")])
            .expect_err("refused");
        assert_eq!(
            err.to_string(),
            "nixosConfigurations.h declares one disko disk, `sda`, but --disk was given 2 times"
        );
    }
}
