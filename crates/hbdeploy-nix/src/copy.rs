//! Copying a closure to a host with `nix copy --to ssh-ng://…`, with the same port, identity and
//! known_hosts file as hbdeploy's own SSH connection, and strict host-key checking.

use std::path::PathBuf;

use crate::command::{self, OutputSink};
use crate::{FEATURES, Nix, NixError, StorePath};

/// Where `nix copy` sends a closure, and how its ssh must connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshDest {
    /// Login user.
    pub user: String,
    /// DNS name or IP.
    pub address: String,
    /// sshd port.
    pub port: u16,
    /// Private key; `None` leaves key choice to ssh (and its agent). May also be a public key
    /// file, whose private key `agent` holds.
    pub identity_file: Option<PathBuf>,
    /// The ssh-agent socket ssh must use (`SSH_AUTH_SOCK`) instead of the caller's: one that
    /// holds already decrypted keys, so that ssh never asks for a passphrase.
    pub agent: Option<PathBuf>,
    /// The only known_hosts file ssh may trust.
    pub known_hosts: PathBuf,
    /// ssh's ConnectTimeout, in seconds.
    pub connect_timeout_secs: u64,
    /// ssh's ServerAliveInterval (seconds) and ServerAliveCountMax; `None` sends no keepalives.
    pub keepalive: Option<(u64, u64)>,
    /// An ssh config file (`-F`) and the host in it to jump through (`-J`), for a host behind a
    /// jump host.
    pub jump: Option<(PathBuf, String)>,
    /// Ask for a plain host key only, never a host certificate: for a host whose keys are pinned,
    /// where a certificate must not stand in for the pinned key.
    pub plain_host_keys: bool,
}

/// How `nix copy` sends a closure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CopyOptions {
    /// Let the destination fetch what its own binary caches have (`--substitute-on-destination`).
    pub substitute: bool,
    /// Skip the destination's signature checks (`--no-check-sigs`): only for a user the
    /// destination's nix trusts, and only when the closure is not signed.
    pub no_check_sigs: bool,
    /// Compress the SSH stream (`?compress=true`).
    pub compress: bool,
    /// Copy the derivation (and its build inputs) instead of its outputs (`--derivation`).
    pub derivation: bool,
}

/// The `HostKeyAlgorithms` value that removes every certificate algorithm from OpenSSH's
/// defaults, leaving plain host keys.
pub const NO_CERTIFICATES: &str = "-*-cert-v01@openssh.com";

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

    /// The `NIX_SSHOPTS` value. nix splits it on white space, so paths with spaces are refused.
    pub fn ssh_opts(&self) -> Result<String, NixError> {
        let mut opts = vec![
            "-p".to_owned(),
            self.port.to_string(),
            "-o".to_owned(),
            "BatchMode=yes".to_owned(),
            "-o".to_owned(),
            "StrictHostKeyChecking=yes".to_owned(),
            "-o".to_owned(),
            format!(
                "UserKnownHostsFile={}",
                checked("known-hosts", &self.known_hosts)?
            ),
            "-o".to_owned(),
            "GlobalKnownHostsFile=/dev/null".to_owned(),
            "-o".to_owned(),
            format!("ConnectTimeout={}", self.connect_timeout_secs),
            "-o".to_owned(),
            format!(
                "ServerAliveInterval={}",
                self.keepalive.map_or(0, |(interval, _)| interval)
            ),
            "-o".to_owned(),
            format!(
                "ServerAliveCountMax={}",
                self.keepalive.map_or(3, |(_, count)| count)
            ),
        ];
        if self.plain_host_keys {
            opts.extend([
                "-o".to_owned(),
                format!("HostKeyAlgorithms={NO_CERTIFICATES}"),
            ]);
        }
        // hbdeploy's own connection reads no ssh config, so neither does this one: both reach
        // the same address, port and user and trust the same keys.
        match &self.jump {
            Some((config, alias)) => opts.extend([
                "-F".to_owned(),
                checked("ssh config", config)?,
                "-J".to_owned(),
                alias.clone(),
            ]),
            None => opts.extend(["-F".to_owned(), "/dev/null".to_owned()]),
        }
        if let Some(identity) = &self.identity_file {
            opts.extend([
                "-i".to_owned(),
                checked("identity-file", identity)?,
                "-o".to_owned(),
                "IdentitiesOnly=yes".to_owned(),
            ]);
        }
        Ok(opts.join(" "))
    }
}

fn checked(what: &'static str, path: &std::path::Path) -> Result<String, NixError> {
    let text = path.to_string_lossy().into_owned();
    if text.contains(char::is_whitespace) {
        Err(NixError::UnsafeSshOption { what, path: text })
    } else {
        Ok(text)
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
    let mut uri = dest.uri();
    if options.compress {
        uri.push_str("?compress=true");
    }
    args.extend(["--to".to_owned(), uri, path.to_string()]);
    args
}

/// The `nix copy` process: its arguments, and ssh's options and agent in its environment.
fn copy_command(
    nix: &std::path::Path,
    dest: &SshDest,
    path: &StorePath,
    options: CopyOptions,
) -> Result<tokio::process::Command, NixError> {
    let mut cmd = command::cmd(nix, copy_args(dest, path, options));
    cmd.env("NIX_SSHOPTS", dest.ssh_opts()?);
    if let Some(agent) = &dest.agent {
        cmd.env("SSH_AUTH_SOCK", agent);
    }
    Ok(cmd)
}

impl Nix {
    /// Signs the closure of `path` in the local store with the secret key in `key_file`.
    pub async fn sign(&self, path: &StorePath, key_file: &std::path::Path) -> Result<(), NixError> {
        let shown = format!("nix store sign -r -k {} {path}", key_file.display());
        let mut args: Vec<String> = FEATURES.iter().map(|s| (*s).to_owned()).collect();
        args.extend(["store", "sign", "-r", "-k"].map(String::from));
        args.push(key_file.to_string_lossy().into_owned());
        args.push(path.to_string());
        let output = command::run(command::cmd(&self.nix, &args), &shown, &mut |_| {}).await?;
        if output.success {
            Ok(())
        } else {
            Err(NixError::failed(&shown, &output))
        }
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
            compress: false,
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
        let cmd = copy_command(&self.nix, dest, path, options)?;
        let output = command::run(cmd, &shown, on_line).await?;
        if output.success {
            Ok(())
        } else {
            Err(NixError::failed(&shown, &output))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dest() -> SshDest {
        SshDest {
            user: "root".to_owned(),
            address: "127.77.0.11".to_owned(),
            port: 2222,
            identity_file: Some(PathBuf::from("/lab/id_ed25519")),
            agent: None,
            known_hosts: PathBuf::from("/lab/known_hosts"),
            connect_timeout_secs: 7,
            keepalive: Some((5, 3)),
            jump: None,
            plain_host_keys: false,
        }
    }

    #[test]
    fn ssh_options_pin_port_identity_and_trust_store() {
        assert_eq!(
            dest().ssh_opts().expect("no spaces"),
            "-p 2222 -o BatchMode=yes -o StrictHostKeyChecking=yes \
             -o UserKnownHostsFile=/lab/known_hosts -o GlobalKnownHostsFile=/dev/null \
             -o ConnectTimeout=7 -o ServerAliveInterval=5 -o ServerAliveCountMax=3 \
             -F /dev/null -i /lab/id_ed25519 -o IdentitiesOnly=yes"
        );
    }

    #[test]
    fn a_pinned_host_is_asked_for_plain_keys_only() {
        let mut d = dest();
        d.plain_host_keys = true;
        assert!(
            d.ssh_opts()
                .expect("no spaces")
                .contains(" -o HostKeyAlgorithms=-*-cert-v01@openssh.com "),
            "{:?}",
            d.ssh_opts()
        );
    }

    #[test]
    fn ssh_gets_the_runs_agent_only_when_there_is_one() {
        let path = StorePath::new("/nix/store/1j1d0hfqa121v0sk9380s5hrd4xm6g1y-nixos-system-h1")
            .expect("valid");
        let options = CopyOptions {
            substitute: true,
            no_check_sigs: true,
            compress: false,
            derivation: false,
        };
        let agent = |d: &SshDest| {
            let cmd = copy_command(std::path::Path::new("nix"), d, &path, options).expect("cmd");
            cmd.as_std()
                .get_envs()
                .find(|(name, _)| *name == "SSH_AUTH_SOCK")
                .and_then(|(_, value)| value.map(PathBuf::from))
        };
        assert_eq!(agent(&dest()), None, "the caller's own agent is inherited");
        let mut d = dest();
        d.agent = Some(PathBuf::from("/tmp/hbdeploy-agent-1-x/agent.sock"));
        assert_eq!(
            agent(&d),
            Some(PathBuf::from("/tmp/hbdeploy-agent-1-x/agent.sock"))
        );
    }

    #[test]
    fn paths_with_spaces_are_refused() {
        let mut d = dest();
        d.known_hosts = PathBuf::from("/my files/known_hosts");
        assert!(matches!(
            d.ssh_opts(),
            Err(NixError::UnsafeSshOption {
                what: "known-hosts",
                ..
            })
        ));
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
            compress: false,
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
        let signed_slow_link = CopyOptions {
            substitute: false,
            no_check_sigs: false,
            compress: true,
            derivation: true,
        };
        assert_eq!(
            &copy_args(&dest(), &path, signed_slow_link)[2..],
            [
                "copy",
                "--derivation",
                "--to",
                "ssh-ng://root@127.77.0.11?compress=true",
                path.as_str()
            ]
        );
    }
}
