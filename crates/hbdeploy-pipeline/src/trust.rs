//! One trust store for russh and `nix copy`: when a host has keys pinned in fleet.toml, the
//! `ssh` that `nix copy` runs gets a known_hosts file holding the configured file's lines plus
//! the pinned keys, so both sides accept exactly the same keys (and `@revoked` lines still apply).
//! `@cert-authority` lines go through with the rest, and OpenSSH checks host certificates as
//! russh does; a host with pinned keys is asked for plain keys only, on both sides, so its pinned
//! key must match. When a host is reached through jump hosts, `ssh` also gets a config file (`-F`)
//! whose `Host` blocks give each jump host the same strict options, key and known_hosts as the
//! target. An identity file decrypted for this run is never given to `ssh` itself (it would ask
//! for the passphrase, which `BatchMode` forbids): `ssh` gets the run's agent (`SSH_AUTH_SOCK`)
//! and the key's public half, which names the agent's key.

use std::path::PathBuf;

use hbdeploy_ssh::Target;

/// The known_hosts file `nix copy` should use for a target, and the ssh config file naming its
/// jump hosts; temporary files are removed on drop.
#[derive(Debug)]
pub(crate) struct TrustFile {
    path: PathBuf,
    temporary: bool,
    /// `(config file, alias of the first jump host)` when the target is reached through one.
    jump: Option<(PathBuf, String)>,
}

impl TrustFile {
    /// The target's configured known_hosts file as it is, with no jump host: for a target that
    /// has no pinned keys and is reached directly.
    pub(crate) fn configured(target: &Target) -> TrustFile {
        TrustFile {
            path: target.known_hosts.clone(),
            temporary: false,
            jump: None,
        }
    }

    /// The file to pass as `UserKnownHostsFile`.
    pub(crate) fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// The ssh config file and the `-J` alias, for a target behind a jump host.
    pub(crate) fn jump(&self) -> Option<(&std::path::Path, &str)> {
        self.jump
            .as_ref()
            .map(|(file, alias)| (file.as_path(), alias.as_str()))
    }
}

impl Drop for TrustFile {
    fn drop(&mut self) {
        if self.temporary {
            let _ = std::fs::remove_file(&self.path);
        }
        if let Some((file, _)) = &self.jump {
            let _ = std::fs::remove_file(file);
        }
    }
}

/// The public key file naming `target`'s identity in the run's agent, when the agent serves it.
fn served(target: &Target) -> Option<&std::path::Path> {
    let identity = target.identity_file.as_deref()?;
    target.identities.agent_public_file(identity)
}

/// The identity file `ssh` should be given for `target`: the public half of a key the run's
/// agent serves, or the configured file.
fn identity_for_ssh(target: &Target) -> Option<PathBuf> {
    served(target)
        .map(std::path::Path::to_path_buf)
        .or_else(|| target.identity_file.clone())
}

/// Where `nix copy` sends to reach `target`, trusting what `trust` says.
pub(crate) fn dest(target: &Target, trust: &TrustFile) -> hbdeploy_nix::SshDest {
    let chain = jumps(target);
    // The run's agent, when it serves the key of the target or of a jump host on the way.
    let agent = std::iter::once(target)
        .chain(chain.iter().copied())
        .find(|t| served(t).is_some())
        .and_then(|t| t.identities.agent_socket())
        .map(std::path::Path::to_path_buf);
    hbdeploy_nix::SshDest {
        user: target.user.clone(),
        address: target.address.clone(),
        port: target.port,
        identity_file: identity_for_ssh(target),
        agent,
        known_hosts: trust.path().to_path_buf(),
        connect_timeout_secs: target.connect_timeout.as_secs().max(1),
        keepalive: target
            .keepalive
            .map(|(interval, count)| (interval.as_secs().max(1), count as u64)),
        jump: trust
            .jump()
            .map(|(file, alias)| (file.to_path_buf(), alias.to_owned())),
        plain_host_keys: !target.pinned_keys.is_empty(),
    }
}

/// The targets a connection goes through, outermost first (not counting `target` itself).
fn jumps(target: &Target) -> Vec<&Target> {
    let mut chain = Vec::new();
    let mut next = target.jump.as_deref();
    while let Some(jump) = next {
        chain.push(jump);
        next = jump.jump.as_deref();
    }
    chain.reverse();
    chain
}

/// `Host` blocks for every jump host; each later one jumps through the one before it.
fn jump_config(chain: &[&Target], known_hosts: &std::path::Path, token: &str) -> String {
    let mut text = String::new();
    for (index, jump) in chain.iter().enumerate() {
        text.push_str(&format!(
            "Host hbdeploy-jump-{token}-{index}\n  HostName {}\n  Port {}\n  User {}\n  \
             UserKnownHostsFile {}\n  GlobalKnownHostsFile /dev/null\n  \
             StrictHostKeyChecking yes\n  BatchMode yes\n  ConnectTimeout {}\n",
            jump.address,
            jump.port,
            jump.user,
            known_hosts.display(),
            jump.connect_timeout.as_secs().max(1)
        ));
        // The jump host's own connection gets the same keepalives as the target's.
        if let Some((interval, count)) = jump.keepalive {
            text.push_str(&format!(
                "  ServerAliveInterval {}\n  ServerAliveCountMax {count}\n",
                interval.as_secs().max(1)
            ));
        }
        if !jump.pinned_keys.is_empty() {
            text.push_str(&format!(
                "  HostKeyAlgorithms {}\n",
                hbdeploy_nix::NO_CERTIFICATES
            ));
        }
        if let Some(identity) = identity_for_ssh(jump) {
            text.push_str(&format!(
                "  IdentityFile {}\n  IdentitiesOnly yes\n",
                identity.display()
            ));
        }
        if index > 0 {
            text.push_str(&format!(
                "  ProxyJump hbdeploy-jump-{token}-{}\n",
                index - 1
            ));
        }
    }
    text
}

/// The known_hosts lines for `target`'s pinned keys.
fn pin_lines(target: &Target) -> String {
    let name = if target.port == 22 {
        target.address.clone()
    } else {
        format!("[{}]:{}", target.address, target.port)
    };
    target
        .pinned_keys
        .iter()
        .map(|key| format!("{name} {key}\n"))
        .collect()
}

/// The configured known_hosts file, or, with pinned keys, a temporary copy of it with the pins
/// added. Errors name the file that could not be read or written.
pub(crate) fn for_copy(
    target: &Target,
    token: &str,
) -> Result<TrustFile, (PathBuf, std::io::Error)> {
    let chain = jumps(target);
    let mut file = known_hosts_for(target, &chain, token)?;
    if let Some(last) = chain.len().checked_sub(1) {
        let config = std::env::temp_dir().join(format!(
            "hbdeploy-{}-{token}-ssh_config",
            std::process::id()
        ));
        std::fs::write(&config, jump_config(&chain, &file.path, token))
            .map_err(|source| (config.clone(), source))?;
        file.jump = Some((config, format!("hbdeploy-jump-{token}-{last}")));
    }
    Ok(file)
}

/// The known_hosts file for the target and its jump hosts: the configured file as it is, or a
/// temporary file joining every file involved and every pinned key.
fn known_hosts_for(
    target: &Target,
    chain: &[&Target],
    token: &str,
) -> Result<TrustFile, (PathBuf, std::io::Error)> {
    let pins = !target.pinned_keys.is_empty() || chain.iter().any(|j| !j.pinned_keys.is_empty());
    let other_files = chain.iter().any(|j| j.known_hosts != target.known_hosts);
    if !pins && !other_files {
        return Ok(TrustFile::configured(target));
    }
    let mut text = String::new();
    let mut files: Vec<&PathBuf> = vec![&target.known_hosts];
    for jump in chain {
        if !files.contains(&&jump.known_hosts) {
            files.push(&jump.known_hosts);
        }
    }
    for file in files {
        // The same reader as the host-key check: a missing file is empty, and only a regular
        // file of bounded size is read (never a device or a FIFO).
        match hbdeploy_ssh::read_known_hosts(file) {
            Ok(lines) => text.push_str(&lines),
            Err(hbdeploy_files::FileError::Io { source, .. }) => {
                return Err((file.clone(), source));
            }
            Err(refused) => return Err((file.clone(), std::io::Error::other(refused.to_string()))),
        }
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
    }
    text.push_str(&pin_lines(target));
    for jump in chain {
        text.push_str(&pin_lines(jump));
    }
    let path = std::env::temp_dir().join(format!(
        "hbdeploy-{}-{token}-known_hosts",
        std::process::id()
    ));
    std::fs::write(&path, text).map_err(|source| (path.clone(), source))?;
    Ok(TrustFile {
        path,
        temporary: true,
        jump: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn pins_are_appended_to_a_temporary_copy_that_goes_away() {
        let dir = std::env::temp_dir().join(format!("hbdeploy-trust-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let known = dir.join("known_hosts");
        std::fs::write(&known, "@revoked * ssh-ed25519 AAAArevoked").expect("write");
        let target = Target {
            address: "10.0.0.9".to_owned(),
            port: 2222,
            user: "root".to_owned(),
            identity_file: None,
            identities: hbdeploy_ssh::Identities::default(),
            known_hosts: known.clone(),
            pinned_keys: vec!["ssh-ed25519 AAAApinned".to_owned()],
            accept_new: false,
            jump: None,
            connect_timeout: Duration::from_secs(1),
            escalation: None,
            keepalive: None,
        };
        let file = for_copy(&target, "t1").expect("file");
        let path = file.path().to_path_buf();
        assert_ne!(path, known);
        assert_eq!(
            std::fs::read_to_string(&path).expect("read"),
            "@revoked * ssh-ed25519 AAAArevoked\n[10.0.0.9]:2222 ssh-ed25519 AAAApinned\n"
        );
        drop(file);
        assert!(!path.exists());
        let plain = Target {
            pinned_keys: Vec::new(),
            accept_new: false,
            jump: None,
            ..target
        };
        assert_eq!(for_copy(&plain, "t2").expect("file").path(), known);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn cert_authorities_reach_nix_copy_and_pins_refuse_certificates() {
        let dir =
            std::env::temp_dir().join(format!("hbdeploy-trust-ca-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let known = dir.join("known_hosts");
        let ca = "@cert-authority * ssh-ed25519 AAAAca\n";
        std::fs::write(&known, ca).expect("write");
        let target = Target {
            address: "10.0.0.9".to_owned(),
            port: 22,
            user: "root".to_owned(),
            identity_file: None,
            identities: hbdeploy_ssh::Identities::default(),
            known_hosts: known.clone(),
            pinned_keys: Vec::new(),
            accept_new: false,
            jump: None,
            connect_timeout: Duration::from_secs(1),
            escalation: None,
            keepalive: None,
        };
        // Without pins: the configured file itself, CA line and all, and certificates allowed.
        let file = for_copy(&target, "c1").expect("file");
        assert_eq!(file.path(), known);
        assert!(!dest(&target, &file).plain_host_keys);
        // With pins on the target and a jump host: the CA line is kept in the joined copy, and
        // only the pinned hosts are asked for plain keys.
        let pinned = Target {
            pinned_keys: vec!["ssh-ed25519 AAAApinned".to_owned()],
            jump: Some(Box::new(Target {
                address: "10.0.0.1".to_owned(),
                ..target.clone()
            })),
            ..target.clone()
        };
        let file = for_copy(&pinned, "c2").expect("file");
        let text = std::fs::read_to_string(file.path()).expect("read");
        assert!(text.starts_with(ca), "{text}");
        assert!(dest(&pinned, &file).plain_host_keys);
        let chain = jumps(&pinned);
        assert!(!jump_config(&chain, file.path(), "c2").contains("HostKeyAlgorithms"));
        assert!(!jump_config(&chain, file.path(), "c2").contains("ServerAlive"));
        let mut kept_alive = (*chain[0]).clone();
        kept_alive.keepalive = Some((Duration::from_secs(7), 4));
        assert!(
            jump_config(&[&kept_alive], file.path(), "c2")
                .contains("  ServerAliveInterval 7\n  ServerAliveCountMax 4\n")
        );
        let mut pinned_jump = (*chain[0]).clone();
        pinned_jump.pinned_keys = vec!["ssh-ed25519 AAAAjump".to_owned()];
        assert!(
            jump_config(&[&pinned_jump], file.path(), "c2")
                .contains("  HostKeyAlgorithms -*-cert-v01@openssh.com\n")
        );
        drop(file);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// An ed25519 key without a passphrase (made for the tests with ssh-keygen).
    const KEY: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/plain_ed25519"
    ));

    #[tokio::test]
    async fn a_decrypted_key_reaches_ssh_through_the_runs_agent_never_from_its_file() {
        let dir = std::env::temp_dir().join(format!("hbdeploy-trust-agent-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("fleet_key");
        std::fs::write(&file, KEY).expect("write");
        let key = hbdeploy_ssh::decrypt(&file, "").expect("key");
        let agent =
            hbdeploy_ssh::KeyAgent::start(&hbdeploy_ssh::Identities::new([(file.clone(), key)]))
                .await
                .expect("agent");
        let identities = agent.identities();
        let public = identities
            .agent_public_file(&file)
            .expect("served")
            .to_path_buf();
        let jump = Target {
            address: "10.0.0.1".to_owned(),
            port: 22,
            user: "root".to_owned(),
            identity_file: Some(file.clone()),
            identities: identities.clone(),
            known_hosts: dir.join("known_hosts"),
            pinned_keys: Vec::new(),
            accept_new: false,
            jump: None,
            connect_timeout: Duration::from_secs(1),
            escalation: None,
            keepalive: None,
        };
        let target = Target {
            address: "10.0.0.9".to_owned(),
            jump: Some(Box::new(jump.clone())),
            ..jump.clone()
        };
        let trust = for_copy(&target, "t3").expect("files");
        let to = dest(&target, &trust);
        assert_eq!(to.identity_file.as_deref(), Some(public.as_path()));
        assert_eq!(to.agent.as_deref(), identities.agent_socket());
        let (config, _) = trust.jump().expect("a jump host");
        let config = std::fs::read_to_string(config).expect("config");
        assert!(
            config.contains(&format!("IdentityFile {}\n", public.display())),
            "{config}"
        );
        assert!(!config.contains(&file.display().to_string()), "{config}");

        // Without the run's keys, ssh gets the file and the caller's own agent.
        let plain = Target {
            identities: hbdeploy_ssh::Identities::default(),
            jump: None,
            ..jump
        };
        let to = dest(&plain, &TrustFile::configured(&plain));
        assert_eq!(to.identity_file.as_deref(), Some(file.as_path()));
        assert_eq!(to.agent, None);
        drop(trust);
        drop(agent);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
