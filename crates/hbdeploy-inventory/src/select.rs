//! Choosing hosts from the command line: `--all`, host names, and `@tag`.
//!
//! Selection is explicit: no arguments select nothing and are an error, so that a bare
//! `hbdeploy apply` never deploys the whole fleet by accident. Names and tags may be mixed; the
//! result is the union, each host once, in fleet order (sorted by name), whatever the order of
//! the arguments.

use std::collections::BTreeSet;
use std::fmt;

use crate::fleet::{Fleet, Host};
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
    pub fn hint(&self) -> Option<&str> {
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
