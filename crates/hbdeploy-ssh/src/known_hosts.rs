//! known_hosts as OpenSSH reads it: comments and blank lines, space or tab separators, several
//! comma-separated names per line, `[host]:port` for other ports, hashed names (`|1|salt|hash`),
//! `*`/`?` wildcards and `!` negations, and the `@revoked` and `@cert-authority` markers.
//!
//! Lines that cannot be parsed are skipped, as OpenSSH skips them; line numbers count every line
//! of the file, so a "changed key" message points at the right line.

use std::path::Path;

use data_encoding::BASE64;
use hmac::{Hmac, KeyInit, Mac};
use russh::keys::PublicKey;
use russh::keys::ssh_key::public::KeyData;
use sha1::Sha1;

/// What a matching line says about the offered key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Lookup {
    /// A plain line lists this key for the host.
    Trusted,
    /// An `@revoked` line lists this key.
    Revoked {
        /// 1-based line.
        line: usize,
    },
    /// The host is listed with another key of the same type.
    Changed {
        /// 1-based line of the first such key.
        line: usize,
    },
    /// The host is not listed with a key of this type.
    Unknown,
}

#[derive(Debug, PartialEq, Eq)]
enum Marker {
    None,
    Revoked,
    CertAuthority,
}

/// The name as known_hosts writes it for `address` and `port`: `address`, or `[address]:port`.
pub fn host_pattern(address: &str, port: u16) -> String {
    if port == 22 {
        address.to_owned()
    } else {
        format!("[{address}]:{port}")
    }
}

/// The parsed lines of `text` whose host patterns match `address`:`port`, with their 1-based
/// line numbers.
fn entries<'a>(
    text: &'a str,
    address: &str,
    port: u16,
) -> impl Iterator<Item = (usize, Marker, PublicKey)> + 'a {
    let name = host_pattern(address, port);
    text.lines().enumerate().filter_map(move |(index, raw)| {
        let (marker, patterns, key) = parse_line(raw)?;
        matches_list(patterns, &name).then_some((index + 1, marker, key))
    })
}

/// The keys that `@cert-authority` lines list for `address`:`port`, with their lines.
pub(crate) fn authorities(text: &str, address: &str, port: u16) -> Vec<(usize, PublicKey)> {
    entries(text, address, port)
        .filter(|(_, marker, _)| *marker == Marker::CertAuthority)
        .map(|(line, _, key)| (line, key))
        .collect()
}

/// The first `@revoked` line for `address`:`port` that lists `key`, whatever its type of use
/// (a host key, or the CA of a host certificate).
pub(crate) fn revoked(text: &str, address: &str, port: u16, key: &KeyData) -> Option<usize> {
    entries(text, address, port)
        .find(|(_, marker, listed)| *marker == Marker::Revoked && listed.key_data() == key)
        .map(|(line, _, _)| line)
}

/// Looks `key` up for `address`:`port` in the text of a known_hosts file.
pub(crate) fn lookup(text: &str, address: &str, port: u16, key: &PublicKey) -> Lookup {
    let mut changed = None;
    let mut trusted = false;
    for (line, marker, listed) in entries(text, address, port) {
        let same_key = listed.key_data() == key.key_data();
        match marker {
            Marker::Revoked if same_key => return Lookup::Revoked { line },
            Marker::Revoked | Marker::CertAuthority => {}
            Marker::None if same_key => trusted = true,
            Marker::None => {
                if listed.algorithm() == key.algorithm() && changed.is_none() {
                    changed = Some(line);
                }
            }
        }
    }
    if trusted {
        Lookup::Trusted
    } else if let Some(line) = changed {
        Lookup::Changed { line }
    } else {
        Lookup::Unknown
    }
}

/// Splits a line into marker, host patterns and key; `None` for comments, blanks and garbage.
fn parse_line(raw: &str) -> Option<(Marker, &str, PublicKey)> {
    let mut fields = raw.split([' ', '\t']).filter(|f| !f.is_empty());
    let mut first = fields.next()?;
    if first.starts_with('#') {
        return None;
    }
    let marker = match first {
        "@revoked" => Marker::Revoked,
        "@cert-authority" => Marker::CertAuthority,
        marker if marker.starts_with('@') => return None,
        _ => Marker::None,
    };
    if marker != Marker::None {
        first = fields.next()?;
    }
    let algorithm = fields.next()?;
    let base64 = fields.next()?;
    let key = PublicKey::from_openssh(&format!("{algorithm} {base64}")).ok()?;
    Some((marker, first, key))
}

/// OpenSSH's rule for a comma-separated list: a matching negated pattern excludes the host,
/// otherwise any matching pattern includes it.
fn matches_list(patterns: &str, name: &str) -> bool {
    let mut positive = false;
    for pattern in patterns.split(',') {
        if let Some(negated) = pattern.strip_prefix('!') {
            if glob(negated, name) {
                return false;
            }
        } else if pattern.starts_with("|1|") {
            positive |= hashed(pattern, name);
        } else {
            positive |= glob(pattern, name);
        }
    }
    positive
}

/// `|1|base64(salt)|base64(HMAC-SHA1(salt, name))`.
fn hashed(pattern: &str, name: &str) -> bool {
    let mut parts = pattern.split('|').skip(2);
    let (Some(salt), Some(hash)) = (parts.next(), parts.next()) else {
        return false;
    };
    let (Ok(salt), Ok(hash)) = (
        BASE64.decode(salt.as_bytes()),
        BASE64.decode(hash.as_bytes()),
    ) else {
        return false;
    };
    match Hmac::<Sha1>::new_from_slice(&salt) {
        Ok(mac) => mac
            .chain_update(name.as_bytes())
            .verify_slice(&hash)
            .is_ok(),
        Err(_) => false,
    }
}

/// Case-insensitive glob with `*` (any run) and `?` (one character), as OpenSSH's match_pattern.
fn glob(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.to_lowercase().chars().collect();
    let n: Vec<char> = name.to_lowercase().chars().collect();
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi, ni));
                pi += 1;
            }
            Some(&c) if c == '?' || c == n[ni] => {
                pi += 1;
                ni += 1;
            }
            _ => match star {
                Some((sp, sn)) => {
                    pi = sp + 1;
                    ni = sn + 1;
                    star = Some((sp, sn + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == '*')
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

#[cfg(test)]
mod tests {
    use super::*;

    const KEY_A: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMFEGlvgqrN9D7RX6IDRcvyBOCUCCTViRSpfGeNYakNl";
    const KEY_B: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILhZtwYk6Fhm9Cy5OqQFdrFf/rBaGqyesywtcj9Y96qP";

    fn key(line: &str) -> PublicKey {
        PublicKey::from_openssh(line).expect("test key parses")
    }

    fn check(text: &str, address: &str, port: u16, offered: &str, expected: Lookup) {
        assert_eq!(
            lookup(text, address, port, &key(offered)),
            expected,
            "{text}"
        );
    }

    #[test]
    fn plain_names_ports_and_lists() {
        check(&format!("web {KEY_A}"), "web", 22, KEY_A, Lookup::Trusted);
        check(&format!("web {KEY_A}"), "WEB", 22, KEY_A, Lookup::Trusted);
        check(
            &format!("[web]:2222 {KEY_A}"),
            "web",
            2222,
            KEY_A,
            Lookup::Trusted,
        );
        check(
            &format!("[web]:2222 {KEY_A}"),
            "web",
            22,
            KEY_A,
            Lookup::Unknown,
        );
        check(&format!("web {KEY_A}"), "web", 2222, KEY_A, Lookup::Unknown);
        check(
            &format!("db,web,10.0.0.1 {KEY_A}"),
            "10.0.0.1",
            22,
            KEY_A,
            Lookup::Trusted,
        );
        check(&format!("web\t{KEY_A}"), "web", 22, KEY_A, Lookup::Trusted);
    }

    #[test]
    fn changed_keys_name_the_real_line() {
        let text = format!("# comment\n\nother {KEY_B}\nbroken line\nweb {KEY_B}\n");
        check(&text, "web", 22, KEY_A, Lookup::Changed { line: 5 });
    }

    #[test]
    fn revoked_keys_are_refused_even_when_also_listed() {
        let text = format!("web {KEY_A}\n@revoked * {KEY_A}\n");
        check(&text, "web", 22, KEY_A, Lookup::Revoked { line: 2 });
        check(&text, "web", 22, KEY_B, Lookup::Changed { line: 1 });
    }

    #[test]
    fn cert_authorities_do_not_vouch_for_plain_keys() {
        check(
            &format!("@cert-authority * {KEY_A}"),
            "web",
            22,
            KEY_A,
            Lookup::Unknown,
        );
    }

    #[test]
    fn cert_authorities_and_revocations_follow_the_host_patterns() {
        let text = format!(
            "web {KEY_B}\n@cert-authority *.example.org,!evil.example.org {KEY_A}\n\
             @cert-authority [web.example.org]:2222 {KEY_B}\n@revoked web.example.org {KEY_B}\n"
        );
        let keys = |address, port| -> Vec<(usize, String)> {
            authorities(&text, address, port)
                .into_iter()
                .map(|(line, key)| (line, key.to_openssh().expect("encode")))
                .collect()
        };
        assert_eq!(keys("web.example.org", 22), vec![(2, KEY_A.to_owned())]);
        assert_eq!(keys("web.example.org", 2222), vec![(3, KEY_B.to_owned())]);
        assert!(keys("evil.example.org", 22).is_empty());
        assert!(keys("web", 22).is_empty());
        assert_eq!(
            revoked(&text, "web.example.org", 22, key(KEY_B).key_data()),
            Some(4)
        );
        assert_eq!(
            revoked(&text, "web.example.org", 22, key(KEY_A).key_data()),
            None
        );
        assert_eq!(
            revoked(&text, "db.example.org", 22, key(KEY_B).key_data()),
            None
        );
    }

    #[test]
    fn wildcards_and_negations() {
        let text = format!("*.example.org,!evil.example.org {KEY_A}");
        check(&text, "web.example.org", 22, KEY_A, Lookup::Trusted);
        check(&text, "evil.example.org", 22, KEY_A, Lookup::Unknown);
        check(
            &format!("10.0.0.? {KEY_A}"),
            "10.0.0.7",
            22,
            KEY_A,
            Lookup::Trusted,
        );
        check(
            &format!("10.0.0.? {KEY_A}"),
            "10.0.0.17",
            22,
            KEY_A,
            Lookup::Unknown,
        );
    }

    #[test]
    fn hashed_names() {
        // `ssh-keygen -H` output for the name "web" with a fixed salt, computed here.
        let salt = b"0123456789abcdefghij";
        let mac = Hmac::<Sha1>::new_from_slice(salt)
            .expect("any key length")
            .chain_update(b"web")
            .finalize()
            .into_bytes();
        let entry = format!("|1|{}|{}", BASE64.encode(salt), BASE64.encode(&mac));
        check(
            &format!("{entry} {KEY_A}"),
            "web",
            22,
            KEY_A,
            Lookup::Trusted,
        );
        check(
            &format!("{entry} {KEY_A}"),
            "db",
            22,
            KEY_A,
            Lookup::Unknown,
        );
    }

    #[test]
    fn hashed_names_written_by_openssh() {
        // `ssh-keygen -H` (OpenSSH 9.2) output for `[127.77.0.11]:2222` and `web.example.org`.
        let text = format!(
            "|1|WL23ktAy3j4IQOmgwwpSD5Vj9vc=|REeVSgFEgvQrTcI12+MrucOe8zc= {KEY_A}\n\
             |1|DqP3dFwGjzQqzzySKtYWZylDr5s=|hXnheW0axsiwh1LspQZyqtdUsuc= {KEY_A}\n"
        );
        check(&text, "127.77.0.11", 2222, KEY_A, Lookup::Trusted);
        check(&text, "web.example.org", 22, KEY_A, Lookup::Trusted);
        check(&text, "127.77.0.11", 22, KEY_A, Lookup::Unknown);
        check(
            &text,
            "web.example.org",
            22,
            KEY_B,
            Lookup::Changed { line: 2 },
        );
    }

    #[test]
    fn glob_edge_cases() {
        assert!(glob("*", ""));
        assert!(glob("a*b*c", "aXXbYc"));
        assert!(!glob("a*b", "aXXc"));
        assert!(!glob("", "a"));
    }
}
