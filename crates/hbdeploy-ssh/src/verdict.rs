//! What checking a host's key decided, and how it is told to the user.

use std::path::PathBuf;

use crate::known_hosts::KNOWN_HOSTS_ADVICE;

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

/// `TYPE BASE64` of a key, without its comment: the form of known_hosts and `host-key`.
pub fn key_text(key: &russh::keys::PublicKey) -> String {
    let mut plain = key.clone();
    plain.set_comment("");
    plain.to_openssh().unwrap_or_default()
}

/// `YYYY-MM-DD HH:MM:SS UTC` for `secs` since the Unix epoch; `forever` for OpenSSH's "no end".
pub(crate) fn utc(secs: u64) -> String {
    if secs == u64::MAX {
        return "forever".to_owned();
    }
    format!("{} UTC", hbdeploy_files::time::utc(secs))
}
