//! SSH settings: read from `[ssh]` and from each host table, then layered per host.
//!
//! Precedence is host table, then `[ssh]`, then the built-in default. Values are validated and
//! paths resolved where they are read, so an error points at the line that set the value, and
//! the resolved [`SshSettings`] of a host holds no `Option` except the identity file, whose
//! absence has a meaning: use the SSH agent.

use std::path::PathBuf;
use std::time::Duration;

use crate::error::InventoryError;
use crate::paths::Resolver;
use crate::reader::Table;
use crate::schema::{
    DEFAULT_CONNECT_TIMEOUT_SECS, DEFAULT_KEEPALIVE_COUNT, DEFAULT_KEEPALIVE_INTERVAL_SECS,
    DEFAULT_KNOWN_HOSTS, DEFAULT_PORT, DEFAULT_PRIVILEGE_ESCALATION, DEFAULT_USER,
    MAX_CONNECT_TIMEOUT_SECS,
};

/// How to reach one host over SSH, fully resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshSettings {
    /// The user to log in as.
    pub user: String,
    /// The TCP port of the host's sshd.
    pub port: u16,
    /// The private key to authenticate with; `None` means keys come from the SSH agent.
    pub identity_file: Option<PathBuf>,
    /// The known-hosts file that host keys are checked against, strictly.
    pub known_hosts: PathBuf,
    /// How long to wait for the connection and handshake.
    pub connect_timeout: Duration,
    /// Seconds between keepalives and how many may go unanswered; `None` when
    /// `keepalive-interval = 0`.
    pub keepalive: Option<(Duration, usize)>,
    /// The command (and arguments) that runs commands as root when `user` is not root.
    pub privilege_escalation: Vec<String>,
}

/// The SSH keys set in one table, validated and with paths resolved; unset keys are `None`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct SshOverrides {
    user: Option<String>,
    port: Option<u16>,
    identity_file: Option<PathBuf>,
    known_hosts: Option<PathBuf>,
    connect_timeout: Option<Duration>,
    keepalive_interval: Option<u64>,
    keepalive_count: Option<u64>,
    privilege_escalation: Option<Vec<String>>,
}

impl SshOverrides {
    /// Reads the SSH keys of `table` (`[ssh]` or a host table). Other keys are left to the
    /// caller, which has already checked that the table has no unknown ones.
    pub(crate) fn read(table: &Table<'_>, resolver: &Resolver<'_>) -> Result<Self, InventoryError> {
        let user = match table.string("user")? {
            None => None,
            Some(user) => {
                if let Some((reason, hint)) = login_problem(user.get_ref()) {
                    return Err(table.invalid("user", user.span(), reason, hint));
                }
                Some(user.into_inner().to_owned())
            }
        };
        let port = table.integer::<u16>("port", 1, u16::MAX.into())?;
        let connect_timeout = table
            .integer::<u64>("connect-timeout", 1, MAX_CONNECT_TIMEOUT_SECS)?
            .map(Duration::from_secs);
        Ok(SshOverrides {
            user,
            port,
            identity_file: Self::path(table, resolver, "identity-file")?,
            known_hosts: Self::path(table, resolver, "known-hosts")?,
            connect_timeout,
            keepalive_interval: table.integer::<u64>("keepalive-interval", 0, 3600)?,
            keepalive_count: table.integer::<u64>("keepalive-count", 1, 100)?,
            privilege_escalation: Self::escalation(table)?,
        })
    }

    /// Reads `privilege-escalation`: a command as one string of words, or an array of words.
    fn escalation(table: &Table<'_>) -> Result<Option<Vec<String>>, InventoryError> {
        const KEY: &str = "privilege-escalation";
        let Some((_, value)) = table.get(KEY) else {
            return Ok(None);
        };
        let (words, span) = if matches!(value.get_ref(), toml::de::DeValue::String(_)) {
            let Some(text) = table.string(KEY)? else {
                return Ok(None);
            };
            let words = text
                .get_ref()
                .split_whitespace()
                .map(str::to_owned)
                .collect::<Vec<_>>();
            (words, text.span())
        } else {
            let words = table.strings(KEY)?.unwrap_or_default();
            if let Some(bad) = words
                .iter()
                .find(|w| w.get_ref().is_empty() || w.get_ref().chars().any(char::is_control))
            {
                return Err(table.invalid(
                    KEY,
                    bad.span(),
                    "has an empty word or a control character",
                    "give the program and its arguments, e.g. privilege-escalation = [\"sudo\"]",
                ));
            }
            let words = words.iter().map(|w| (*w.get_ref()).to_owned()).collect();
            (words, value.span())
        };
        if words.is_empty() {
            return Err(table.invalid(
                KEY,
                span,
                "is empty",
                "name the command that runs a command as root, e.g. privilege-escalation = \
                 [\"sudo\"], or log in as root",
            ));
        }
        Ok(Some(words))
    }

    fn path(
        table: &Table<'_>,
        resolver: &Resolver<'_>,
        key: &str,
    ) -> Result<Option<PathBuf>, InventoryError> {
        let Some(value) = table.string(key)? else {
            return Ok(None);
        };
        resolver
            .path(value.get_ref())
            .map(Some)
            .map_err(|e| table.invalid(key, value.span(), e.reason(), e.advice()))
    }

    /// The settings of a host whose table set `self`, over the fleet-wide `base` from `[ssh]`,
    /// over the defaults. `table` is the host's table, blamed when a default cannot be resolved.
    pub(crate) fn resolve(
        &self,
        base: &SshOverrides,
        table: &Table<'_>,
        resolver: &Resolver<'_>,
    ) -> Result<SshSettings, InventoryError> {
        let known_hosts = match self.known_hosts.as_ref().or(base.known_hosts.as_ref()) {
            Some(path) => path.clone(),
            None => resolver.path(DEFAULT_KNOWN_HOSTS).map_err(|_| {
                table.invalid(
                    "known-hosts",
                    table.span(),
                    "is not set, and its default ~/.ssh/known_hosts needs $HOME, which is not \
                     set to an absolute path",
                    "set $HOME, or set known-hosts in [ssh] to a full path",
                )
            })?,
        };
        Ok(SshSettings {
            user: self
                .user
                .as_ref()
                .or(base.user.as_ref())
                .map_or(DEFAULT_USER, |u| u)
                .to_owned(),
            port: self.port.or(base.port).unwrap_or(DEFAULT_PORT),
            identity_file: self
                .identity_file
                .as_ref()
                .or(base.identity_file.as_ref())
                .cloned(),
            known_hosts,
            connect_timeout: self
                .connect_timeout
                .or(base.connect_timeout)
                .unwrap_or(Duration::from_secs(DEFAULT_CONNECT_TIMEOUT_SECS)),
            keepalive: match self
                .keepalive_interval
                .or(base.keepalive_interval)
                .unwrap_or(DEFAULT_KEEPALIVE_INTERVAL_SECS)
            {
                0 => None,
                secs => Some((
                    Duration::from_secs(secs),
                    usize::try_from(
                        self.keepalive_count
                            .or(base.keepalive_count)
                            .unwrap_or(DEFAULT_KEEPALIVE_COUNT),
                    )
                    .unwrap_or(usize::MAX),
                )),
            },
            privilege_escalation: self
                .privilege_escalation
                .as_ref()
                .or(base.privilege_escalation.as_ref())
                .cloned()
                .unwrap_or_else(|| vec![DEFAULT_PRIVILEGE_ESCALATION.to_owned()]),
        })
    }
}

/// What is wrong with the login name `user`, and what to do, if anything is.
///
/// A login name ends up in an `ssh-ng://USER@HOST` store URI, in OpenSSH's `User` and on remote
/// command lines, so it is held to the portable set of user names: ASCII letters, digits, `.`,
/// `_` and `-`, not starting with `-`. `@`, `?`, `/`, `:` and `#` would change what the URI
/// means.
pub(crate) fn login_problem(user: &str) -> Option<(String, &'static str)> {
    const EXAMPLE: &str = "give the login name on the host, e.g. user = \"root\"";
    if user.is_empty() {
        return Some(("is empty".to_owned(), EXAMPLE));
    }
    if user.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Some(("contains whitespace".to_owned(), EXAMPLE));
    }
    if user.starts_with('-') {
        return Some(("starts with `-`".to_owned(), EXAMPLE));
    }
    if user.contains('@') {
        return Some((
            "contains `@`".to_owned(),
            "give only the login name: the host goes in `address`, and a host to reach it \
             through in `proxy-jump`",
        ));
    }
    let bad = user
        .chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))?;
    Some((
        format!("contains `{bad}`"),
        "a login name is ASCII letters, digits, `.`, `_` and `-`, e.g. user = \"deploy\"",
    ))
}

#[cfg(test)]
mod tests {
    use hbdeploy_files::Hint as _;
    use std::path::Path;

    use super::*;
    use crate::doc::Doc;

    /// Resolves the SSH settings of `[host]` over `[ssh]` in `text`, or renders the error.
    fn settings(text: &str, home: Option<&str>) -> Result<SshSettings, String> {
        let resolver = Resolver::new(Path::new("/fleet"), home.map(Path::new));
        let doc = Doc::new(text, Path::new("fleet.toml"));
        let run = || {
            let tree = doc.parse()?;
            let root = Table::root(&doc, tree.get_ref());
            let read = |key| match root.table(key)? {
                Some(table) => Ok((SshOverrides::read(&table, &resolver)?, Some(table))),
                None => Ok::<_, InventoryError>((SshOverrides::default(), None)),
            };
            let (base, _) = read("ssh")?;
            let (host, table) = read("host")?;
            let table = table.unwrap_or_else(|| Table::root(&doc, tree.get_ref()));
            host.resolve(&base, &table, &resolver)
        };
        run().map_err(|e| format!("{e} (hint: {})", e.hint().as_deref().unwrap_or("-")))
    }

    fn check(text: &str, expected: Result<SshSettings, &str>) {
        assert_eq!(
            settings(text, Some("/home/me")),
            expected.map_err(str::to_owned),
            "{text}"
        );
    }

    fn defaults() -> SshSettings {
        SshSettings {
            user: "root".to_owned(),
            port: 22,
            identity_file: None,
            known_hosts: PathBuf::from("/home/me/.ssh/known_hosts"),
            connect_timeout: Duration::from_secs(10),
            keepalive: Some((Duration::from_secs(5), 3)),
            privilege_escalation: vec!["sudo".to_owned()],
        }
    }

    #[test]
    fn defaults_apply_when_nothing_is_set() {
        check("", Ok(defaults()));
        check("[ssh]\n[host]\n", Ok(defaults()));
    }

    #[test]
    fn host_overrides_ssh_overrides_defaults() {
        let text = "[ssh]\nuser = \"deploy\"\nport = 2222\nidentity-file = \"keys/fleet\"\n\
                    [host]\nport = 22022\nknown-hosts = \"/etc/ssh/known\"\nconnect-timeout = 3\n";
        check(
            text,
            Ok(SshSettings {
                user: "deploy".to_owned(),
                port: 22022,
                identity_file: Some(PathBuf::from("/fleet/keys/fleet")),
                known_hosts: PathBuf::from("/etc/ssh/known"),
                connect_timeout: Duration::from_secs(3),
                ..defaults()
            }),
        );
    }

    #[test]
    fn keepalive_and_escalation_layer_and_zero_turns_keepalives_off() {
        let text = "[ssh]\nkeepalive-count = 5\nprivilege-escalation = \"doas -u root\"\n\
                    [host]\nkeepalive-interval = 2\n";
        let set = settings(text, Some("/home/me")).expect("valid");
        assert_eq!(set.keepalive, Some((Duration::from_secs(2), 5)));
        assert_eq!(set.privilege_escalation, ["doas", "-u", "root"]);
        let off = settings("[host]\nkeepalive-interval = 0\n", Some("/home/me"));
        assert_eq!(off.map(|s| s.keepalive), Ok(None));
        let array = settings(
            "[host]\nprivilege-escalation = [\"/run/wrappers/bin/sudo\", \"-H\"]\n",
            Some("/home/me"),
        );
        assert_eq!(
            array.map(|s| s.privilege_escalation),
            Ok(vec!["/run/wrappers/bin/sudo".to_owned(), "-H".to_owned()])
        );
    }

    #[test]
    fn an_empty_escalation_command_is_located() {
        check(
            "[ssh]\nprivilege-escalation = \"  \"\n",
            Err(
                "fleet.toml:2:24: `privilege-escalation` in [ssh] is empty (hint: name the \
                 command that runs a command as root, e.g. privilege-escalation = [\"sudo\"], \
                 or log in as root)",
            ),
        );
        check(
            "[host]\nprivilege-escalation = [\"sudo\", \"\"]\n",
            Err(
                "fleet.toml:2:33: `privilege-escalation` in [host] has an empty word or a \
                 control character (hint: give the program and its arguments, e.g. \
                 privilege-escalation = [\"sudo\"])",
            ),
        );
    }

    #[test]
    fn bad_values_are_located() {
        check(
            "[ssh]\nuser = \"\"\n",
            Err("fleet.toml:2:8: `user` in [ssh] is empty \
                 (hint: give the login name on the host, e.g. user = \"root\")"),
        );
        check(
            "[host]\nport = 70000\n",
            Err(
                "fleet.toml:2:8: `port` in [host] must be between 1 and 65535, not 70000 \
                 (hint: use the port the host's sshd listens on; the default is 22)",
            ),
        );
        check(
            "[ssh]\nidentity-file = \"~bob/id\"\n",
            Err(
                "fleet.toml:2:17: `identity-file` in [ssh] starts with `~user`, which hbdeploy \
                 does not expand (hint: write the path in full, or use `~/` for your own home)",
            ),
        );
    }

    #[test]
    fn user_names_that_would_break_the_store_uri_are_refused() {
        for good in ["root", "deploy", "ci_bot-2", "first.last", "A1"] {
            let set = settings(&format!("[ssh]\nuser = \"{good}\"\n"), Some("/home/me"));
            assert_eq!(set.map(|s| s.user), Ok(good.to_owned()));
        }
        check(
            "[host]\nuser = \"root@h\"\n",
            Err(
                "fleet.toml:2:8: `user` in [host] contains `@` (hint: give only the login \
                 name: the host goes in `address`, and a host to reach it through in \
                 `proxy-jump`)",
            ),
        );
        for (bad, shown) in [
            ("a?b", "?"),
            ("a/b", "/"),
            ("a:pw", ":"),
            ("a#b", "#"),
            ("a%40", "%"),
            ("a;b", ";"),
            ("$(x)", "$"),
            ("dom\\\\u", "\\"),
            ("é", "é"),
        ] {
            check(
                &format!("[ssh]\nuser = \"{bad}\"\n"),
                Err(&format!(
                    "fleet.toml:2:8: `user` in [ssh] contains `{shown}` (hint: a login name is \
                     ASCII letters, digits, `.`, `_` and `-`, e.g. user = \"deploy\")"
                )),
            );
        }
        check(
            "[ssh]\nuser = \"-oProxyCommand=x\"\n",
            Err("fleet.toml:2:8: `user` in [ssh] starts with `-` \
                 (hint: give the login name on the host, e.g. user = \"root\")"),
        );
    }

    #[test]
    fn default_known_hosts_needs_home() {
        let err = settings("[host]\n", None).err().unwrap_or_default();
        assert!(
            err.starts_with("fleet.toml:1:1: `known-hosts` in [host] is not set"),
            "{err}"
        );
        let set = settings("[ssh]\nknown-hosts = \"/k\"\n[host]\n", None);
        assert_eq!(set.map(|s| s.known_hosts), Ok(PathBuf::from("/k")));
    }
}
