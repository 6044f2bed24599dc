//! Before any host is contacted: the files fleet.toml names for the selected hosts (known-hosts
//! and identity files, of the hosts and their jump hosts, and the fleet's signing key) must be
//! regular files, or symlinks to one, of a sane size. A FIFO or a device there would hang
//! hbdeploy or fill its memory once read, so it is refused now, naming the file (exit 2). A
//! missing file is left to the step that uses it, which says what it means there (a missing
//! known-hosts file is an empty one).

use std::path::Path;

use hbdeploy_files::FileError;
use hbdeploy_pipeline::HostPlan;
use hbdeploy_ssh::{MAX_IDENTITY_BYTES, MAX_KNOWN_HOSTS_BYTES, Target};

/// The largest nix signing key that is accepted (one is about 100 bytes).
const MAX_SIGNING_KEY_BYTES: u64 = hbdeploy_files::MIB;

/// A file named in fleet.toml that hbdeploy will not read.
#[derive(Debug, thiserror::Error)]
#[error("cannot use {} as the `{key}` of {whose}; no host was contacted", source.path().display())]
pub(crate) struct Refused {
    /// The fleet.toml key that names it.
    key: &'static str,
    /// `host NAME`, or `the fleet`.
    whose: String,
    /// What it is instead of a regular file.
    #[source]
    source: FileError,
}

impl hbdeploy_files::Hint for Refused {
    /// What to do.
    fn hint(&self) -> Option<String> {
        Some(match self.key {
            "known-hosts" => hbdeploy_ssh::KNOWN_HOSTS_ADVICE.to_owned(),
            key => format!(
                "set `{key}` in fleet.toml to the key file itself: a regular file (or a symlink \
                 to one)"
            ),
        })
    }
}

/// Checks the files of the plans' targets and of the fleet's signing key.
pub(crate) fn check(plans: &[HostPlan], signing_key: Option<&Path>) -> Result<(), Refused> {
    for plan in plans {
        check_target(&plan.name, &plan.target)?;
    }
    if let Some(key) = signing_key {
        file("signing-key", "the fleet", key, MAX_SIGNING_KEY_BYTES)?;
    }
    Ok(())
}

/// Checks the files `target` and its jump hosts use.
pub(crate) fn check_target(name: &str, target: &Target) -> Result<(), Refused> {
    if target.is_local() {
        // Reached without SSH: it uses neither file.
        return Ok(());
    }
    let whose = format!("host {name}");
    let mut next = Some(target);
    while let Some(t) = next {
        file("known-hosts", &whose, &t.known_hosts, MAX_KNOWN_HOSTS_BYTES)?;
        if let Some(identity) = &t.identity_file {
            file("identity-file", &whose, identity, MAX_IDENTITY_BYTES)?;
        }
        next = t.jump.as_deref();
    }
    Ok(())
}

/// Refuses `path` if it exists and is not a regular file of at most `limit` bytes.
fn file(key: &'static str, whose: &str, path: &Path, limit: u64) -> Result<(), Refused> {
    match hbdeploy_files::check(path, limit) {
        Err(source) if source.is_refusal() => Err(Refused {
            key,
            whose: whose.to_owned(),
            source,
        }),
        _ => Ok(()),
    }
}
