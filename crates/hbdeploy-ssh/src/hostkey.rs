//! Strict host-key checking: a key is accepted only when the known_hosts file lists it for this
//! host and port. An unknown key, a changed key and an unreadable file are all refusals, each with
//! what the user needs to fix it.

use std::path::{Path, PathBuf};

use russh::keys::{HashAlg, PublicKeyOrCertificate};

use crate::Target;
use crate::known_hosts::{self, Lookup};

/// The result of checking a server's host key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostKeyVerdict {
    /// The key is listed for this host in the known_hosts file.
    Trusted,
    /// The host is not in the file (or the file does not exist).
    Unknown {
        /// SHA256 fingerprint of the offered key.
        fingerprint: String,
        /// The offered key in OpenSSH form, ready to be reviewed and added.
        key_line: String,
        /// The known_hosts file that was searched.
        file: PathBuf,
    },
    /// The file lists a different key of the same type for this host.
    Changed {
        /// SHA256 fingerprint of the offered key.
        fingerprint: String,
        /// The known_hosts file.
        file: PathBuf,
        /// The line that holds the old key (1-based).
        line: usize,
    },
    /// An `@revoked` line lists the offered key.
    Revoked {
        /// SHA256 fingerprint of the offered key.
        fingerprint: String,
        /// The known_hosts file.
        file: PathBuf,
        /// The `@revoked` line (1-based).
        line: usize,
    },
    /// Keys are pinned for the host in fleet.toml, and the offered one is none of them (nor in
    /// the known_hosts file).
    NotPinned {
        /// SHA256 fingerprint of the offered key.
        fingerprint: String,
    },
    /// The file exists but could not be read or parsed.
    Unreadable {
        /// The known_hosts file.
        file: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The server offered a certificate, which is not supported yet.
    Certificate,
}

impl std::fmt::Display for HostKeyVerdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HostKeyVerdict::Trusted => write!(f, "trusted"),
            HostKeyVerdict::Unknown {
                fingerprint, file, ..
            } => write!(f, "unknown key {fingerprint} (not in {})", file.display()),
            HostKeyVerdict::Changed {
                fingerprint,
                file,
                line,
            } => write!(
                f,
                "HOST KEY CHANGED: the host offered {fingerprint}, but {}:{line} holds a different \
                 key; this may be a man-in-the-middle attack",
                file.display()
            ),
            HostKeyVerdict::Revoked {
                fingerprint,
                file,
                line,
            } => write!(
                f,
                "the host offered {fingerprint}, which {}:{line} marks @revoked",
                file.display()
            ),
            HostKeyVerdict::NotPinned { fingerprint } => write!(
                f,
                "HOST KEY MISMATCH: the host offered {fingerprint}, which is not the host-key \
                 pinned in fleet.toml; this may be a man-in-the-middle attack"
            ),
            HostKeyVerdict::Unreadable { file, reason } => {
                write!(f, "cannot read {}: {reason}", file.display())
            }
            HostKeyVerdict::Certificate => {
                write!(
                    f,
                    "the host offered a certificate; host certificates are not supported yet"
                )
            }
        }
    }
}

impl HostKeyVerdict {
    /// What the user should do about a refused key.
    pub fn hint(&self) -> String {
        match self {
            HostKeyVerdict::Unknown { key_line, file, .. } => format!(
                "verify the fingerprint out of band, then add this line to {}: {key_line}",
                file.display()
            ),
            HostKeyVerdict::Changed { file, line, .. } => format!(
                "if the host was reinstalled, remove line {line} of {} and add its new key",
                file.display()
            ),
            HostKeyVerdict::Revoked { .. } => {
                "the host uses a key that must never be trusted again: give it a new host key"
                    .to_owned()
            }
            HostKeyVerdict::NotPinned { .. } => "if the host was reinstalled, check its new key \
                 out of band and replace host-key in fleet.toml (hbdeploy keyscan HOST shows it)"
                .to_owned(),
            HostKeyVerdict::Unreadable { file, .. } => {
                format!("fix or remove {}", file.display())
            }
            HostKeyVerdict::Trusted | HostKeyVerdict::Certificate => {
                "add the host's plain public key to known_hosts".to_owned()
            }
        }
    }
}

/// Checks `key` for `target` against `target.known_hosts`.
pub(crate) fn check(target: &Target, key: &PublicKeyOrCertificate) -> HostKeyVerdict {
    let PublicKeyOrCertificate::PublicKey { key, .. } = key else {
        return HostKeyVerdict::Certificate;
    };
    let verdict = check_key(
        &target.address,
        target.port,
        key,
        target.known_hosts.as_path(),
    );
    let verdict = pinned(verdict, key, &target.pinned_keys);
    match verdict {
        HostKeyVerdict::Unknown { key_line, file, .. } if target.accept_new => {
            learn(&file, &key_line)
        }
        other => other,
    }
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

/// `TYPE BASE64` of a key, without its comment: the form of known_hosts and `host-key`.
pub fn key_text(key: &russh::keys::PublicKey) -> String {
    let mut plain = key.clone();
    plain.set_comment("");
    plain.to_openssh().unwrap_or_default()
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

fn check_key(
    address: &str,
    port: u16,
    key: &russh::keys::PublicKey,
    file: &Path,
) -> HostKeyVerdict {
    let fingerprint = key.fingerprint(HashAlg::Sha256).to_string();
    let text = match std::fs::read_to_string(file) {
        Ok(text) => text,
        // A missing file is an empty one: every key is unknown.
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(err) => {
            return HostKeyVerdict::Unreadable {
                file: file.to_path_buf(),
                reason: err.to_string(),
            };
        }
    };
    match known_hosts::lookup(&text, address, port, key) {
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

    const KEY_A: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMFEGlvgqrN9D7RX6IDRcvyBOCUCCTViRSpfGeNYakNl";
    const KEY_B: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILhZtwYk6Fhm9Cy5OqQFdrFf/rBaGqyesywtcj9Y96qP";

    fn key(line: &str) -> russh::keys::PublicKey {
        russh::keys::PublicKey::from_openssh(line).expect("test key parses")
    }

    fn verdict(file_text: Option<&str>, address: &str, port: u16, offered: &str) -> HostKeyVerdict {
        let dir = std::env::temp_dir().join(format!(
            "hbdeploy-ssh-hostkey-{}-{}",
            std::process::id(),
            file_text.map(str::len).unwrap_or(0) + port as usize + address.len()
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let file = dir.join("known_hosts");
        let _ = std::fs::remove_file(&file);
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
            got.hint().contains("10.0.0.3 ssh-ed25519"),
            "{}",
            got.hint()
        );
    }
}
