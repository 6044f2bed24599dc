//! Host certificates, checked as OpenSSH checks them: a certificate is trusted when it is a host
//! certificate, signed by a CA that a `@cert-authority` line lists for this host, neither that CA
//! nor the certified key is `@revoked`, it is valid now, it names the host as a principal, and it
//! has no critical options.
//!
//! Certificates are asked for only from hosts that have a `@cert-authority` line and no pinned
//! keys; everything else negotiates plain keys exactly as before.

use std::borrow::Cow;
use std::path::Path;

use russh::keys::ssh_key::certificate::CertType;
use russh::keys::{Algorithm, Certificate, EcdsaCurve, HashAlg, PublicKey};

use crate::Target;
use crate::known_hosts;
use crate::verdict::{HostKeyVerdict, key_text};

/// The certificate host-key algorithms advertised to a host with a CA, most preferred first (the
/// plain algorithms they wrap; russh derives the `*-cert-v01@openssh.com` names).
const CERTIFICATE_ALGORITHMS: &[Algorithm] = &[
    Algorithm::Ed25519,
    Algorithm::Ecdsa {
        curve: EcdsaCurve::NistP256,
    },
    Algorithm::Ecdsa {
        curve: EcdsaCurve::NistP384,
    },
    Algorithm::Ecdsa {
        curve: EcdsaCurve::NistP521,
    },
    Algorithm::Rsa {
        hash: Some(HashAlg::Sha512),
    },
    Algorithm::Rsa {
        hash: Some(HashAlg::Sha256),
    },
];

/// The certificate algorithms to advertise to `target`: all of them when its known_hosts file has
/// a `@cert-authority` line for it and it has no pinned keys, none otherwise. A file that cannot
/// be read asks for none; the host-key check then reports it.
pub(crate) fn algorithms(target: &Target) -> Cow<'static, [Algorithm]> {
    if !target.pinned_keys.is_empty() {
        return Cow::Borrowed(&[]);
    }
    let wanted = crate::known_hosts::read_known_hosts(&target.known_hosts).is_ok_and(|text| {
        !known_hosts::authorities(&text, &target.address, target.port).is_empty()
    });
    Cow::Borrowed(if wanted { CERTIFICATE_ALGORITHMS } else { &[] })
}

/// Judges `cert`, offered by `address`:`port`, against the known_hosts `text` read from `file`,
/// at `now` (seconds since the Unix epoch).
pub(crate) fn check(
    text: &str,
    file: &Path,
    address: &str,
    port: u16,
    cert: &Certificate,
    now: u64,
) -> HostKeyVerdict {
    let key = PublicKey::new(cert.public_key().clone(), "");
    let ca = PublicKey::new(cert.signature_key().clone(), "");
    let ca_fingerprint = ca.fingerprint(HashAlg::Sha256).to_string();
    if let Some(line) = known_hosts::revoked(text, address, port, key.key_data()) {
        return HostKeyVerdict::Revoked {
            fingerprint: key.fingerprint(HashAlg::Sha256).to_string(),
            file: file.to_path_buf(),
            line,
        };
    }
    if let Some(line) = known_hosts::revoked(text, address, port, ca.key_data()) {
        return HostKeyVerdict::RevokedAuthority {
            ca_fingerprint,
            file: file.to_path_buf(),
            line,
        };
    }
    if cert.cert_type() != CertType::Host {
        return HostKeyVerdict::NotHostCertificate {
            key_id: cert.key_id().to_owned(),
        };
    }
    let listed = known_hosts::authorities(text, address, port)
        .iter()
        .any(|(_, authority)| authority.key_data() == ca.key_data());
    if !listed {
        return HostKeyVerdict::UnknownAuthority {
            ca_fingerprint,
            ca_line: format!(
                "@cert-authority {} {}",
                known_hosts::host_pattern(address, port),
                key_text(&ca)
            ),
            file: file.to_path_buf(),
        };
    }
    // The signature binds every field checked below to the CA; `verify_signature` checks only
    // that, which is why the CA was checked against known_hosts first.
    if cert.verify_signature().is_err() {
        return HostKeyVerdict::BadCertificateSignature { ca_fingerprint };
    }
    let (valid_after, valid_before) = (cert.valid_after(), cert.valid_before());
    if now < valid_after {
        return HostKeyVerdict::CertificateNotYetValid {
            valid_after,
            valid_before,
            now,
        };
    }
    if now >= valid_before {
        return HostKeyVerdict::CertificateExpired {
            valid_after,
            valid_before,
            now,
        };
    }
    // OpenSSH compares the principals with the host name as typed, lowercased; an empty list,
    // which would mean "any host", is refused for host certificates.
    let name = address.to_lowercase();
    if !cert.valid_principals().contains(&name) {
        return HostKeyVerdict::WrongPrincipal {
            name,
            principals: cert.valid_principals().to_vec(),
        };
    }
    if !cert.critical_options().is_empty() {
        return HostKeyVerdict::CriticalOptions {
            options: cert.critical_options().keys().cloned().collect(),
        };
    }
    HostKeyVerdict::Trusted
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verdict::utc;
    use hbdeploy_files::Scratch;
    use russh::keys::PrivateKey;
    use russh::keys::ssh_key::certificate::Builder;
    use russh::keys::ssh_key::private::Ed25519Keypair;
    use std::path::PathBuf;

    const NOW: u64 = 1_700_000_000;
    const DAY: u64 = 86_400;

    fn keypair(seed: u8) -> PrivateKey {
        PrivateKey::from(Ed25519Keypair::from_seed(&[seed; 32]))
    }

    fn public(seed: u8) -> String {
        key_text(keypair(seed).public_key())
    }

    const CA: u8 = 1;
    const OTHER_CA: u8 = 2;
    const HOST: u8 = 3;

    /// A certificate of `kind` for HOST's key, signed by `ca`, valid from `after` to `before`,
    /// as `ssh-keygen -s -I web -n web.example.org` makes them unless `adjust` says otherwise.
    fn cert_of(
        kind: CertType,
        ca: u8,
        after: u64,
        before: u64,
        adjust: impl FnOnce(&mut Builder),
    ) -> Certificate {
        let host = keypair(HOST);
        let mut builder = Builder::new(
            [7u8; 32],
            host.public_key().key_data().clone(),
            after,
            before,
        )
        .expect("builder");
        builder.cert_type(kind).expect("type");
        builder.key_id("web").expect("id");
        builder
            .valid_principal("web.example.org")
            .expect("principal");
        adjust(&mut builder);
        builder.sign(&keypair(ca)).expect("sign")
    }

    /// A host certificate valid from a day before NOW to a day after it.
    fn cert(ca: u8, adjust: impl FnOnce(&mut Builder)) -> Certificate {
        cert_of(CertType::Host, ca, NOW - DAY, NOW + DAY, adjust)
    }

    fn judge(text: &str, cert: &Certificate) -> HostKeyVerdict {
        check(
            text,
            &PathBuf::from("/kh"),
            "web.example.org",
            22,
            cert,
            NOW,
        )
    }

    fn ca_line(seed: u8) -> String {
        format!("@cert-authority *.example.org {}\n", public(seed))
    }

    #[test]
    fn a_valid_host_certificate_from_a_listed_ca_is_trusted() {
        assert_eq!(
            judge(&ca_line(CA), &cert(CA, |_| {})),
            HostKeyVerdict::Trusted
        );
        // The name as typed is compared lowercased, as OpenSSH does.
        let upper = check(
            &ca_line(CA),
            &PathBuf::from("/kh"),
            "WEB.example.org",
            22,
            &cert(CA, |_| {}),
            NOW,
        );
        assert_eq!(upper, HostKeyVerdict::Trusted);
    }

    #[test]
    fn a_ca_for_other_hosts_or_ports_is_unknown_here() {
        let text = format!(
            "@cert-authority *.example.com {}\n@cert-authority [web.example.org]:2222 {}\n",
            public(CA),
            public(CA)
        );
        let got = judge(&text, &cert(CA, |_| {}));
        let HostKeyVerdict::UnknownAuthority {
            ca_fingerprint,
            ca_line,
            ..
        } = &got
        else {
            panic!("expected an unknown CA, got {got:?}");
        };
        assert!(ca_fingerprint.starts_with("SHA256:"), "{ca_fingerprint}");
        assert_eq!(
            *ca_line,
            format!("@cert-authority web.example.org {}", public(CA))
        );
        assert!(got.advice().contains(ca_line.as_str()), "{}", got.advice());
        assert!(got.to_string().contains(ca_fingerprint.as_str()), "{got}");
    }

    #[test]
    fn a_certificate_from_another_ca_is_refused_with_that_cas_fingerprint() {
        let got = judge(&ca_line(CA), &cert(OTHER_CA, |_| {}));
        let other = keypair(OTHER_CA)
            .public_key()
            .fingerprint(HashAlg::Sha256)
            .to_string();
        assert!(
            matches!(&got, HostKeyVerdict::UnknownAuthority { ca_fingerprint, .. } if *ca_fingerprint == other),
            "{got:?}"
        );
    }

    #[test]
    fn expired_and_not_yet_valid_certificates_are_refused_with_their_dates() {
        let expired = cert_of(CertType::Host, CA, NOW - 10 * DAY, NOW - DAY, |_| {});
        let got = judge(&ca_line(CA), &expired);
        assert_eq!(
            got,
            HostKeyVerdict::CertificateExpired {
                valid_after: NOW - 10 * DAY,
                valid_before: NOW - DAY,
                now: NOW,
            }
        );
        assert!(
            got.to_string()
                .contains("expired on 2023-11-13 22:13:20 UTC"),
            "{got}"
        );
        assert!(got.to_string().contains("2023-11-14 22:13:20 UTC"), "{got}");

        let later = check(
            &ca_line(CA),
            &PathBuf::from("/kh"),
            "web.example.org",
            22,
            &cert(CA, |_| {}),
            NOW - 2 * DAY,
        );
        assert!(
            matches!(later, HostKeyVerdict::CertificateNotYetValid { valid_after, .. } if valid_after == NOW - DAY),
            "{later:?}"
        );
        assert!(later.to_string().contains("not valid before"), "{later}");
    }

    #[test]
    fn principals_must_name_the_host_and_may_not_be_empty() {
        let other = cert(CA, |b| {
            b.valid_principal("db.example.org").expect("principal");
        });
        // web.example.org is listed too: trusted.
        assert_eq!(judge(&ca_line(CA), &other), HostKeyVerdict::Trusted);
        let wrong = check(
            &ca_line(CA),
            &PathBuf::from("/kh"),
            "mail.example.org",
            22,
            &other,
            NOW,
        );
        assert_eq!(
            wrong,
            HostKeyVerdict::WrongPrincipal {
                name: "mail.example.org".to_owned(),
                principals: vec!["web.example.org".to_owned(), "db.example.org".to_owned()],
            }
        );
        assert!(
            wrong
                .to_string()
                .contains("web.example.org, db.example.org"),
            "{wrong}"
        );
        let any = cert(CA, |b| {
            b.all_principals_valid().expect("all");
        });
        let got = judge(&ca_line(CA), &any);
        assert!(
            matches!(&got, HostKeyVerdict::WrongPrincipal { principals, .. } if principals.is_empty()),
            "{got:?}"
        );
        assert!(got.to_string().contains("names no host"), "{got}");
    }

    #[test]
    fn a_user_certificate_is_not_a_host_certificate() {
        let user = cert_of(CertType::User, CA, NOW - DAY, NOW + DAY, |_| {});
        assert_eq!(
            judge(&ca_line(CA), &user),
            HostKeyVerdict::NotHostCertificate {
                key_id: "web".to_owned()
            }
        );
    }

    #[test]
    fn a_revoked_ca_or_a_revoked_host_key_is_refused_before_anything_else() {
        let text = format!("{}@revoked * {}\n", ca_line(CA), public(CA));
        assert!(
            matches!(
                judge(&text, &cert(CA, |_| {})),
                HostKeyVerdict::RevokedAuthority { line: 2, .. }
            ),
            "{:?}",
            judge(&text, &cert(CA, |_| {}))
        );
        let text = format!("{}@revoked web.example.org {}\n", ca_line(CA), public(HOST));
        assert!(
            matches!(
                judge(&text, &cert(CA, |_| {})),
                HostKeyVerdict::Revoked { line: 2, .. }
            ),
            "{:?}",
            judge(&text, &cert(CA, |_| {}))
        );
    }

    #[test]
    fn critical_options_are_refused_in_host_certificates() {
        let forced = cert(CA, |b| {
            b.critical_option("force-command", "true").expect("option");
        });
        assert_eq!(
            judge(&ca_line(CA), &forced),
            HostKeyVerdict::CriticalOptions {
                options: vec!["force-command".to_owned()]
            }
        );
    }

    #[test]
    fn a_tampered_certificate_does_not_verify() {
        let good = cert(CA, |_| {});
        let mut forged = cert(OTHER_CA, |b| {
            b.valid_principal("evil.example.org").expect("principal");
        });
        // Claim the listed CA signed it, keeping the other CA's signature.
        let mut bytes = forged.to_bytes().expect("encode");
        let from = keypair(OTHER_CA).public_key().key_data().clone();
        let to = good.signature_key().clone();
        let (from, to) = (
            PublicKey::new(from, "").to_bytes().expect("encode"),
            PublicKey::new(to, "").to_bytes().expect("encode"),
        );
        let at = bytes
            .windows(from.len())
            .position(|w| w == from.as_slice())
            .expect("CA key in the certificate");
        bytes[at..at + from.len()].copy_from_slice(&to);
        forged = Certificate::from_bytes(&bytes).expect("decode");
        assert!(
            matches!(
                judge(&ca_line(CA), &forged),
                HostKeyVerdict::BadCertificateSignature { .. }
            ),
            "{:?}",
            judge(&ca_line(CA), &forged)
        );
    }

    #[test]
    fn certificates_are_asked_for_only_with_a_ca_and_without_pins() {
        let dir = Scratch::fresh("hbdeploy-ssh-hostcert").expect("dir");
        let file = dir.join("known_hosts");
        std::fs::write(
            &file,
            format!(
                "@cert-authority [10.0.0.1]:2222 {}\n10.0.0.2 {}\n",
                public(CA),
                public(HOST)
            ),
        )
        .expect("write");
        let target = |address: &str, port: u16, pins: Vec<String>| Target {
            address: address.to_owned(),
            port,
            user: "root".to_owned(),
            identity_file: None,
            known_hosts: file.clone(),
            pinned_keys: pins,
            accept_new: false,
            connect_timeout: std::time::Duration::from_secs(1),
            jump: None,
            escalation: None,
            keepalive: None,
            compress: false,
        };
        assert_eq!(
            algorithms(&target("10.0.0.1", 2222, Vec::new())).len(),
            CERTIFICATE_ALGORITHMS.len()
        );
        assert!(algorithms(&target("10.0.0.1", 22, Vec::new())).is_empty());
        assert!(algorithms(&target("10.0.0.2", 22, Vec::new())).is_empty());
        assert!(algorithms(&target("10.0.0.1", 2222, vec![public(HOST)])).is_empty());
    }

    /// `hostkey::check` for web.example.org:22 with `text` as its known_hosts file.
    fn check_for(
        name: &str,
        text: &str,
        pins: Vec<String>,
        accept_new: bool,
        offered: Certificate,
    ) -> (HostKeyVerdict, String) {
        let dir = Scratch::fresh(&format!("hbdeploy-ssh-hostcert-{name}")).expect("dir");
        let file = dir.join("known_hosts");
        std::fs::write(&file, text).expect("write");
        let target = Target {
            address: "web.example.org".to_owned(),
            port: 22,
            user: "root".to_owned(),
            identity_file: None,
            known_hosts: file.clone(),
            pinned_keys: pins,
            accept_new,
            connect_timeout: std::time::Duration::from_secs(1),
            jump: None,
            escalation: None,
            keepalive: None,
            compress: false,
        };
        let verdict = crate::hostkey::check(&target, &offered.into(), NOW);
        let after = std::fs::read_to_string(&file).expect("read");
        (verdict, after)
    }

    #[test]
    fn a_refused_certificate_falls_back_to_its_plain_key_unless_revoked() {
        let plain = format!("web.example.org {}\n", public(HOST));
        let text = format!("{}{plain}", ca_line(CA));
        let (unknown_ca, _) =
            check_for("fallback-ca", &text, vec![], false, cert(OTHER_CA, |_| {}));
        assert_eq!(unknown_ca, HostKeyVerdict::Trusted);
        let expired = cert_of(CertType::Host, CA, NOW - 10 * DAY, NOW - DAY, |_| {});
        let (expired, _) = check_for("fallback-expired", &text, vec![], false, expired);
        assert_eq!(expired, HostKeyVerdict::Trusted);
        // Without the plain line, the certificate's own refusal is what the user sees.
        let (alone, _) = check_for("alone", &ca_line(CA), vec![], false, cert(OTHER_CA, |_| {}));
        assert!(
            matches!(alone, HostKeyVerdict::UnknownAuthority { .. }),
            "{alone:?}"
        );
        // A revoked CA is never saved by a plain line.
        let revoked = format!("{text}@revoked * {}\n", public(CA));
        let (revoked, _) = check_for(
            "fallback-revoked",
            &revoked,
            vec![],
            false,
            cert(CA, |_| {}),
        );
        assert!(
            matches!(revoked, HostKeyVerdict::RevokedAuthority { line: 3, .. }),
            "{revoked:?}"
        );
    }

    #[test]
    fn pins_judge_a_certificate_by_its_key_alone() {
        let (pinned, _) = check_for(
            "pinned",
            &ca_line(CA),
            vec![public(HOST)],
            false,
            cert(CA, |_| {}),
        );
        assert_eq!(pinned, HostKeyVerdict::Trusted);
        let (other, _) = check_for(
            "not-pinned",
            &ca_line(CA),
            vec![public(CA)],
            false,
            cert(CA, |_| {}),
        );
        assert!(
            matches!(other, HostKeyVerdict::NotPinned { .. }),
            "{other:?}"
        );
    }

    #[test]
    fn accept_new_never_learns_from_a_certificate() {
        let text = ca_line(CA);
        let (verdict, after) = check_for("accept-new", &text, vec![], true, cert(OTHER_CA, |_| {}));
        assert!(
            matches!(verdict, HostKeyVerdict::UnknownAuthority { .. }),
            "{verdict:?}"
        );
        assert_eq!(after, text);
    }

    #[test]
    fn dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc(NOW), "2023-11-14 22:13:20 UTC");
        assert_eq!(utc(u64::MAX), "forever");
    }
}
