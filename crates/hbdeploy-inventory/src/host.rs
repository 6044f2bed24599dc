//! [`Host`]: one `[hosts.NAME]` table, validated, with its SSH settings resolved.
//!
//! The host's name comes from its table's key and must be a valid [`HostName`]; `address` is
//! required and checked for the usual mistakes (`root@host`, a URL); `attr` defaults to the name;
//! `tags` must be valid [`Tag`]s, each listed once.

use std::collections::HashSet;
use std::ops::Range;

use crate::error::{InventoryError, Problem};
use crate::health::{HealthCheck, read_checks};
use crate::name::{HostName, Tag};
use crate::paths::Resolver;
use crate::reader::{Key, Table, Value};
use crate::safety::{Safety, SafetyOverrides};
use crate::schema::{HOST_KEYS, MAX_WAVE};
use crate::secrets::{Secret, merge, read_secrets};
use crate::ssh::{SshOverrides, SshSettings};
use crate::transfer::{Transfer, TransferOverrides};

/// The `address` that names the machine hbdeploy runs on: it is deployed without SSH.
pub const LOCAL_ADDRESS: &str = "local";

/// One machine of the fleet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    /// Its name: the `NAME` of `[hosts.NAME]`.
    pub name: HostName,
    /// The DNS name or IP address to connect to, or [`LOCAL_ADDRESS`] for the machine hbdeploy
    /// runs on.
    pub address: String,
    /// The attribute of the flake's `nixosConfigurations` that builds it.
    pub attr: String,
    /// Its tags, in the order written, without repeats.
    pub tags: Vec<Tag>,
    /// How to reach it.
    pub ssh: SshSettings,
    /// How it is protected while it switches.
    pub safety: Safety,
    /// Its rollout wave: hosts of wave 0 are deployed first, then wave 1, and so on.
    pub wave: u32,
    /// Checks run after activation: `[[health]]` for every host, then its own.
    pub health: Vec<HealthCheck>,
    /// Where its system is built and how its closure travels.
    pub transfer: Transfer,
    /// Host keys pinned in fleet.toml (`host-key`), in OpenSSH form `TYPE BASE64`; trusted
    /// besides the known_hosts file.
    pub host_keys: Vec<String>,
    /// Reach this host through another (`proxy-jump`): a host of the fleet by name, or
    /// `[user@]address[:port]`.
    pub proxy_jump: Option<String>,
    /// Secrets uploaded to it out of the store: `[secrets.NAME]` for every host, replaced by or
    /// followed by its own `[hosts.HOST.secrets.NAME]`.
    pub secrets: Vec<Secret>,
}

impl Host {
    /// Whether this is the machine hbdeploy runs on (`address = "local"`).
    pub fn is_local(&self) -> bool {
        self.address == LOCAL_ADDRESS
    }

    /// Whether the host carries `tag`.
    pub fn has_tag(&self, tag: &str) -> bool {
        self.tags.iter().any(|t| t.as_str() == tag)
    }
}

/// Reads the host table `[hosts.<key>]`.
pub(crate) fn read_host(
    hosts: &Table<'_>,
    key: &Key<'_>,
    value: &Value<'_>,
    ssh: &SshOverrides,
    (safety, transfer, secrets): (&SafetyOverrides, &TransferOverrides, &[Secret]),
    resolver: &Resolver<'_>,
) -> Result<Host, InventoryError> {
    let name = HostName::new(key.get_ref().as_ref()).map_err(|reason| {
        let problem = Problem::InvalidName {
            kind: "host name",
            value: key.get_ref().to_string(),
            table: hosts.name(),
            reason,
        };
        let hint = "host names are 1 to 63 ASCII letters, digits, `-` and `_`, starting with a \
                    letter or digit, e.g. [hosts.web-1]";
        hosts.doc().error(key.span(), problem, hint)
    })?;
    let table = hosts.child(key, value)?;
    table.check_keys(HOST_KEYS)?;

    let address = table
        .string("address")?
        .ok_or_else(|| table.missing("address"))?;
    check_address(&table, address.get_ref(), address.span())?;
    let attr = match table.string("attr")? {
        None => name.to_string(),
        Some(attr) if attr.get_ref().trim().is_empty() => {
            let hint = "remove `attr` to use the host's name, or give the attribute under \
                        nixosConfigurations";
            return Err(table.invalid("attr", attr.span(), "is empty", hint));
        }
        Some(attr) => attr.into_inner().to_owned(),
    };
    let tags = read_tags(&table)?;
    let ssh = SshOverrides::read(&table, resolver)?.resolve(ssh, &table, resolver)?;
    let safety = SafetyOverrides::read(&table)?.resolve(safety);
    let proxy_jump = read_proxy_jump(&table, &name)?;
    if *address.get_ref() == LOCAL_ADDRESS {
        refuse_ssh_only_keys(&table)?;
    }
    let wave = table.integer::<u32>("wave", 0, MAX_WAVE)?.unwrap_or(0);
    Ok(Host {
        name,
        address: address.into_inner().to_owned(),
        attr,
        tags,
        ssh,
        safety,
        wave,
        health: read_checks(&table)?,
        transfer: TransferOverrides::read(&table)?.resolve(transfer, &table)?,
        host_keys: read_host_keys(&table)?,
        proxy_jump,
        secrets: merge(&table, secrets, read_secrets(&table, resolver)?)?,
    })
}

/// Rejects addresses that cannot be a DNS name or IP address, with advice for the common
/// mistakes (`root@host`, a URL).
fn check_address(
    table: &Table<'_>,
    address: &str,
    span: Range<usize>,
) -> Result<(), InventoryError> {
    let problem = if address.trim().is_empty() {
        Some(("is empty", "give the host's DNS name or IP address"))
    } else if address.chars().any(|c| c.is_whitespace() || c.is_control()) {
        Some((
            "contains whitespace",
            "give only the host's DNS name or IP address",
        ))
    } else if address.contains('@') {
        Some((
            "contains `@`",
            "put the login name in `user` and only the host in `address`",
        ))
    } else if address.contains(['/', '?', '#']) {
        Some((
            "is not a DNS name or IP address",
            "give only the host part, without scheme or path",
        ))
    } else if address.starts_with('-') {
        Some(("starts with `-`", "give the host's DNS name or IP address"))
    } else {
        None
    };
    match problem {
        Some((reason, hint)) => Err(table.invalid("address", span, reason, hint)),
        None => Ok(()),
    }
}

/// A local host is not reached over SSH: the keys that only say how to reach one over SSH, and
/// only for that host, are refused rather than ignored.
fn refuse_ssh_only_keys(table: &Table<'_>) -> Result<(), InventoryError> {
    for key in ["proxy-jump", "host-key"] {
        if let Some((_, value)) = table.get(key) {
            return Err(table.invalid(
                key,
                value.span(),
                "is set for the machine hbdeploy runs on (address = \"local\"), which is not \
                 reached over SSH",
                format!(
                    "remove `{key}` from this host, or give its DNS name or IP address as \
                          `address` to deploy it over SSH"
                ),
            ));
        }
    }
    Ok(())
}

/// Reads `proxy-jump`: a non-empty value without white space that is not the host itself.
fn read_proxy_jump(table: &Table<'_>, name: &HostName) -> Result<Option<String>, InventoryError> {
    let Some(value) = table.string("proxy-jump")? else {
        return Ok(None);
    };
    let jump = value.get_ref();
    let reason = if jump.is_empty() || jump.contains(char::is_whitespace) || jump.starts_with('-') {
        Some("is not a host name or [user@]address[:port]".to_owned())
    } else if *jump == name.as_str() {
        Some("names the host itself".to_owned())
    } else {
        // The login name of `user@address` is held to the rule of `user`.
        jump.split_once('@')
            .and_then(|(user, _)| crate::ssh::login_problem(user))
            .map(|(problem, _)| format!("has a login name that {problem}"))
    };
    match reason {
        Some(reason) => Err(table.invalid(
            "proxy-jump",
            value.span(),
            &reason,
            "name another host of the fleet, e.g. proxy-jump = \"bastion\", or give \
             user@address:port with a login name of ASCII letters, digits, `.`, `_` and `-`",
        )),
        None => Ok(Some((*jump).to_owned())),
    }
}

/// Reads `host-key`: one key or an array of keys, each `TYPE BASE64` (a comment may follow).
fn read_host_keys(table: &Table<'_>) -> Result<Vec<String>, InventoryError> {
    let keys = match table.get("host-key") {
        None => return Ok(Vec::new()),
        Some((_, value)) if matches!(value.get_ref(), toml::de::DeValue::String(_)) => {
            table.string("host-key")?.into_iter().collect::<Vec<_>>()
        }
        Some(_) => table.strings("host-key")?.unwrap_or_default(),
    };
    keys.into_iter()
        .map(|key| {
            let mut fields = key.get_ref().split_whitespace();
            let kind = fields.next().unwrap_or("");
            let data = fields.next().unwrap_or("");
            let kind_ok = kind.starts_with("ssh-")
                || kind.starts_with("ecdsa-sha2-")
                || kind.starts_with("sk-");
            let data_ok = data.len() > 16
                && data
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b));
            if kind_ok && data_ok {
                Ok(format!("{kind} {data}"))
            } else {
                Err(table.invalid(
                    "host-key",
                    key.span(),
                    "is not a public key in OpenSSH form",
                    "copy the key from `hbdeploy keyscan HOST` or the host's \
                     /etc/ssh/ssh_host_ed25519_key.pub, e.g. host-key = \"ssh-ed25519 AAAA…\"",
                ))
            }
        })
        .collect()
}

/// Reads `tags`: valid names, each at most once.
///
/// Repeats are found with a set, so a host with many tags loads in linear time.
fn read_tags(table: &Table<'_>) -> Result<Vec<Tag>, InventoryError> {
    let items = table.strings("tags")?.unwrap_or_default();
    let mut tags: Vec<Tag> = Vec::with_capacity(items.len());
    let mut seen: HashSet<Tag> = HashSet::with_capacity(items.len());
    for item in items {
        let tag = Tag::new(*item.get_ref()).map_err(|reason| {
            let problem = Problem::InvalidName {
                kind: "tag",
                value: item.get_ref().to_string(),
                table: table.name(),
                reason,
            };
            let hint = "tags are 1 to 63 ASCII letters, digits, `-` and `_`, starting with a \
                        letter or digit, e.g. tags = [\"infra\"]; write `@` only on the command line";
            table.doc().error(item.span(), problem, hint)
        })?;
        if !seen.insert(tag.clone()) {
            let reason = format!("lists `{tag}` twice");
            return Err(table.invalid("tags", item.span(), reason, "remove the repeated tag"));
        }
        tags.push(tag);
    }
    Ok(tags)
}

#[cfg(test)]
mod tests {
    use hbdeploy_files::Hint as _;
    use std::path::Path;

    use crate::Fleet;

    /// Parses a fleet whose only host table is `[hosts.<name>]` with `body`; renders the host as
    /// `address attr [tags]`, or the error as `message | hint`.
    fn check(name: &str, body: &str, expected: &str) {
        let text = format!("[fleet]\nflake = \"/f\"\n[hosts.{name}]\n{body}\n");
        let got = match Fleet::parse(&text, Path::new("/f.toml"), Some(Path::new("/h"))) {
            Ok(fleet) => {
                let host = fleet.hosts.values().next();
                host.map_or("no host".to_owned(), |h| {
                    let tags: Vec<&str> = h.tags.iter().map(|t| t.as_str()).collect();
                    format!("{} {} [{}]", h.address, h.attr, tags.join(","))
                })
            }
            Err(e) => format!("{e} | {}", e.hint().as_deref().unwrap_or("-")),
        };
        assert_eq!(got, expected, "[hosts.{name}]\n{body}");
    }

    #[test]
    fn good_hosts() {
        check("a", "address = \"a.example.org\"", "a.example.org a []");
        check(
            "a",
            "address = \"192.0.2.1\"\nattr = \"alpha\"",
            "192.0.2.1 alpha []",
        );
        check(
            "a",
            "address = \"2001:db8::1\"\ntags = [\"x\", \"y-2\"]",
            "2001:db8::1 a [x,y-2]",
        );
    }

    #[test]
    fn addresses_are_checked() {
        let cases = [
            ("", "is empty | give the host's DNS name or IP address"),
            ("  ", "is empty | give the host's DNS name or IP address"),
            (
                "a b",
                "contains whitespace | give only the host's DNS name or IP address",
            ),
            (
                "root@a",
                "contains `@` | put the login name in `user` and only the host in `address`",
            ),
            (
                "ssh://a",
                "is not a DNS name or IP address | give only the host part, without scheme or path",
            ),
            (
                "-oProxyCommand=x",
                "starts with `-` | give the host's DNS name or IP address",
            ),
        ];
        for (address, expected) in cases {
            check(
                "a",
                &format!("address = \"{address}\""),
                &format!("/f.toml:4:11: `address` in [hosts.a] {expected}"),
            );
        }
        check(
            "a",
            "attr = \"x\"",
            "/f.toml:3:1: missing key `address` in [hosts.a] | add the host's DNS name or IP \
             address, e.g. address = \"server.example.org\"",
        );
    }

    #[test]
    fn names_and_tags_are_checked() {
        check(
            "\"web.1\"",
            "address = \"w\"",
            "/f.toml:3:8: invalid host name `web.1` in [hosts]: it contains `.`; only ASCII \
             letters, digits, `-` and `_` are allowed | host names are 1 to 63 ASCII letters, \
             digits, `-` and `_`, starting with a letter or digit, e.g. [hosts.web-1]",
        );
        check(
            "a",
            "address = \"a\"\ntags = [\"@infra\"]",
            "/f.toml:5:9: invalid tag `@infra` in [hosts.a]: it contains `@`; only ASCII \
             letters, digits, `-` and `_` are allowed | tags are 1 to 63 ASCII letters, digits, \
             `-` and `_`, starting with a letter or digit, e.g. tags = [\"infra\"]; write `@` \
             only on the command line",
        );
        check(
            "a",
            "address = \"a\"\ntags = [\"x\", \"x\"]",
            "/f.toml:5:14: `tags` in [hosts.a] lists `x` twice | remove the repeated tag",
        );
        check(
            "a",
            "address = \"a\"\nattr = \"\"",
            "/f.toml:5:8: `attr` in [hosts.a] is empty | remove `attr` to use the host's name, \
             or give the attribute under nixosConfigurations",
        );
    }

    /// 100,000 tags on one host once took 52 s to load: the repeat check compared each tag
    /// with every earlier one. No timing is asserted; the test must simply finish.
    #[test]
    fn a_hundred_thousand_tags_load() {
        let tags: Vec<String> = (0..100_000).map(|i| format!("\"t{i}\"")).collect();
        let text = format!(
            "[fleet]\nflake = \"/f\"\n[hosts.a]\naddress = \"a\"\ntags = [{}]\n",
            tags.join(", ")
        );
        let fleet = Fleet::parse(&text, Path::new("/f.toml"), Some(Path::new("/h")));
        let count = fleet.map(|f| f.hosts.values().map(|h| h.tags.len()).sum::<usize>());
        assert_eq!(count.ok(), Some(100_000));
        // A repeat at the very end is still found, and named with its position.
        let text = text.replace("\"t99999\"]", "\"t99999\", \"t5\"]");
        let err = Fleet::parse(&text, Path::new("/f.toml"), Some(Path::new("/h")));
        let message = err.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(
            message.contains("`tags` in [hosts.a] lists `t5` twice"),
            "{message}"
        );
    }

    #[test]
    fn host_keys_are_one_or_several_openssh_keys() {
        let key =
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMFEGlvgqrN9D7RX6IDRcvyBOCUCCTViRSpfGeNYakNl";
        let parse = |body: &str| {
            let text = format!("[fleet]\nflake = \"/f\"\n[hosts.a]\naddress = \"a\"\n{body}\n");
            Fleet::parse(&text, Path::new("/f.toml"), Some(Path::new("/h")))
                .map(|f| {
                    f.hosts
                        .values()
                        .next()
                        .map(|h| h.host_keys.clone())
                        .unwrap_or_default()
                })
                .map_err(|e| e.to_string())
        };
        assert_eq!(
            parse(&format!("host-key = \"{key} root@a\"")),
            Ok(vec![key.to_owned()])
        );
        assert_eq!(
            parse(&format!("host-key = [\"{key}\", \"{key}\"]")).map(|k| k.len()),
            Ok(2)
        );
        let bad = parse("host-key = \"AAAAC3Nza\"").expect_err("no type");
        assert!(
            bad.contains("/f.toml:5:12: `host-key` in [hosts.a] is not a public key"),
            "{bad}"
        );
    }
}
