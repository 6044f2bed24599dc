//! Strict host-key checking: a key is accepted only when the known_hosts file lists it for this
//! host and port (or fleet.toml pins it), and a host certificate only when a CA listed for the
//! host vouches for it (`hostcert.rs`). An unknown key, a changed key, a refused certificate and
//! an unreadable file are all refusals, each with what the user needs to fix it.

use std::path::{Path, PathBuf};

use russh::keys::{HashAlg, PublicKey, PublicKeyOrCertificate};

use crate::Target;
use crate::hostcert::{self, utc};
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
    /// The known_hosts file is not a regular file (a FIFO, a device, …) or is too large, so it
    /// was not read.
    NotAFile {
        /// The known_hosts file.
        file: PathBuf,
        /// What it is instead, as a sentence naming the file.
        reason: String,
    },
    /// The host offered a user certificate, which cannot vouch for a host.
    NotHostCertificate {
        /// The certificate's key ID.
        key_id: String,
    },
    /// The host's certificate is signed by a CA that no `@cert-authority` line lists for it.
    UnknownAuthority {
        /// SHA256 fingerprint of the CA's key.
        ca_fingerprint: String,
        /// The `@cert-authority` line that would trust the CA for this host, to review and add.
        ca_line: String,
        /// The known_hosts file that was searched.
        file: PathBuf,
    },
    /// An `@revoked` line lists the CA that signed the host's certificate.
    RevokedAuthority {
        /// SHA256 fingerprint of the CA's key.
        ca_fingerprint: String,
        /// The known_hosts file.
        file: PathBuf,
        /// The `@revoked` line (1-based).
        line: usize,
    },
    /// The CA's signature over the certificate does not verify.
    BadCertificateSignature {
        /// SHA256 fingerprint of the CA the certificate names.
        ca_fingerprint: String,
    },
    /// The certificate's validity ended.
    CertificateExpired {
        /// Start of validity, seconds since the Unix epoch.
        valid_after: u64,
        /// End of validity (exclusive), seconds since the Unix epoch.
        valid_before: u64,
        /// The time of the check.
        now: u64,
    },
    /// The certificate's validity has not begun.
    CertificateNotYetValid {
        /// Start of validity, seconds since the Unix epoch.
        valid_after: u64,
        /// End of validity (exclusive), seconds since the Unix epoch.
        valid_before: u64,
        /// The time of the check.
        now: u64,
    },
    /// The certificate's principals do not include the name hbdeploy connected to.
    WrongPrincipal {
        /// The host's `address`, lowercased, as it was compared.
        name: String,
        /// The certificate's principals (none: refused, as OpenSSH refuses them for hosts).
        principals: Vec<String>,
    },
    /// The certificate has critical options, which no host certificate may have.
    CriticalOptions {
        /// Their names.
        options: Vec<String>,
    },
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
            HostKeyVerdict::NotAFile { reason, .. } => {
                write!(f, "known-hosts file not read: {reason}")
            }
            HostKeyVerdict::NotHostCertificate { key_id } => write!(
                f,
                "the host offered a user certificate (key ID \"{key_id}\"), not a host \
                 certificate"
            ),
            HostKeyVerdict::UnknownAuthority {
                ca_fingerprint,
                file,
                ..
            } => write!(
                f,
                "its certificate is signed by CA {ca_fingerprint}, which {} does not list as \
                 @cert-authority for this host",
                file.display()
            ),
            HostKeyVerdict::RevokedAuthority {
                ca_fingerprint,
                file,
                line,
            } => write!(
                f,
                "its certificate is signed by CA {ca_fingerprint}, which {}:{line} marks @revoked",
                file.display()
            ),
            HostKeyVerdict::BadCertificateSignature { ca_fingerprint } => write!(
                f,
                "its certificate's signature does not verify against the CA it names \
                 ({ca_fingerprint}); it was altered or forged"
            ),
            HostKeyVerdict::CertificateExpired {
                valid_after,
                valid_before,
                now,
            } => write!(
                f,
                "its certificate expired on {} (valid from {}; it is now {})",
                utc(*valid_before),
                utc(*valid_after),
                utc(*now)
            ),
            HostKeyVerdict::CertificateNotYetValid {
                valid_after,
                valid_before,
                now,
            } => write!(
                f,
                "its certificate is not valid before {} (until {}; it is now {})",
                utc(*valid_after),
                utc(*valid_before),
                utc(*now)
            ),
            HostKeyVerdict::WrongPrincipal { name, principals } if principals.is_empty() => {
                write!(
                    f,
                    "its certificate names no host (no principals), so it is not valid for {name}"
                )
            }
            HostKeyVerdict::WrongPrincipal { name, principals } => write!(
                f,
                "its certificate is valid for {}, not for {name}",
                principals.join(", ")
            ),
            HostKeyVerdict::CriticalOptions { options } => write!(
                f,
                "its certificate has critical options ({}), which a host certificate must not \
                 have",
                options.join(", ")
            ),
        }
    }
}

impl HostKeyVerdict {
    /// What the user should do about a refused key.
    pub fn advice(&self) -> String {
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
            HostKeyVerdict::NotAFile { .. } => KNOWN_HOSTS_ADVICE.to_owned(),
            HostKeyVerdict::NotHostCertificate { .. } => "the host's sshd presents a user \
                 certificate as its HostCertificate: sign its host key with `ssh-keygen -h`"
                .to_owned(),
            HostKeyVerdict::UnknownAuthority { ca_line, file, .. } => format!(
                "verify the CA's fingerprint out of band; if you trust it to vouch for this host, \
                 add this line to {}: {ca_line}",
                file.display()
            ),
            HostKeyVerdict::RevokedAuthority { .. } => "nothing a revoked CA signed is trusted: \
                 sign the host's key with a CA you trust and list that one with @cert-authority"
                .to_owned(),
            HostKeyVerdict::BadCertificateSignature { .. } => "do not trust this host until you \
                 know why: sign its host key again with your CA and install the new certificate"
                .to_owned(),
            HostKeyVerdict::CertificateExpired { .. } => "renew the host's certificate \
                 (ssh-keygen -s CA_KEY -h -I ID -n NAME -V +52w HOST_KEY.pub), install it and \
                 restart sshd; if it should still be valid, check this machine's clock"
                .to_owned(),
            HostKeyVerdict::CertificateNotYetValid { .. } => "check the clocks of this machine \
                 and of the machine that signed the certificate, or wait until it is valid"
                .to_owned(),
            HostKeyVerdict::WrongPrincipal { name, .. } => format!(
                "set `address` in fleet.toml to a name the certificate lists, or sign the host's \
                 key again naming it (ssh-keygen -s CA_KEY -h -n {name} …)"
            ),
            HostKeyVerdict::CriticalOptions { .. } => {
                "sign the host's key again without critical options (no -O)".to_owned()
            }
            HostKeyVerdict::Trusted => "nothing to do: the key is trusted".to_owned(),
        }
    }

    /// What was refused, for messages: `key`, or `certificate` for a verdict on a certificate.
    pub fn subject(&self) -> &'static str {
        match self {
            HostKeyVerdict::NotHostCertificate { .. }
            | HostKeyVerdict::UnknownAuthority { .. }
            | HostKeyVerdict::RevokedAuthority { .. }
            | HostKeyVerdict::BadCertificateSignature { .. }
            | HostKeyVerdict::CertificateExpired { .. }
            | HostKeyVerdict::CertificateNotYetValid { .. }
            | HostKeyVerdict::WrongPrincipal { .. }
            | HostKeyVerdict::CriticalOptions { .. } => "certificate",
            _ => "key",
        }
    }
}

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

/// The largest known_hosts file that is read, in bytes (over 100,000 hosts' keys).
pub const MAX_KNOWN_HOSTS_BYTES: u64 = 64 * hbdeploy_files::MIB;

/// What to do about a known_hosts file that is not a regular file.
pub const KNOWN_HOSTS_ADVICE: &str = "set `known-hosts` in fleet.toml to a regular file (or a \
     symlink to one) holding the hosts' keys, or leave it out for ~/.ssh/known_hosts";

/// The text of the known_hosts file `file`; a missing file is an empty one (every key is
/// unknown). Only a regular file (or a symlink to one) of at most [`MAX_KNOWN_HOSTS_BYTES`] is
/// read: a FIFO or `/dev/zero` is refused instead of hanging or filling memory.
pub fn read_known_hosts(file: &Path) -> Result<String, hbdeploy_files::FileError> {
    match hbdeploy_files::read_to_string(file, MAX_KNOWN_HOSTS_BYTES) {
        Err(err) if err.is_not_found() => Ok(String::new()),
        other => other,
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
            got.advice().contains("10.0.0.3 ssh-ed25519"),
            "{}",
            got.advice()
        );
    }
}
