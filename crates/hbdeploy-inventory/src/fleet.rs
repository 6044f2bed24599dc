//! [`Fleet`] and [`Host`]: `fleet.toml` read, validated and resolved.
//!
//! Parsing is one pass over the TOML tree in a fixed order (top-level keys, `[fleet]`, `[ssh]`,
//! then hosts in file order) that stops at the first problem, reported with its location. A
//! [`Fleet`] that was built is complete: every host has an address, an attribute and fully
//! resolved SSH settings.

use std::collections::BTreeMap;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};

use crate::error::{InventoryError, Problem};
use crate::name::{HostName, Tag};
use crate::paths::{FlakeRef, Resolver};
use crate::reader::{Doc, Key, Table, Value};
use crate::schema::{DEFAULT_PARALLEL, FLEET_KEYS, HOST_KEYS, MAX_PARALLEL, SSH_KEYS, TOP_KEYS};
use crate::ssh::{SshOverrides, SshSettings};

/// One machine of the fleet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    /// Its name: the `NAME` of `[hosts.NAME]`.
    pub name: HostName,
    /// The DNS name or IP address to connect to.
    pub address: String,
    /// The attribute of the flake's `nixosConfigurations` that builds it.
    pub attr: String,
    /// Its tags, in the order written, without repeats.
    pub tags: Vec<Tag>,
    /// How to reach it.
    pub ssh: SshSettings,
}

impl Host {
    /// Whether the host carries `tag`.
    pub fn has_tag(&self, tag: &str) -> bool {
        self.tags.iter().any(|t| t.as_str() == tag)
    }
}

/// The whole of `fleet.toml`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fleet {
    /// The file it was read from, made absolute.
    pub path: PathBuf,
    /// The flake defining the hosts' `nixosConfigurations`.
    pub flake: FlakeRef,
    /// How many hosts are handled at once.
    pub parallel: NonZeroUsize,
    /// Every host, by name; never empty.
    pub hosts: BTreeMap<HostName, Host>,
}

impl Fleet {
    /// Reads and parses the file at `path`, expanding `~` with `$HOME`.
    pub fn load(path: &Path) -> Result<Fleet, InventoryError> {
        let text = std::fs::read_to_string(path).map_err(|source| InventoryError::Read {
            path: path.to_owned(),
            source,
        })?;
        let home = std::env::var_os("HOME").map(PathBuf::from);
        Fleet::parse(&text, path, home.as_deref())
    }

    /// Parses `text` as the contents of the file at `path`.
    ///
    /// `path` names the file in errors and anchors relative paths (made absolute against the
    /// current directory if it is relative); `home` replaces `~`, and `None` (or a relative
    /// path) makes any use of `~` an error. Nothing is read from the filesystem.
    pub fn parse(text: &str, path: &Path, home: Option<&Path>) -> Result<Fleet, InventoryError> {
        let absolute = std::path::absolute(path).map_err(|source| InventoryError::CurrentDir {
            path: path.to_owned(),
            source,
        })?;
        let dir = absolute.parent().unwrap_or(&absolute);
        let resolver = Resolver::new(dir, home);
        let doc = Doc::new(text, path);
        let tree = doc.parse()?;
        let root = doc.root(tree.get_ref());
        root.check_keys(TOP_KEYS)?;

        let fleet = root.table("fleet")?.ok_or_else(|| root.missing("fleet"))?;
        fleet.check_keys(FLEET_KEYS)?;
        let flake = read_flake(&fleet, &resolver)?;
        let parallel = match fleet.integer::<usize>("parallel", 1, MAX_PARALLEL)? {
            // `integer` checked that n >= 1, so the fallback is never taken.
            Some(n) => NonZeroUsize::new(n).unwrap_or(NonZeroUsize::MIN),
            None => NonZeroUsize::MIN.saturating_add(DEFAULT_PARALLEL - 1),
        };

        let ssh = match root.table("ssh")? {
            Some(table) => {
                table.check_keys(SSH_KEYS)?;
                SshOverrides::read(&table, &resolver)?
            }
            None => SshOverrides::default(),
        };

        let hosts_table = root.table("hosts")?;
        let hosts_table = match hosts_table {
            Some(table) if !table.is_empty() => table,
            other => {
                let span = other.map_or(0..0, |t| t.span());
                let hint = "add a table for each machine: [hosts.NAME] followed by address = \"…\"";
                return Err(doc.error(span, Problem::NoHosts, hint));
            }
        };
        let mut hosts = BTreeMap::new();
        for (key, value) in hosts_table.entries() {
            let host = read_host(&hosts_table, key, value, &ssh, &resolver)?;
            hosts.insert(host.name.clone(), host);
        }
        Ok(Fleet {
            path: absolute,
            flake,
            parallel,
            hosts,
        })
    }

    /// The host called `name`.
    pub fn host(&self, name: &str) -> Option<&Host> {
        self.hosts.get(name)
    }

    /// Every tag used by some host, sorted, without repeats.
    pub fn tags(&self) -> Vec<&Tag> {
        let mut tags: Vec<&Tag> = self.hosts.values().flat_map(|h| &h.tags).collect();
        tags.sort();
        tags.dedup();
        tags
    }
}

fn read_flake(fleet: &Table<'_>, resolver: &Resolver<'_>) -> Result<FlakeRef, InventoryError> {
    let value = fleet
        .string("flake")?
        .ok_or_else(|| fleet.missing("flake"))?;
    if value.get_ref().contains('#') {
        let hint = "remove the `#…` part; each host's attribute is set with `attr`";
        return Err(fleet.invalid("flake", value.span(), "contains `#`", hint));
    }
    resolver
        .flake(value.get_ref())
        .map_err(|e| fleet.invalid("flake", value.span(), e.reason(), e.hint()))
}

/// Reads the host table `[hosts.<key>]`.
fn read_host(
    hosts: &Table<'_>,
    key: &Key<'_>,
    value: &Value<'_>,
    ssh: &SshOverrides,
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
    Ok(Host {
        name,
        address: address.into_inner().to_owned(),
        attr,
        tags,
        ssh,
    })
}

/// Rejects addresses that cannot be a DNS name or IP address, with advice for the common
/// mistakes (`root@host`, a URL).
fn check_address(
    table: &Table<'_>,
    address: &str,
    span: std::ops::Range<usize>,
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

/// Reads `tags`: valid names, each at most once.
fn read_tags(table: &Table<'_>) -> Result<Vec<Tag>, InventoryError> {
    let mut tags: Vec<Tag> = Vec::new();
    for item in table.strings("tags")?.unwrap_or_default() {
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
        if tags.contains(&tag) {
            let reason = format!("lists `{tag}` twice");
            return Err(table.invalid("tags", item.span(), reason, "remove the repeated tag"));
        }
        tags.push(tag);
    }
    Ok(tags)
}
