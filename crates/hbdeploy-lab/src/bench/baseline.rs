//! The floor hbdeploy is measured against: the same work done by plain commands in a shell
//! script. One `nix build` of every host's system, then per host one `nix copy` and one `ssh`
//! running `nix-env --set` and `switch-to-configuration switch` — one host after the other, or
//! all hosts at once (`&` and `wait`).
//!
//! The ssh options are exactly those hbdeploy gives `nix copy` (see `hbdeploy-nix`'s `copy.rs`):
//! the lab's key and known_hosts, strict host-key checking, the same timeouts.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{Lab, LabError, NIX_CONFIG, SSH_PORT, host};

/// What the script does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Only the `nix build` (the warm floor: everything is built already).
    Build,
    /// Build, then copy and activate the hosts one after the other.
    Sequential,
    /// Build, then copy and activate all hosts at once.
    Parallel,
}

impl Mode {
    fn as_str(self) -> &'static str {
        match self {
            Mode::Build => "build",
            Mode::Sequential => "sequential",
            Mode::Parallel => "parallel",
        }
    }
}

/// Single quotes for bash; the lab's paths and names hold no single quote, but be safe.
fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// The script's text for `lab`, every host of it.
pub fn script(lab: &Lab) -> String {
    let hosts: Vec<String> = lab.hosts().map(|h| quote(&h.name)).collect();
    let addresses: Vec<String> = lab.hosts().map(|h| h.address.to_string()).collect();
    let ssh_opts = format!(
        "-p {SSH_PORT} -o BatchMode=yes -o StrictHostKeyChecking=yes -o UserKnownHostsFile={} \
         -o GlobalKnownHostsFile=/dev/null -o ConnectTimeout=5 -o ServerAliveInterval=5 \
         -o ServerAliveCountMax=3 -i {} -o IdentitiesOnly=yes",
        lab.known_hosts().display(),
        lab.identity_file().display()
    );
    SCRIPT
        .replace("@nix_config@", &quote(NIX_CONFIG))
        .replace("@flake@", &quote(&lab.flake_ref()))
        .replace("@ssh_opts@", &ssh_opts)
        .replace("@hosts@", &hosts.join(" "))
        .replace("@addresses@", &addresses.join(" "))
}

const SCRIPT: &str = r#"#!/usr/bin/env bash
# The plain-command floor of hbdeploy's benchmark (written by hbdeploy-bench).
# Usage: baseline.sh build|sequential|parallel
set -euo pipefail
export NIX_CONFIG=@nix_config@
flake=@flake@
ssh_opts=(@ssh_opts@)
export NIX_SSHOPTS="${ssh_opts[*]}"
hosts=(@hosts@)
addresses=(@addresses@)

built=$(mktemp)
trap 'rm -f "$built"' EXIT
installables=()
for host in "${hosts[@]}"; do
  installables+=("$flake#nixosConfigurations.$host.config.system.build.toplevel")
done
nix build --no-link --json "${installables[@]}" > "$built"

deploy() {
  local host=$1 address=$2 path
  # The output path, not the .drv path (which has the same name plus `.drv`).
  path=$(grep -o "\"out\":\"/nix/store/[0-9a-z]\{32\}-nixos-system-$host-toy-[0-9]*\"" "$built" \
    | head -n 1 | cut -d '"' -f 4)
  [ -n "$path" ] || { echo "no output path for $host in nix build's JSON" >&2; return 1; }
  nix copy --no-check-sigs --to "ssh-ng://root@$address" "$path"
  ssh "${ssh_opts[@]}" "root@$address" \
    "nix-env -p /nix/var/nix/profiles/system --set $path && $path/bin/switch-to-configuration switch" \
    > /dev/null
}

case "$1" in
  build) ;;
  sequential)
    for i in "${!hosts[@]}"; do deploy "${hosts[$i]}" "${addresses[$i]}"; done ;;
  parallel)
    pids=()
    for i in "${!hosts[@]}"; do deploy "${hosts[$i]}" "${addresses[$i]}" & pids+=($!); done
    failed=0
    for pid in "${pids[@]}"; do wait "$pid" || failed=1; done
    exit "$failed" ;;
  *) echo "usage: $0 build|sequential|parallel" >&2; exit 2 ;;
esac
"#;

/// The script, written into the lab's directory.
#[derive(Debug, Clone)]
pub struct Baseline {
    path: PathBuf,
}

impl Baseline {
    /// Writes the script for every host of `lab`.
    pub fn write(lab: &Lab) -> Result<Baseline, LabError> {
        let path = lab.dir().join("baseline.sh");
        host::write(&path, &script(lab))?;
        Ok(Baseline { path })
    }

    /// Where the script is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The command that runs it in `mode`.
    pub fn command(&self, mode: Mode) -> Command {
        let mut command = Command::new("bash");
        command.arg(&self.path).arg(mode.as_str());
        command
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_survives_single_quotes() {
        assert_eq!(quote("a'b"), r"'a'\''b'");
    }

    #[test]
    fn the_floor_does_what_hbdeploy_does() {
        for step in [
            "nix build --no-link --json",
            "nix copy --no-check-sigs --to",
            "nix-env -p /nix/var/nix/profiles/system --set $path",
            "$path/bin/switch-to-configuration switch",
            "& pids+=($!)",
        ] {
            assert!(SCRIPT.contains(step), "{step}");
        }
    }
}
