//! Secrets (keys) uploaded to hosts out of the store: `[secrets.NAME]` for every host and
//! `[hosts.HOST.secrets.NAME]` for one (replacing a fleet-wide secret of the same name). Each
//! takes its content from a local `file` or a `command` run on the workstation, and says where
//! it goes (`dest`), whose it is (`owner`, `group`), its `mode` and when it is uploaded.
//!
//! Only the description is read here: the content is read by whoever uploads it, never by the
//! inventory (which does no IO beyond fleet.toml).

use std::collections::HashSet;
use std::path::PathBuf;

use toml::de::DeValue;

use crate::error::InventoryError;
use crate::paths::Resolver;
use crate::reader::{Key, Table, Value};
use crate::schema::SECRET_KEYS;

/// Where a secret goes when `dest` is not set: this directory, then its name.
pub const DEFAULT_SECRET_DIR: &str = "/run/keys";
/// The mode of a secret when `mode` is not set: readable by its owner only.
pub const DEFAULT_SECRET_MODE: u32 = 0o400;

/// Where a secret's content comes from, on the workstation.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SecretSource {
    /// A local file, read whole.
    File(PathBuf),
    /// A program and its arguments (no shell), whose stdout is the content.
    Command(Vec<String>),
}

/// When a secret is uploaded during `apply`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Upload {
    /// After the system is copied, before it is activated (the default): a secret the new
    /// system needs as it starts is there, and a secret that cannot be written stops the host
    /// before it changes.
    #[default]
    PreActivation,
    /// After a successful activation: for owners and groups the new system creates.
    PostActivation,
}

impl Upload {
    /// The value as written in fleet.toml.
    pub fn as_str(self) -> &'static str {
        match self {
            Upload::PreActivation => "pre-activation",
            Upload::PostActivation => "post-activation",
        }
    }
}

/// One secret of a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Secret {
    /// Its name: the `NAME` of `[secrets.NAME]`.
    pub name: String,
    /// Where its content comes from.
    pub source: SecretSource,
    /// The absolute path on the host.
    pub dest: String,
    /// The user owning the file on the host.
    pub owner: String,
    /// The group owning the file on the host.
    pub group: String,
    /// The file's permission bits (at most `0o777`).
    pub mode: u32,
    /// When it is uploaded.
    pub upload: Upload,
}

/// Reads the `[secrets.NAME]` tables under `table` (the root or a host table), in file order.
pub(crate) fn read_secrets(
    table: &Table<'_>,
    resolver: &Resolver<'_>,
) -> Result<Vec<Secret>, InventoryError> {
    let Some(secrets) = table.table("secrets")? else {
        return Ok(Vec::new());
    };
    secrets
        .entries()
        .into_iter()
        .map(|(key, value)| read_secret(&secrets, key, value, resolver))
        .collect()
}

/// A host's secrets: the fleet-wide ones, each replaced by the host's own of the same name,
/// then the host's others. Two secrets of one host may not share a `dest`.
pub(crate) fn merge(
    table: &Table<'_>,
    fleet: &[Secret],
    own: Vec<Secret>,
) -> Result<Vec<Secret>, InventoryError> {
    let mut merged: Vec<Secret> = fleet
        .iter()
        .filter(|s| !own.iter().any(|o| o.name == s.name))
        .cloned()
        .collect();
    merged.extend(own);
    let mut dests = HashSet::new();
    for secret in &merged {
        if !dests.insert(secret.dest.as_str()) {
            let span = table
                .get("secrets")
                .map_or_else(|| table.span(), |(k, _)| k.span());
            return Err(table.invalid(
                "secrets",
                span,
                format!("has two secrets with dest = \"{}\"", secret.dest),
                "give each secret of a host its own dest",
            ));
        }
    }
    Ok(merged)
}

fn read_secret(
    secrets: &Table<'_>,
    key: &Key<'_>,
    value: &Value<'_>,
    resolver: &Resolver<'_>,
) -> Result<Secret, InventoryError> {
    let name: &str = key.get_ref();
    let table = secrets.child(key, value)?;
    if let Some(reason) = name_problem(name) {
        return Err(secrets.invalid(
            name,
            key.span(),
            reason,
            "secret names are ASCII letters, digits, `.`, `_` and `-`, not starting with `.` \
             or `-`, e.g. [secrets.wifi-psk]",
        ));
    }
    table.check_keys(SECRET_KEYS)?;
    let source = read_source(&table, resolver)?;
    let dest = match table.string("dest")? {
        None => format!("{DEFAULT_SECRET_DIR}/{name}"),
        Some(dest) => {
            if let Some(reason) = dest_problem(dest.get_ref()) {
                return Err(table.invalid(
                    "dest",
                    dest.span(),
                    reason,
                    "give an absolute path on the host outside /nix, e.g. dest = \
                     \"/run/keys/wifi\"; the default is /run/keys/NAME",
                ));
            }
            (*dest.get_ref()).to_owned()
        }
    };
    let owner = read_account(&table, "owner")?;
    let group = read_account(&table, "group")?;
    let mode = match table.string("mode")? {
        None => DEFAULT_SECRET_MODE,
        Some(mode) => parse_mode(mode.get_ref()).ok_or_else(|| {
            table.invalid(
                "mode",
                mode.span(),
                "is not an octal mode of at most 0777",
                "write the permission bits in octal, e.g. mode = \"0440\"; the default is \"0400\"",
            )
        })?,
    };
    let upload = match table.string("upload")? {
        None => Upload::default(),
        Some(upload) => match *upload.get_ref() {
            "pre-activation" => Upload::PreActivation,
            "post-activation" => Upload::PostActivation,
            _ => {
                return Err(table.invalid(
                    "upload",
                    upload.span(),
                    "is neither \"pre-activation\" nor \"post-activation\"",
                    "use upload = \"post-activation\" for an owner the new system creates; the \
                     default is \"pre-activation\"",
                ));
            }
        },
    };
    Ok(Secret {
        name: name.to_owned(),
        source,
        dest,
        owner,
        group,
        mode,
        upload,
    })
}

/// Reads exactly one of `file` and `command`.
fn read_source(table: &Table<'_>, resolver: &Resolver<'_>) -> Result<SecretSource, InventoryError> {
    let one = "give exactly one of file = \"path\" or command = [\"program\", \"arg\", …]";
    match (table.get("file"), table.get("command")) {
        (Some(_), None) => {
            let Some(file) = table.string("file")? else {
                return Err(table.missing("file"));
            };
            let path = resolver
                .path(file.get_ref())
                .map_err(|e| table.invalid("file", file.span(), e.reason(), e.advice()))?;
            Ok(SecretSource::File(path))
        }
        (None, Some((_, value))) => {
            let hint = "give the program and its arguments, run without a shell, e.g. \
                        command = [\"pass\", \"show\", \"wifi\"]";
            if !matches!(value.get_ref(), DeValue::Array(_)) {
                let reason = "must be an array of strings (the program and its arguments)";
                return Err(table.invalid("command", value.span(), reason, hint));
            }
            let argv = table.strings("command")?.unwrap_or_default();
            match argv.first() {
                Some(program) if !program.get_ref().trim().is_empty() => Ok(SecretSource::Command(
                    argv.iter().map(|a| (*a.get_ref()).to_owned()).collect(),
                )),
                _ => Err(table.invalid("command", value.span(), "names no program", hint)),
            }
        }
        _ => Err(table.invalid("secret", table.span(), "needs exactly one source", one)),
    }
}

/// Reads `owner` or `group`: a user or group name, `root` when not set.
fn read_account(table: &Table<'_>, key: &'static str) -> Result<String, InventoryError> {
    let Some(value) = table.string(key)? else {
        return Ok("root".to_owned());
    };
    let name = *value.get_ref();
    let bad = name.is_empty()
        || name.starts_with('-')
        || name
            .chars()
            .any(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '$')));
    if bad {
        return Err(table.invalid(
            key,
            value.span(),
            "is not a user or group name",
            format!(
                "give a name of ASCII letters, digits, `.`, `_` and `-`, e.g. {key} = \"nginx\"; \
                 the default is \"root\""
            ),
        ));
    }
    Ok(name.to_owned())
}

/// Why `name` cannot be a secret's name (it is the default file name on the host).
fn name_problem(name: &str) -> Option<String> {
    if name.is_empty() || name.len() > 255 {
        return Some("must be 1 to 255 characters long".to_owned());
    }
    if name.starts_with(['.', '-']) {
        return Some("starts with `.` or `-`".to_owned());
    }
    name.chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
        .map(|c| format!("contains `{}`", c.escape_default()))
}

/// Why `dest` cannot be where a secret is written.
fn dest_problem(dest: &str) -> Option<&'static str> {
    if !dest.starts_with('/') {
        Some("is not an absolute path")
    } else if dest.ends_with('/') {
        Some("names a directory, not a file")
    } else if dest.chars().any(char::is_control) {
        Some("contains a control character")
    } else if dest.split('/').any(|part| part == ".." || part == ".") {
        Some("contains `.` or `..`")
    } else if dest == "/nix" || dest.starts_with("/nix/") {
        Some("is under /nix, whose store is readable by every user")
    } else {
        None
    }
}

/// `0400`, `400` or `0o400` as permission bits, at most `0o777`.
fn parse_mode(text: &str) -> Option<u32> {
    let digits = text.strip_prefix("0o").unwrap_or(text);
    if digits.is_empty() || digits.len() > 4 || !digits.bytes().all(|b| (b'0'..=b'7').contains(&b))
    {
        return None;
    }
    u32::from_str_radix(digits, 8).ok().filter(|m| *m <= 0o777)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_fleet::parse;

    const HEAD: &str = "[fleet]\nflake = \".\"\n";

    fn secrets_of(text: &str, host: &str) -> Vec<Secret> {
        let fleet = parse(text).expect("valid");
        fleet.host(host).expect("host").secrets.clone()
    }

    #[test]
    fn defaults_and_every_key() {
        let text = format!(
            "{HEAD}[secrets.wifi]\ncommand = [\"pass\", \"show\", \"wifi\"]\n\
             [secrets.tls]\nfile = \"keys/tls.pem\"\ndest = \"/var/lib/tls/key.pem\"\n\
             owner = \"nginx\"\ngroup = \"web\"\nmode = \"0440\"\nupload = \"post-activation\"\n\
             [hosts.a]\naddress = \"a\"\n"
        );
        let secrets = secrets_of(&text, "a");
        assert_eq!(
            secrets,
            [
                Secret {
                    name: "wifi".to_owned(),
                    source: SecretSource::Command(vec![
                        "pass".to_owned(),
                        "show".to_owned(),
                        "wifi".to_owned()
                    ]),
                    dest: "/run/keys/wifi".to_owned(),
                    owner: "root".to_owned(),
                    group: "root".to_owned(),
                    mode: 0o400,
                    upload: Upload::PreActivation,
                },
                Secret {
                    name: "tls".to_owned(),
                    source: SecretSource::File("/f/keys/tls.pem".into()),
                    dest: "/var/lib/tls/key.pem".to_owned(),
                    owner: "nginx".to_owned(),
                    group: "web".to_owned(),
                    mode: 0o440,
                    upload: Upload::PostActivation,
                },
            ]
        );
    }

    #[test]
    fn a_hosts_own_secret_replaces_the_fleet_wide_one_of_its_name() {
        let text = format!(
            "{HEAD}[secrets.a]\nfile = \"/a\"\n[secrets.b]\nfile = \"/b\"\n\
             [hosts.x]\naddress = \"x\"\n[hosts.x.secrets.b]\nfile = \"/xb\"\n\
             [hosts.x.secrets.c]\nfile = \"/c\"\n[hosts.y]\naddress = \"y\"\n"
        );
        let files = |host: &str| -> Vec<String> {
            secrets_of(&text, host)
                .iter()
                .map(|s| match &s.source {
                    SecretSource::File(p) => p.display().to_string(),
                    SecretSource::Command(_) => String::new(),
                })
                .collect()
        };
        assert_eq!(files("x"), ["/a", "/xb", "/c"]);
        assert_eq!(files("y"), ["/a", "/b"]);
    }

    #[test]
    fn mistakes_are_located_and_explained() {
        let check = |body: &str, expected: &str| {
            let text = format!("{HEAD}[hosts.a]\naddress = \"a\"\n{body}\n");
            let err = parse(&text).expect_err(body);
            assert!(err.contains(expected), "{body}: {err}");
        };
        check(
            "[hosts.a.secrets.k]\nfile = \"/k\"\ncommand = [\"x\"]",
            "fleet.toml:5:1: `secret` in [hosts.a.secrets.k] needs exactly one source",
        );
        check(
            "[hosts.a.secrets.k]\nowner = \"x\"",
            "needs exactly one source",
        );
        check(
            "[hosts.a.secrets.k]\ncommand = \"pass show k\"",
            "`command` in [hosts.a.secrets.k] must be an array of strings",
        );
        check("[hosts.a.secrets.k]\ncommand = []", "names no program");
        check(
            "[hosts.a.secrets.k]\nfile = \"/k\"\nmode = \"0999\"",
            "`mode` in [hosts.a.secrets.k] is not an octal mode",
        );
        check(
            "[hosts.a.secrets.k]\nfile = \"/k\"\nmode = \"4755\"",
            "not an octal mode",
        );
        check(
            "[hosts.a.secrets.k]\nfile = \"/k\"\nmode = 400",
            "`mode` in [hosts.a.secrets.k] must be a string, not an integer",
        );
        check(
            "[hosts.a.secrets.k]\nfile = \"/k\"\ndest = \"keys/k\"",
            "is not an absolute path",
        );
        check(
            "[hosts.a.secrets.k]\nfile = \"/k\"\ndest = \"/nix/store/k\"",
            "is under /nix",
        );
        check(
            "[hosts.a.secrets.k]\nfile = \"/k\"\nowner = \"-x\"",
            "`owner` in [hosts.a.secrets.k] is not a user or group name",
        );
        check(
            "[hosts.a.secrets.k]\nfile = \"/k\"\nupload = \"before\"",
            "is neither \"pre-activation\" nor \"post-activation\"",
        );
        check(
            "[hosts.a.secrets.k]\nfile = \"/k\"\nowners = \"x\"",
            "unknown key `owners` in [hosts.a.secrets.k]",
        );
        check(
            "[hosts.a.secrets.\".k\"]\nfile = \"/k\"",
            "starts with `.` or `-`",
        );
        check(
            "[hosts.a.secrets.k]\nfile = \"/k\"\n[hosts.a.secrets.j]\nfile = \"/j\"\n\
             dest = \"/run/keys/k\"",
            "has two secrets with dest = \"/run/keys/k\"",
        );
    }

    #[test]
    fn modes() {
        assert_eq!(parse_mode("0400"), Some(0o400));
        assert_eq!(parse_mode("640"), Some(0o640));
        assert_eq!(parse_mode("0o600"), Some(0o600));
        for bad in ["", "8", "01000", "rw", "-400", "04000"] {
            assert_eq!(parse_mode(bad), None, "{bad}");
        }
    }
}
