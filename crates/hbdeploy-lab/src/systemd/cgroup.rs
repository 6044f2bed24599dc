//! One cgroup per systemd host: `hbdeploy-lab/slot-<N>/<host>` in the named `systemd`
//! hierarchy and in the `unified` (cgroup2) one, where the machine has them.
//!
//! `systemd-nspawn --keep-unit` runs the container in the cgroup it was started from; started
//! from one shared cgroup, every container would get the same `payload/` cgroup and their
//! systemds would fight over it. The holder moves itself into its host's cgroups before it
//! starts `systemd-nspawn`. Stopping a host removes its cgroup tree (deepest first: the
//! container's systemd makes its own cgroups below ours).

use std::path::{Path, PathBuf};

use crate::LabError;
use crate::files::mkdir;

/// The hierarchies a host's cgroup is made in: the hybrid layout's named `systemd` and `unified`
/// hierarchies, or the whole tree on a machine with cgroup2 only.
fn hierarchies() -> Vec<PathBuf> {
    let base = Path::new("/sys/fs/cgroup");
    let hybrid: Vec<PathBuf> = ["systemd", "unified"]
        .iter()
        .map(|name| base.join(name))
        .filter(|path| path.join("cgroup.procs").exists())
        .collect();
    if hybrid.is_empty() && base.join("cgroup.controllers").exists() {
        vec![base.to_path_buf()]
    } else {
        hybrid
    }
}

fn relative(slot: u32, host: Option<&str>) -> PathBuf {
    let slot = PathBuf::from("hbdeploy-lab").join(format!("slot-{slot}"));
    match host {
        Some(host) => slot.join(host),
        None => slot,
    }
}

/// Makes the host's cgroups and returns their `cgroup.procs` files, for the holder to write its
/// PID into.
pub(crate) fn create(slot: u32, host: &str) -> Result<Vec<PathBuf>, LabError> {
    let mut procs = Vec::new();
    for hierarchy in hierarchies() {
        let dir = hierarchy.join(relative(slot, Some(host)));
        remove_tree(&dir);
        mkdir(&dir)?;
        procs.push(dir.join("cgroup.procs"));
    }
    if procs.is_empty() {
        return Err(LabError::Startup {
            host: host.to_owned(),
            detail: "no cgroup hierarchy to run systemd-nspawn in under /sys/fs/cgroup".to_owned(),
        });
    }
    Ok(procs)
}

/// Removes the host's cgroups, and the slot's when it was the last host in it. Only empty
/// cgroups can be removed: call it once the container is gone.
pub(crate) fn remove(slot: u32, host: &str) {
    for hierarchy in hierarchies() {
        remove_tree(&hierarchy.join(relative(slot, Some(host))));
        let _ = std::fs::remove_dir(hierarchy.join(relative(slot, None)));
    }
}

/// Removes every cgroup a dead lab left in `slot` (after its processes were killed).
pub(crate) fn remove_slot(slot: u32) {
    for hierarchy in hierarchies() {
        remove_tree(&hierarchy.join(relative(slot, None)));
    }
}

/// Removes a cgroup and those below it, deepest first. A cgroup directory holds only the
/// kernel's files, which `rmdir` removes with it.
fn remove_tree(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            remove_tree(&entry.path());
        }
    }
    let _ = std::fs::remove_dir(dir);
}
