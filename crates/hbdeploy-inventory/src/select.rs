//! Choosing hosts from the command line: `--all`, host names, and `@tag`.
//!
//! Selection is explicit: no arguments select nothing and are an error, so that a bare
//! `hbdeploy apply` never deploys the whole fleet by accident. Names and tags may be mixed; the
//! result is the union, each host once, in fleet order (sorted by name), whatever the order of
//! the arguments.

use std::collections::BTreeSet;
use std::fmt;

use crate::fleet::Fleet;
use crate::host::Host;
use crate::suggest;

/// One way of choosing hosts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    /// Every host (`--all`).
    All,
    /// The host with this name.
    Host(String),
    /// Every host with this tag (`@TAG` on the command line, stored without the `@`).
    Tag(String),
}

impl Selector {
    /// The selectors of a command line: `--all` if `all`, then one per argument, where `@name`
    /// is a tag and anything else a host name.
    pub fn parse_args(all: bool, args: &[String]) -> Result<Vec<Selector>, SelectError> {
        let mut selectors = Vec::with_capacity(args.len() + usize::from(all));
        if all {
            selectors.push(Selector::All);
        }
        for arg in args {
            let selector = match arg.strip_prefix('@') {
                Some("") => return Err(SelectError::EmptyTag),
                Some(tag) => Selector::Tag(tag.to_owned()),
                None if arg.is_empty() => return Err(SelectError::EmptyName),
                None => Selector::Host(arg.clone()),
            };
            selectors.push(selector);
        }
        Ok(selectors)
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Selector::All => f.write_str("--all"),
            Selector::Host(name) => f.write_str(name),
            Selector::Tag(tag) => write!(f, "@{tag}"),
        }
    }
}

/// Why a selection chose no hosts or named something that does not exist.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SelectError {
    /// No selectors at all.
    #[error("no hosts selected")]
    Nothing,
    /// An empty string as a host name.
    #[error("empty host name on the command line")]
    EmptyName,
    /// A lone `@`.
    #[error("`@` on its own selects nothing")]
    EmptyTag,
    /// A host name that is not in the fleet.
    #[error("{}", self.describe_unknown())]
    UnknownHost {
        /// The name as given.
        name: String,
        /// The fleet file's name, for the message.
        file: String,
        /// The fleet's host names.
        known: Vec<String>,
        /// The host name closest to `name`, if any is close.
        suggestion: Option<String>,
        /// Whether `name` is a tag, meant as `@name`.
        is_tag: bool,
    },
    /// A tag that no host has.
    #[error("{}", self.describe_unknown())]
    UnknownTag {
        /// The tag as given, without `@`.
        tag: String,
        /// The fleet file's name, for the message.
        file: String,
        /// The tags used in the fleet.
        known: Vec<String>,
        /// The tag closest to `tag`, if any is close.
        suggestion: Option<String>,
        /// Whether `tag` is a host name, meant without the `@`.
        is_host: bool,
    },
}

impl SelectError {
    /// The message of `UnknownHost` and `UnknownTag`, e.g.
    /// ``unknown host `sever` (fleet.toml has desktop, laptop, server); did you mean `server`?``
    fn describe_unknown(&self) -> String {
        let (kind, sigil, name, file, known, suggestion, other) = match self {
            SelectError::UnknownHost {
                name,
                file,
                known,
                suggestion,
                is_tag,
            } => (
                "host",
                "",
                name,
                file,
                known,
                suggestion,
                is_tag.then_some("tag"),
            ),
            SelectError::UnknownTag {
                tag,
                file,
                known,
                suggestion,
                is_host,
            } => (
                "tag",
                "@",
                tag,
                file,
                known,
                suggestion,
                is_host.then_some("host"),
            ),
            _ => return self.to_string(),
        };
        let mut message = format!("unknown {kind} `{sigil}{name}` ");
        if known.is_empty() {
            message.push_str(&format!("({file} has no {kind}s)"));
        } else {
            let list = suggest::list(known.iter().map(String::as_str));
            let plural = if kind == "tag" { " tags" } else { "" };
            message.push_str(&format!("({file} has{plural} {list})"));
        }
        match (other, suggestion) {
            (Some("tag"), _) => message.push_str(&format!("; `{name}` is a tag: write `@{name}`")),
            (Some(_), _) => {
                message.push_str(&format!("; `{name}` is a host: write it without `@`"))
            }
            (None, Some(close)) => message.push_str(&format!("; did you mean `{sigil}{close}`?")),
            (None, None) => {}
        }
        message
    }

    /// What the user can do about it.
    fn advice(&self) -> Option<&str> {
        Some(match self {
            SelectError::Nothing => {
                "say which hosts: `hbdeploy apply --all` for every host, `hbdeploy apply HOST…` \
                 for some by name, `hbdeploy apply @TAG` for those with a tag"
            }
            SelectError::EmptyName => "remove the empty argument",
            SelectError::EmptyTag => "write the tag right after the `@`, e.g. `@infra`",
            SelectError::UnknownHost { .. } => {
                "a host's name is the NAME of its [hosts.NAME] table in fleet.toml"
            }
            SelectError::UnknownTag { .. } => {
                "tags are given to hosts in fleet.toml with tags = [\"…\"]"
            }
        })
    }
}

impl hbdeploy_files::Hint for SelectError {
    /// What the user can do about it.
    fn hint(&self) -> Option<String> {
        self.advice().map(str::to_owned)
    }
}

impl Fleet {
    /// The hosts chosen by `selectors`: each once, in fleet order.
    pub fn select(&self, selectors: &[Selector]) -> Result<Vec<&Host>, SelectError> {
        if selectors.is_empty() {
            return Err(SelectError::Nothing);
        }
        let mut chosen: BTreeSet<&str> = BTreeSet::new();
        for selector in selectors {
            match selector {
                Selector::All => chosen.extend(self.hosts.keys().map(|k| k.as_str())),
                Selector::Host(name) => match self.hosts.get_key_value(name.as_str()) {
                    Some((key, _)) => {
                        chosen.insert(key.as_str());
                    }
                    None => return Err(self.unknown_host(name)),
                },
                Selector::Tag(tag) => {
                    let mut tagged = self.hosts.values().filter(|h| h.has_tag(tag)).peekable();
                    if tagged.peek().is_none() {
                        return Err(self.unknown_tag(tag));
                    }
                    chosen.extend(tagged.map(|h| h.name.as_str()));
                }
            }
        }
        Ok(self
            .hosts
            .values()
            .filter(|h| chosen.contains(h.name.as_str()))
            .collect())
    }

    fn file_name(&self) -> String {
        self.path.file_name().map_or_else(
            || "fleet.toml".to_owned(),
            |n| n.to_string_lossy().into_owned(),
        )
    }

    fn unknown_host(&self, name: &str) -> SelectError {
        let known: Vec<String> = self.hosts.keys().map(ToString::to_string).collect();
        SelectError::UnknownHost {
            name: name.to_owned(),
            file: self.file_name(),
            suggestion: suggest::closest(name, known.iter().map(String::as_str)).map(str::to_owned),
            is_tag: self.tags().iter().any(|t| t.as_str() == name),
            known,
        }
    }

    fn unknown_tag(&self, tag: &str) -> SelectError {
        let known: Vec<String> = self.tags().iter().map(ToString::to_string).collect();
        SelectError::UnknownTag {
            tag: tag.to_owned(),
            file: self.file_name(),
            suggestion: suggest::closest(tag, known.iter().map(String::as_str)).map(str::to_owned),
            is_host: self.hosts.contains_key(tag),
            known,
        }
    }
}

#[cfg(test)]
mod tests {
    use hbdeploy_files::Hint as _;
    use std::path::Path;

    use super::*;

    const FLEET: &str = r#"
        [fleet]
        flake = "./nixos"
        [hosts.desktop]
        address = "desktop"
        tags = ["workstation"]
        [hosts.laptop]
        address = "laptop"
        tags = ["workstation", "mobile"]
        [hosts.server]
        address = "server"
        tags = ["infra"]
    "#;

    /// Selects with `--all` if `all` and `args`; renders the host names, or `message | hint`.
    fn check(all: bool, args: &[&str], expected: &str) {
        let fleet = Fleet::parse(FLEET, Path::new("/x/fleet.toml"), Some(Path::new("/h")));
        let fleet = match fleet {
            Ok(fleet) => fleet,
            Err(e) => panic!("fixture does not parse: {e}"),
        };
        let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        let got = Selector::parse_args(all, &args).and_then(|s| fleet.select(&s));
        let got = match got {
            Ok(hosts) => hosts
                .iter()
                .map(|h| h.name.as_str())
                .collect::<Vec<_>>()
                .join(" "),
            Err(e) => format!("{e} | {}", e.hint().as_deref().unwrap_or("-")),
        };
        assert_eq!(got, expected, "all={all} args={args:?}");
    }

    #[test]
    fn names_tags_and_all() {
        check(true, &[], "desktop laptop server");
        check(false, &["server"], "server");
        check(false, &["server", "desktop"], "desktop server");
        check(false, &["@workstation"], "desktop laptop");
        check(false, &["@mobile", "server"], "laptop server");
        check(
            false,
            &["laptop", "@workstation", "laptop"],
            "desktop laptop",
        );
        check(true, &["server"], "desktop laptop server");
    }

    #[test]
    fn nothing_selected_says_how() {
        check(
            false,
            &[],
            "no hosts selected | say which hosts: `hbdeploy apply --all` for every host, \
             `hbdeploy apply HOST…` for some by name, `hbdeploy apply @TAG` for those with a tag",
        );
    }

    #[test]
    fn unknown_names_suggest() {
        let host_hint = "a host's name is the NAME of its [hosts.NAME] table in fleet.toml";
        let tag_hint = "tags are given to hosts in fleet.toml with tags = [\"…\"]";
        check(
            false,
            &["server", "sever"],
            &format!(
                "unknown host `sever` (fleet.toml has desktop, laptop, server); did you mean \
                 `server`? | {host_hint}"
            ),
        );
        check(
            false,
            &["mail"],
            &format!("unknown host `mail` (fleet.toml has desktop, laptop, server) | {host_hint}"),
        );
        check(
            false,
            &["infra"],
            &format!(
                "unknown host `infra` (fleet.toml has desktop, laptop, server); `infra` is a tag: \
                 write `@infra` | {host_hint}"
            ),
        );
        check(
            false,
            &["@workstatoin"],
            &format!(
                "unknown tag `@workstatoin` (fleet.toml has tags infra, mobile, workstation); did \
                 you mean `@workstation`? | {tag_hint}"
            ),
        );
        check(
            false,
            &["@server"],
            &format!(
                "unknown tag `@server` (fleet.toml has tags infra, mobile, workstation); `server` \
                 is a host: write it without `@` | {tag_hint}"
            ),
        );
    }

    #[test]
    fn bad_arguments() {
        check(
            false,
            &["@"],
            "`@` on its own selects nothing | write the tag right after the `@`, e.g. `@infra`",
        );
        check(
            false,
            &[""],
            "empty host name on the command line | remove the empty argument",
        );
    }

    #[test]
    fn selectors_display_as_typed() {
        let args = ["web".to_owned(), "@infra".to_owned()];
        let shown: Vec<String> = Selector::parse_args(true, &args)
            .map(|s| s.iter().map(ToString::to_string).collect())
            .unwrap_or_default();
        assert_eq!(shown, ["--all", "web", "@infra"]);
    }

    #[test]
    fn a_fleet_without_tags_says_so() {
        let text = "[fleet]\nflake = \"/f\"\n[hosts.a]\naddress = \"a\"\n";
        let fleet = Fleet::parse(text, Path::new("/f/hosts.toml"), Some(Path::new("/h")));
        let err = fleet
            .ok()
            .and_then(|f| f.select(&[Selector::Tag("x".to_owned())]).err());
        assert_eq!(
            err.map(|e| e.to_string()).as_deref(),
            Some("unknown tag `@x` (hosts.toml has no tags)")
        );
    }
}
