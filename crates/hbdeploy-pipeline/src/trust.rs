//! One trust store for russh and `nix copy`: when a host has keys pinned in fleet.toml, the
//! `ssh` that `nix copy` runs gets a known_hosts file holding the configured file's lines plus
//! the pinned keys, so both sides accept exactly the same keys (and `@revoked` lines still apply).

use std::path::PathBuf;

use hbdeploy_ssh::Target;

/// The known_hosts file `nix copy` should use for a target; a temporary one is removed on drop.
#[derive(Debug)]
pub(crate) struct TrustFile {
    path: PathBuf,
    temporary: bool,
}

impl TrustFile {
    /// The file to pass as `UserKnownHostsFile`.
    pub(crate) fn path(&self) -> &std::path::Path {
        &self.path
    }
}

impl Drop for TrustFile {
    fn drop(&mut self) {
        if self.temporary {
            let _ = std::fs::remove_file(&self.path);
        }
    }
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
    if target.pinned_keys.is_empty() {
        return Ok(TrustFile {
            path: target.known_hosts.clone(),
            temporary: false,
        });
    }
    let mut text = match std::fs::read_to_string(&target.known_hosts) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(source) => return Err((target.known_hosts.clone(), source)),
    };
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(&pin_lines(target));
    let path = std::env::temp_dir().join(format!(
        "hbdeploy-{}-{token}-known_hosts",
        std::process::id()
    ));
    std::fs::write(&path, text).map_err(|source| (path.clone(), source))?;
    Ok(TrustFile {
        path,
        temporary: true,
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
            known_hosts: known.clone(),
            pinned_keys: vec!["ssh-ed25519 AAAApinned".to_owned()],
            accept_new: false,
            connect_timeout: Duration::from_secs(1),
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
            ..target
        };
        assert_eq!(for_copy(&plain, "t2").expect("file").path(), known);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
