//! Copying a closure to a host with `nix copy --to ssh-ng://…`. nix runs `ssh` from `PATH` for
//! such a store; the caller says which `ssh` (a directory put first on `PATH`) and what it needs
//! in its environment, so this crate knows nothing of how that `ssh` reaches the host.

use std::ffi::OsString;
use std::path::PathBuf;

use crate::command::{self, OutputSink};
use crate::{FEATURES, Nix, NixError, StorePath};

/// Where `nix copy` sends a closure, and which `ssh` it runs to get there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshDest {
    /// Login user, for the store URI (and nix's messages).
    pub user: String,
    /// DNS name or IP, for the store URI (and nix's messages).
    pub address: String,
    /// The directory holding the `ssh` nix must run, put first on its `PATH`.
    pub ssh_dir: PathBuf,
    /// What that `ssh` needs in its environment besides `PATH`.
    pub env: Vec<(String, OsString)>,
}

/// How `nix copy` sends a closure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CopyOptions {
    /// Let the destination fetch what its own binary caches have (`--substitute-on-destination`).
    pub substitute: bool,
    /// Skip the destination's signature checks (`--no-check-sigs`): only for a user the
    /// destination's nix trusts, and only when the closure is not signed.
    pub no_check_sigs: bool,
    /// Copy the derivation (and its build inputs) instead of its outputs (`--derivation`).
    pub derivation: bool,
}

impl SshDest {
    /// The store URI, e.g. `ssh-ng://root@10.0.0.5`.
    pub fn uri(&self) -> String {
        let host = if self.address.contains(':') {
            format!("[{}]", self.address)
        } else {
            self.address.clone()
        };
        format!("ssh-ng://{}@{host}", self.user)
    }

    /// `PATH` with [`SshDest::ssh_dir`] first.
    fn path_env(&self) -> OsString {
        let mut path = self.ssh_dir.clone().into_os_string();
        if let Some(rest) = std::env::var_os("PATH").filter(|p| !p.is_empty()) {
            path.push(":");
            path.push(rest);
        }
        path
    }
}

fn copy_args(dest: &SshDest, path: &StorePath, options: CopyOptions) -> Vec<String> {
    let mut args: Vec<String> = FEATURES.iter().map(|s| (*s).to_owned()).collect();
    args.push("copy".to_owned());
    if options.no_check_sigs {
        args.push("--no-check-sigs".to_owned());
    }
    if options.substitute {
        args.push("--substitute-on-destination".to_owned());
    }
    if options.derivation {
        args.push("--derivation".to_owned());
    }
    args.extend(["--to".to_owned(), dest.uri(), path.to_string()]);
    args
}

/// The `nix copy` process: its arguments, and its `ssh` on `PATH` with that ssh's environment.
fn copy_command(
    nix: &std::path::Path,
    dest: &SshDest,
    path: &StorePath,
    options: CopyOptions,
) -> tokio::process::Command {
    let mut cmd = command::cmd(nix, copy_args(dest, path, options));
    cmd.env("PATH", dest.path_env());
    // The caller's ssh options are for OpenSSH, not for the `ssh` given here.
    cmd.env_remove("NIX_SSHOPTS");
    cmd.envs(dest.env.iter().map(|(name, value)| (name, value)));
    cmd
}

impl Nix {
    /// Signs the closure of `path` in the local store with the secret key in `key_file`.
    pub async fn sign(&self, path: &StorePath, key_file: &std::path::Path) -> Result<(), NixError> {
        let shown = format!("nix store sign -r -k {} {path}", key_file.display());
        let mut args: Vec<String> = FEATURES.iter().map(|s| (*s).to_owned()).collect();
        args.extend(["store", "sign", "-r", "-k"].map(String::from));
        args.push(key_file.to_string_lossy().into_owned());
        args.push(path.to_string());
        command::run_ok(command::cmd(&self.nix, &args), &shown, &mut |_| {}).await
    }

    /// Copies the closure of `path` to `dest` as the deploying user is trusted there (unsigned,
    /// `--no-check-sigs`, the host's caches first). Paths already there are not sent again.
    pub async fn copy_to(
        &self,
        dest: &SshDest,
        path: &StorePath,
        on_line: OutputSink<'_>,
    ) -> Result<(), NixError> {
        let options = CopyOptions {
            substitute: true,
            no_check_sigs: true,
            derivation: false,
        };
        self.copy_with(dest, path, options, on_line).await
    }

    /// Copies the closure of `path` (or, with `options.derivation`, of the derivation `path`)
    /// to `dest`.
    pub async fn copy_with(
        &self,
        dest: &SshDest,
        path: &StorePath,
        options: CopyOptions,
        on_line: OutputSink<'_>,
    ) -> Result<(), NixError> {
        let shown = format!("nix copy --to {} {path}", dest.uri());
        let cmd = copy_command(&self.nix, dest, path, options);
        command::run_ok(cmd, &shown, on_line).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dest() -> SshDest {
        SshDest {
            user: "root".to_owned(),
            address: "127.77.0.11".to_owned(),
            ssh_dir: PathBuf::from("/tmp/relay"),
            env: vec![("HBDEPLOY_RELAY".to_owned(), OsString::from("/tmp/relay/s"))],
        }
    }

    #[test]
    fn nix_runs_the_given_ssh_with_its_environment_and_no_ssh_options() {
        let path = StorePath::new("/nix/store/1j1d0hfqa121v0sk9380s5hrd4xm6g1y-nixos-system-h1")
            .expect("valid");
        let options = CopyOptions {
            substitute: true,
            no_check_sigs: true,
            derivation: false,
        };
        let cmd = copy_command(std::path::Path::new("nix"), &dest(), &path, options);
        let envs: Vec<(String, Option<String>)> = cmd
            .as_std()
            .get_envs()
            .map(|(name, value)| {
                (
                    name.to_string_lossy().into_owned(),
                    value.map(|v| v.to_string_lossy().into_owned()),
                )
            })
            .collect();
        let get = |name: &str| envs.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
        assert!(
            get("PATH")
                .flatten()
                .is_some_and(|p| p.starts_with("/tmp/relay")),
            "{envs:?}"
        );
        assert_eq!(get("NIX_SSHOPTS"), Some(None), "removed");
        assert_eq!(get("HBDEPLOY_RELAY"), Some(Some("/tmp/relay/s".to_owned())));
    }

    #[test]
    fn uri_brackets_ipv6() {
        let mut d = dest();
        assert_eq!(d.uri(), "ssh-ng://root@127.77.0.11");
        d.address = "::1".to_owned();
        assert_eq!(d.uri(), "ssh-ng://root@[::1]");
    }

    #[test]
    fn copy_args_follow_the_options() {
        let path = StorePath::new("/nix/store/1j1d0hfqa121v0sk9380s5hrd4xm6g1y-nixos-system-h1")
            .expect("valid");
        let trusted = CopyOptions {
            substitute: true,
            no_check_sigs: true,
            derivation: false,
        };
        assert_eq!(
            &copy_args(&dest(), &path, trusted)[2..],
            [
                "copy",
                "--no-check-sigs",
                "--substitute-on-destination",
                "--to",
                "ssh-ng://root@127.77.0.11",
                path.as_str()
            ]
        );
        let signed_derivation = CopyOptions {
            substitute: false,
            no_check_sigs: false,
            derivation: true,
        };
        assert_eq!(
            &copy_args(&dest(), &path, signed_derivation)[2..],
            [
                "copy",
                "--derivation",
                "--to",
                "ssh-ng://root@127.77.0.11",
                path.as_str()
            ]
        );
    }
}
