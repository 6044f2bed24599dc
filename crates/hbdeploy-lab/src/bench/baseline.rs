//! The floor hbdeploy is measured against: the same work done by plain commands in a shell
//! script. One `nix build` of every host's system, then per host one `nix copy` and one `ssh`
//! running `nix-env --set` and `switch-to-configuration switch` — one host after the other, or
//! all hosts at once (`&` and `wait`). The deployment alone (issue 16) is `prebuild` (untimed:
//! builds and records the systems' paths) followed by `deploy`, which copies and activates all
//! hosts at once from the recorded paths. `logins` is the floor of a warm deployment: one `ssh`
//! per host running `true`, all hosts at once, nothing built or copied.
//!
//! The ssh options: the lab's key and known_hosts, strict host-key checking, the timeouts
//! hbdeploy's fleet uses. The SSH algorithms are OpenSSH's defaults unless [`Algorithms::Same`]
//! asks for those hbdeploy's russh negotiates (see [`same_algorithms`]).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{Lab, LabError, NIX_CONFIG, SSH_PORT, files};

/// What the script does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Only the `nix build` (the warm floor: everything is built already).
    Build,
    /// Build, then copy and activate the hosts one after the other.
    Sequential,
    /// Build, then copy and activate all hosts at once.
    Parallel,
    /// Build and record every host's system path (the untimed step before [`Mode::Deploy`]).
    Prebuild,
    /// Copy and activate all hosts at once, from the paths [`Mode::Prebuild`] recorded.
    Deploy,
    /// Log in to every host at once and run `true`: what any tool that reads each host's state
    /// pays at least, the floor of a warm deployment.
    Logins,
}

impl Mode {
    fn as_str(self) -> &'static str {
        match self {
            Mode::Build => "build",
            Mode::Sequential => "sequential",
            Mode::Parallel => "parallel",
            Mode::Prebuild => "prebuild",
            Mode::Deploy => "deploy",
            Mode::Logins => "logins",
        }
    }
}

/// Which SSH algorithms the plain `ssh` (and `nix copy`'s `ssh`) negotiate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithms {
    /// OpenSSH's defaults (on OpenSSH 9.2 the hybrid post-quantum `sntrup761x25519-sha512`).
    Defaults,
    /// The key exchange and cipher hbdeploy's russh negotiates with the lab's sshd.
    Same,
}

/// russh 0.65's default key exchange preference, most preferred first (`Preferred::DEFAULT`;
/// hbdeploy-ssh keeps russh's defaults apart from compression and host certificates). The
/// `ext-info`/`kex-strict` pseudo-algorithms are left out: they are not key exchanges.
pub const RUSSH_KEX: [&str; 9] = [
    "mlkem768x25519-sha256",
    "curve25519-sha256",
    "curve25519-sha256@libssh.org",
    "diffie-hellman-group-exchange-sha256",
    "diffie-hellman-group18-sha512",
    "diffie-hellman-group17-sha512",
    "diffie-hellman-group16-sha512",
    "diffie-hellman-group15-sha512",
    "diffie-hellman-group14-sha256",
];

/// hbdeploy's cipher preference, from `hbdeploy-ssh` itself (russh's, with AES-256-GCM first
/// where the processor has AES instructions).
pub fn hbdeploy_ciphers() -> Vec<&'static str> {
    hbdeploy_ssh::cipher_names()
}

/// The first of `ours` (the client's preference) that `theirs` supports: what SSH negotiates.
fn negotiate<'a>(ours: &[&'a str], theirs: &[String]) -> Option<&'a str> {
    ours.iter().copied().find(|a| theirs.iter().any(|t| t == a))
}

/// `(kex, cipher)` that hbdeploy's russh negotiates with the lab's sshd: the first of its
/// preferences that this machine's OpenSSH supports (`ssh -Q kex`, `ssh -Q cipher`; the lab's
/// sshd is the same OpenSSH: the machine's own on namespace hosts, Debian's of the same release
/// on systemd hosts). With OpenSSH 9.2: `curve25519-sha256`, and `aes256-gcm@openssh.com` on a
/// processor with AES instructions (`chacha20-poly1305@openssh.com` without).
pub fn same_algorithms() -> Result<(String, String), LabError> {
    let query = |what: &str| -> Result<Vec<String>, LabError> {
        let out = Command::new("ssh")
            .args(["-Q", what])
            .output()
            .map_err(|source| LabError::Io {
                what: format!("run ssh -Q {what}"),
                source,
            })?;
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| l.trim().to_owned())
            .collect())
    };
    let none = |what: &str| LabError::Command {
        what: format!("ssh -Q {what}"),
        status: "no algorithm in common with russh".to_owned(),
        stderr: String::new(),
    };
    let kex = negotiate(&RUSSH_KEX, &query("kex")?).ok_or_else(|| none("kex"))?;
    let cipher = negotiate(&hbdeploy_ciphers(), &query("cipher")?).ok_or_else(|| none("cipher"))?;
    Ok((kex.to_owned(), cipher.to_owned()))
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
         -o GlobalKnownHostsFile=/dev/null -o ConnectTimeout=10 -o ServerAliveInterval=5 \
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
        .replace(
            "@prebuilt@",
            &quote(&lab.dir().join("prebuilt.json").to_string_lossy()),
        )
}

const SCRIPT: &str = r#"#!/usr/bin/env bash
# The plain-command floor of hbdeploy's benchmark (written by hbdeploy-bench).
# Usage: baseline.sh build|sequential|parallel|prebuild|deploy|logins
set -euo pipefail
export NIX_CONFIG=@nix_config@
flake=@flake@
# BASELINE_SSH_ALGORITHMS: e.g. `-o KexAlgorithms=curve25519-sha256 -o Ciphers=...` (no spaces
# inside an option), or empty for OpenSSH's defaults.
ssh_opts=(@ssh_opts@ ${BASELINE_SSH_ALGORITHMS:-})
export NIX_SSHOPTS="${ssh_opts[*]}"
hosts=(@hosts@)
addresses=(@addresses@)

# `prebuild` keeps the build's JSON here for `deploy`.
prebuilt=@prebuilt@
case "$1" in
  deploy)
    built=$prebuilt
    [ -s "$built" ] || { echo "run $0 prebuild first" >&2; exit 1; } ;;
  logins) ;;
  *)
    built=$(mktemp)
    trap 'rm -f "$built"' EXIT
    installables=()
    for host in "${hosts[@]}"; do
      installables+=("$flake#nixosConfigurations.$host.config.system.build.toplevel")
    done
    nix build --no-link --json "${installables[@]}" > "$built" ;;
esac

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

# One login per host, nothing run but `true`: the floor of a warm deployment.
login() {
  ssh "${ssh_opts[@]}" "root@$1" true
}

case "$1" in
  build) ;;
  prebuild) cp "$built" "$prebuilt" ;;
  sequential)
    for i in "${!hosts[@]}"; do deploy "${hosts[$i]}" "${addresses[$i]}"; done ;;
  parallel|deploy|logins)
    pids=()
    for i in "${!hosts[@]}"; do
      if [ "$1" = logins ]; then
        login "${addresses[$i]}" & pids+=($!)
      else
        deploy "${hosts[$i]}" "${addresses[$i]}" & pids+=($!)
      fi
    done
    failed=0
    for pid in "${pids[@]}"; do wait "$pid" || failed=1; done
    exit "$failed" ;;
  *) echo "usage: $0 build|sequential|parallel|prebuild|deploy|logins" >&2; exit 2 ;;
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
        files::write(&path, &script(lab))?;
        Ok(Baseline { path })
    }

    /// Where the script is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The command that runs it in `mode`, with OpenSSH's default algorithms.
    pub fn command(&self, mode: Mode) -> Command {
        let mut command = Command::new("bash");
        command
            .arg(&self.path)
            .arg(mode.as_str())
            .env_remove("BASELINE_SSH_ALGORITHMS");
        command
    }

    /// The command that runs it in `mode` with `algorithms`; `same` is what
    /// [`same_algorithms`] found.
    pub fn command_with(
        &self,
        mode: Mode,
        algorithms: Algorithms,
        same: &(String, String),
    ) -> Command {
        let mut command = self.command(mode);
        if algorithms == Algorithms::Same {
            command.env(
                "BASELINE_SSH_ALGORITHMS",
                format!("-o KexAlgorithms={} -o Ciphers={}", same.0, same.1),
            );
        }
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
    fn negotiation_takes_the_client_s_first_common_algorithm() {
        let server: Vec<String> = ["sntrup761x25519-sha512", "curve25519-sha256"]
            .map(str::to_owned)
            .to_vec();
        assert_eq!(negotiate(&RUSSH_KEX, &server), Some("curve25519-sha256"));
        assert_eq!(negotiate(&RUSSH_KEX, &[]), None);
        let (kex, cipher) = same_algorithms().expect("ssh -Q works");
        assert!(RUSSH_KEX.contains(&kex.as_str()));
        assert!(hbdeploy_ciphers().contains(&cipher.as_str()), "{cipher}");
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

    #[test]
    fn the_login_floor_logs_in_to_every_host_at_once_and_runs_nothing() {
        assert!(SCRIPT.contains(r#"ssh "${ssh_opts[@]}" "root@$1" true"#));
        assert!(SCRIPT.contains(r#"login "${addresses[$i]}" & pids+=($!)"#));
        // Nothing is built first: the floor is the logins alone.
        assert!(SCRIPT.contains("  logins) ;;\n  *)\n    built=$(mktemp)"));
        assert_eq!(Mode::Logins.as_str(), "logins");
    }
}
