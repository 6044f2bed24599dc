//! Strict host-key checking: a key is accepted only when the known_hosts file lists it for this
//! host and port (or fleet.toml pins it), and a host certificate only when a CA listed for the
//! host vouches for it (`hostcert.rs`). An unknown key, a changed key, a refused certificate and
//! an unreadable file are all refusals, each with what the user needs to fix it.

use std::path::Path;

use russh::keys::{HashAlg, PublicKey, PublicKeyOrCertificate};

use crate::Target;
use crate::hostcert;
use crate::known_hosts::{self, Lookup, read_known_hosts};
use crate::verdict::{HostKeyVerdict, key_text};

/// Checks what the host offered for `target` against `target.known_hosts` and its pins, at
/// `now` (seconds since the Unix epoch; certificates only).
pub(crate) fn check(target: &Target, offered: &PublicKeyOrCertificate, now: u64) -> HostKeyVerdict {
    let file = target.known_hosts.as_path();
    let text = match read(file) {
        Ok(text) => text,
        Err(verdict) => return verdict,
    };
    let (address, port) = (target.address.as_str(), target.port);
    match offered {
        PublicKeyOrCertificate::PublicKey { key, .. } => {
            let verdict = pinned(
                judge_key(&text, address, port, key, file),
                key,
                &target.pinned_keys,
            );
            match verdict {
                HostKeyVerdict::Unknown { key_line, file, .. } if target.accept_new => {
                    learn(&file, &key_line)
                }
                other => other,
            }
        }
        PublicKeyOrCertificate::Certificate(cert) => {
            let key = PublicKey::new(cert.public_key().clone(), "");
            if !target.pinned_keys.is_empty() {
                // Certificates are not asked for from a host with pins (`hostcert::algorithms`):
                // should one come anyway, only its key counts, as a plain key would.
                return pinned(
                    judge_key(&text, address, port, &key, file),
                    &key,
                    &target.pinned_keys,
                );
            }
            match hostcert::check(&text, file, address, port, cert, now) {
                verdict @ (HostKeyVerdict::Trusted
                | HostKeyVerdict::Revoked { .. }
                | HostKeyVerdict::RevokedAuthority { .. }) => verdict,
                // As OpenSSH: a certificate refused for any other reason still leaves its key,
                // trusted if known_hosts lists it as a plain key for this host. Never learned.
                refused => match judge_key(&text, address, port, &key, file) {
                    HostKeyVerdict::Trusted => HostKeyVerdict::Trusted,
                    _ => refused,
                },
            }
        }
    }
}

/// [`read_known_hosts`], with a failure as the verdict on the host.
fn read(file: &Path) -> Result<String, HostKeyVerdict> {
    read_known_hosts(file).map_err(|err| match err {
        hbdeploy_files::FileError::Io { source, .. } => HostKeyVerdict::Unreadable {
            file: file.to_path_buf(),
            reason: source.to_string(),
        },
        refused => HostKeyVerdict::NotAFile {
            file: file.to_path_buf(),
            reason: refused.to_string(),
        },
    })
}

/// `accept-new`: appends `line` to `file` (creating it) and trusts the key.
fn learn(file: &Path, line: &str) -> HostKeyVerdict {
    use std::io::Write;
    let appended = file
        .parent()
        .map_or(Ok(()), std::fs::create_dir_all)
        .and_then(|()| {
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(file)?;
            writeln!(f, "{line}")
        });
    match appended {
        Ok(()) => HostKeyVerdict::Trusted,
        Err(err) => HostKeyVerdict::Unreadable {
            file: file.to_path_buf(),
            reason: format!("cannot add the new key: {err}"),
        },
    }
}

/// Applies the keys pinned in fleet.toml over the known_hosts verdict: a pinned key is trusted
/// unless known_hosts revoked it; with pins, a key that matches neither is refused as not pinned.
fn pinned(
    verdict: HostKeyVerdict,
    key: &russh::keys::PublicKey,
    pins: &[String],
) -> HostKeyVerdict {
    if pins.is_empty() {
        return verdict;
    }
    let matches_pin = pins.iter().any(|pin| {
        russh::keys::PublicKey::from_openssh(pin).is_ok_and(|p| p.key_data() == key.key_data())
    });
    match verdict {
        HostKeyVerdict::Revoked { .. } | HostKeyVerdict::Trusted => verdict,
        _ if matches_pin => HostKeyVerdict::Trusted,
        HostKeyVerdict::Unknown { fingerprint, .. } => HostKeyVerdict::NotPinned { fingerprint },
        other => other,
    }
}

#[cfg(test)]
fn check_key(address: &str, port: u16, key: &PublicKey, file: &Path) -> HostKeyVerdict {
    match read(file) {
        Ok(text) => judge_key(&text, address, port, key, file),
        Err(verdict) => verdict,
    }
}

/// Judges a plain `key` against the known_hosts `text` read from `file`.
fn judge_key(text: &str, address: &str, port: u16, key: &PublicKey, file: &Path) -> HostKeyVerdict {
    let fingerprint = key.fingerprint(HashAlg::Sha256).to_string();
    match known_hosts::lookup(text, address, port, key) {
        Lookup::Trusted => HostKeyVerdict::Trusted,
        Lookup::Unknown => HostKeyVerdict::Unknown {
            fingerprint,
            key_line: format!(
                "{} {}",
                known_hosts::host_pattern(address, port),
                key_text(key)
            ),
            file: file.to_path_buf(),
        },
        Lookup::Changed { line } => HostKeyVerdict::Changed {
            fingerprint,
            file: file.to_path_buf(),
            line,
        },
        Lookup::Revoked { line } => HostKeyVerdict::Revoked {
            fingerprint,
            file: file.to_path_buf(),
            line,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hbdeploy_files::Scratch;

    const KEY_A: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMFEGlvgqrN9D7RX6IDRcvyBOCUCCTViRSpfGeNYakNl";
    const KEY_B: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILhZtwYk6Fhm9Cy5OqQFdrFf/rBaGqyesywtcj9Y96qP";

    fn key(line: &str) -> russh::keys::PublicKey {
        russh::keys::PublicKey::from_openssh(line).expect("test key parses")
    }

    /// [`check_key`] of `offered` for `address:port` against a known_hosts file holding
    /// `file_text` (none: no file), in a directory of its own that is removed afterwards: one per
    /// call, as the tests run at once and each removes its directory when done.
    fn verdict(file_text: Option<&str>, address: &str, port: u16, offered: &str) -> HostKeyVerdict {
        static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = Scratch::fresh(&format!("hbdeploy-ssh-hostkey-{call}")).expect("temp dir");
        let file = dir.join("known_hosts");
        if let Some(text) = file_text {
            std::fs::write(&file, text).expect("write known_hosts");
        }
        check_key(address, port, &key(offered), &file)
    }

    #[test]
    fn listed_key_is_trusted_on_its_port() {
        let text = format!("[10.0.0.1]:2222 {KEY_A}\n");
        assert_eq!(
            verdict(Some(&text), "10.0.0.1", 2222, KEY_A),
            HostKeyVerdict::Trusted
        );
    }

    #[test]
    fn listed_key_on_another_port_is_unknown() {
        let text = format!("[10.0.0.1]:2222 {KEY_A}\n");
        let got = verdict(Some(&text), "10.0.0.1", 2200, KEY_A);
        let HostKeyVerdict::Unknown { key_line, .. } = got else {
            panic!("expected unknown, got {got:?}");
        };
        assert!(
            key_line.starts_with("[10.0.0.1]:2200 ssh-ed25519 AAAA"),
            "{key_line}"
        );
    }

    #[test]
    fn different_key_of_same_type_is_changed_with_its_line() {
        let text = format!("# comment\nother {KEY_B}\n10.0.0.2 {KEY_A}\n");
        let got = verdict(Some(&text), "10.0.0.2", 22, KEY_B);
        assert!(
            matches!(got, HostKeyVerdict::Changed { line: 3, .. }),
            "expected changed at line 3, got {got:?}"
        );
    }

    #[test]
    fn pins_trust_their_key_refuse_others_and_never_beat_revoked() {
        let unknown = verdict(None, "10.0.0.4", 22, KEY_A);
        assert_eq!(
            pinned(unknown.clone(), &key(KEY_A), &[KEY_A.to_owned()]),
            HostKeyVerdict::Trusted
        );
        assert!(matches!(
            pinned(unknown.clone(), &key(KEY_A), &[KEY_B.to_owned()]),
            HostKeyVerdict::NotPinned { .. }
        ));
        assert_eq!(pinned(unknown.clone(), &key(KEY_A), &[]), unknown);
        let revoked = verdict(
            Some(&format!("@revoked * {KEY_A}\n")),
            "10.0.0.5",
            22,
            KEY_A,
        );
        assert!(
            matches!(revoked, HostKeyVerdict::Revoked { .. }),
            "{revoked:?}"
        );
        assert_eq!(
            pinned(revoked.clone(), &key(KEY_A), &[KEY_A.to_owned()]),
            revoked
        );
    }

    #[test]
    fn missing_file_means_unknown() {
        let got = verdict(None, "10.0.0.3", 22, KEY_A);
        assert!(matches!(got, HostKeyVerdict::Unknown { .. }), "{got:?}");
        assert!(
            got.advice().contains("10.0.0.3 ssh-ed25519"),
            "{}",
            got.advice()
        );
    }
}
