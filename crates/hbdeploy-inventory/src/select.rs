//! Choosing hosts from the command line: `--all`, host names, `@tag`, patterns (`'web-*'`,
//! `'@eu-*'`) and exclusions (`'!server'`, `'!@mobile'`, `'!web-[12]'`).
//!
//! Selection is explicit: no arguments select nothing and are an error, so that a bare
//! `hbdeploy apply` never deploys the whole fleet by accident. Names, tags and patterns may be
//! mixed; the result is their union minus every exclusion, each host once, in fleet order
//! (sorted by name), whatever the order of the arguments. Exclusions only take away: given
//! alone they are an error (say `--all '!server'`), as is a selection they leave empty. A
//! pattern or exclusion that matches nothing is an error with the closest names, like an unknown
//! name: a typo in `'!sever'` must not deploy `server`.

use std::collections::BTreeSet;
use std::fmt;

use crate::fleet::Fleet;
use crate::glob::{Glob, GlobError, is_pattern};
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
    /// Every host whose name matches this pattern (`web-*`).
    HostPattern(String),
    /// Every host with a tag that matches this pattern (`@eu-*`, stored without the `@`).
    TagPattern(String),
    /// Not the hosts the inner selector chooses (`!HOST`, `!@TAG`, `!PATTERN`); never `All` or
    /// another exclusion.
    Exclude(Box<Selector>),
}

impl Selector {
    /// The selectors of a command line: `--all` if `all`, then one per argument, where `@name`
    /// is a tag, a word with `*`, `?` or `[` a pattern, `!…` an exclusion of any of these, and
    /// anything else a host name.
    pub fn parse_args(all: bool, args: &[String]) -> Result<Vec<Selector>, SelectError> {
        let mut selectors = Vec::with_capacity(args.len() + usize::from(all));
        if all {
            selectors.push(Selector::All);
        }
        for arg in args {
            let selector = match arg.strip_prefix('!') {
                Some("") => return Err(SelectError::EmptyExclusion),
                Some(rest) if rest.starts_with('!') => {
                    return Err(SelectError::DoubleExclusion { arg: arg.clone() });
                }
                Some(rest) => Selector::Exclude(Box::new(Self::parse_one(rest)?)),
                None => Self::parse_one(arg)?,
            };
            selectors.push(selector);
        }
        Ok(selectors)
    }

    /// One argument without its `!`.
    fn parse_one(arg: &str) -> Result<Selector, SelectError> {
        let checked = |pattern: &str| {
            Glob::new(pattern).map_err(|reason| SelectError::BadPattern {
                pattern: arg.to_owned(),
                reason,
            })
        };
        Ok(match arg.strip_prefix('@') {
            Some("") => return Err(SelectError::EmptyTag),
            Some(tag) if is_pattern(tag) => {
                checked(tag)?;
                Selector::TagPattern(tag.to_owned())
            }
            Some(tag) => Selector::Tag(tag.to_owned()),
            None if arg.is_empty() => return Err(SelectError::EmptyName),
            None if is_pattern(arg) => {
                checked(arg)?;
                Selector::HostPattern(arg.to_owned())
            }
            None => Selector::Host(arg.to_owned()),
        })
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Selector::All => f.write_str("--all"),
            Selector::Host(name) | Selector::HostPattern(name) => f.write_str(name),
            Selector::Tag(tag) | Selector::TagPattern(tag) => write!(f, "@{tag}"),
            Selector::Exclude(inner) => write!(f, "!{inner}"),
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
    /// A pattern that matches no host name (or, with `@`, no tag).
    #[error("{}", self.describe_no_match())]
    NoMatch {
        /// The pattern as given, with its `@` for a tag pattern (without a `!`).
        pattern: String,
        /// The fleet file's name, for the message.
        file: String,
        /// The fleet's host names (or tags, for a tag pattern).
        known: Vec<String>,
        /// A pattern that differs from it in a typo and matches, if there is one.
        suggestion: Option<String>,
    },
    /// A word with `*`, `?` or `[` that is not a valid pattern.
    #[error("`{pattern}` is not a valid pattern: {reason}")]
    BadPattern {
        /// The argument as given.
        pattern: String,
        /// What is wrong with it.
        reason: GlobError,
    },
    /// A lone `!`.
    #[error("`!` on its own excludes nothing")]
    EmptyExclusion,
    /// `!!…`.
    #[error("`{arg}`: an exclusion of an exclusion means nothing")]
    DoubleExclusion {
        /// The argument as given.
        arg: String,
    },
    /// Only exclusions: nothing to exclude from.
    #[error("only exclusions given ({given}): they take hosts away, but no host was selected")]
    OnlyExclusions {
        /// The exclusions, as typed.
        given: String,
    },
    /// The exclusions took away every selected host.
    #[error("`{given}` leaves no host: the exclusions take away every selected one")]
    AllExcluded {
        /// The whole selection, as typed.
        given: String,
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
            SelectError::NoMatch { .. } | SelectError::BadPattern { .. } => {
                "in a pattern `*` matches any characters, `?` one, `[abc]` one of a, b, c, \
                 `[a-z]` one in the range, `[!abc]` any other; quote it for the shell: 'web-*'"
            }
            SelectError::EmptyExclusion => {
                "write what to exclude right after the `!`, e.g. `!server`"
            }
            SelectError::DoubleExclusion { .. } => "write one `!`, e.g. `!server`",
            SelectError::OnlyExclusions { .. } => {
                "say what to exclude from: `hbdeploy apply --all '!HOST'`, or \
                 `hbdeploy apply @TAG '!HOST'` (quote `!` for the shell)"
            }
            SelectError::AllExcluded { .. } => "select more hosts, or exclude fewer",
        })
    }

    /// The message of `NoMatch`, e.g.
    /// ``no host matches `wbe-*` (fleet.toml has web-1, web-2); did you mean `web-*`?``
    fn describe_no_match(&self) -> String {
        let SelectError::NoMatch {
            pattern,
            file,
            known,
            suggestion,
        } = self
        else {
            return self.to_string();
        };
        let kind = if pattern.starts_with('@') {
            "tag"
        } else {
            "host"
        };
        let mut message = format!("no {kind} matches `{pattern}` ");
        if known.is_empty() {
            message.push_str(&format!("({file} has no {kind}s)"));
        } else {
            let list = suggest::list(known.iter().map(String::as_str));
            let plural = if kind == "tag" { " tags" } else { "" };
            message.push_str(&format!("({file} has{plural} {list})"));
        }
        if let Some(close) = suggestion {
            message.push_str(&format!("; did you mean `{close}`?"));
        }
        message
    }
}

impl hbdeploy_files::Hint for SelectError {
    /// What the user can do about it.
    fn hint(&self) -> Option<String> {
        self.advice().map(str::to_owned)
    }
}

impl Fleet {
    /// The hosts chosen by `selectors`: the union of the positive ones minus every exclusion,
    /// each once, in fleet order.
    pub fn select(&self, selectors: &[Selector]) -> Result<Vec<&Host>, SelectError> {
        if selectors.is_empty() {
            return Err(SelectError::Nothing);
        }
        let (excluded, chosen): (Vec<&Selector>, Vec<&Selector>) = selectors
            .iter()
            .partition(|s| matches!(s, Selector::Exclude(_)));
        if chosen.is_empty() {
            return Err(SelectError::OnlyExclusions {
                given: shown(&excluded),
            });
        }
        let mut names: BTreeSet<&str> = BTreeSet::new();
        for selector in &chosen {
            names.extend(self.matching(selector)?);
        }
        // Every exclusion is checked against the fleet, also one that takes nothing away from
        // this selection: a misspelt exclusion is an error, never a silent no-op.
        for selector in &excluded {
            if let Selector::Exclude(inner) = selector {
                for name in self.matching(inner)? {
                    names.remove(name);
                }
            }
        }
        if names.is_empty() {
            return Err(SelectError::AllExcluded {
                given: shown(&selectors.iter().collect::<Vec<_>>()),
            });
        }
        Ok(self
            .hosts
            .values()
            .filter(|h| names.contains(h.name.as_str()))
            .collect())
    }

    /// The names of the hosts one positive selector chooses; never empty.
    fn matching(&self, selector: &Selector) -> Result<BTreeSet<&str>, SelectError> {
        let names: BTreeSet<&str> = match selector {
            Selector::All => self.hosts.keys().map(|k| k.as_str()).collect(),
            Selector::Host(name) => match self.hosts.get_key_value(name.as_str()) {
                Some((key, _)) => BTreeSet::from([key.as_str()]),
                None => return Err(self.unknown_host(name)),
            },
            Selector::Tag(tag) => {
                let tagged: BTreeSet<&str> = self
                    .hosts
                    .values()
                    .filter(|h| h.has_tag(tag))
                    .map(|h| h.name.as_str())
                    .collect();
                if tagged.is_empty() {
                    return Err(self.unknown_tag(tag));
                }
                tagged
            }
            Selector::HostPattern(pattern) => {
                let glob = self.glob(pattern, pattern)?;
                let known: Vec<&str> = self.hosts.keys().map(|k| k.as_str()).collect();
                let matched: BTreeSet<&str> =
                    known.iter().copied().filter(|n| glob.matches(n)).collect();
                if matched.is_empty() {
                    return Err(self.no_match(pattern, "", &known));
                }
                matched
            }
            Selector::TagPattern(pattern) => {
                let glob = self.glob(pattern, &format!("@{pattern}"))?;
                let tags = self.tags();
                let known: Vec<&str> = tags.iter().map(|t| t.as_str()).collect();
                let matched: BTreeSet<&str> = self
                    .hosts
                    .values()
                    .filter(|h| h.tags.iter().any(|t| glob.matches(t.as_str())))
                    .map(|h| h.name.as_str())
                    .collect();
                if matched.is_empty() {
                    return Err(self.no_match(pattern, "@", &known));
                }
                matched
            }
            // Not produced by `parse_args`; an exclusion nested in another chooses nothing.
            Selector::Exclude(inner) => {
                return Err(SelectError::DoubleExclusion {
                    arg: format!("!{inner}"),
                });
            }
        };
        Ok(names)
    }

    fn glob(&self, pattern: &str, typed: &str) -> Result<Glob, SelectError> {
        Glob::new(pattern).map_err(|reason| SelectError::BadPattern {
            pattern: typed.to_owned(),
            reason,
        })
    }

    /// `NoMatch` for `pattern` (without `sigil`) against `known`, with a suggestion: the pattern
    /// with its literal beginning corrected to the closest beginning of a known name, if that
    /// then matches (`wbe-*` → `web-*`).
    fn no_match(&self, pattern: &str, sigil: &str, known: &[&str]) -> SelectError {
        let cut = pattern.find(['*', '?', '[']).unwrap_or(pattern.len());
        let (literal, rest) = pattern.split_at(cut);
        let width = literal.chars().count();
        let mut beginnings: Vec<String> = known
            .iter()
            .filter(|n| n.chars().count() >= width)
            .map(|n| n.chars().take(width).collect())
            .collect();
        beginnings.dedup();
        // One literal character is too little to call anything a typo of it.
        let suggestion = (width > 1)
            .then(|| suggest::closest(literal, beginnings.iter().map(String::as_str)))
            .flatten()
            .map(|begin| format!("{begin}{rest}"))
            .filter(|fixed| Glob::new(fixed).is_ok_and(|g| known.iter().any(|n| g.matches(n))))
            .map(|fixed| format!("{sigil}{fixed}"));
        SelectError::NoMatch {
            pattern: format!("{sigil}{pattern}"),
            file: self.file_name(),
            known: known.iter().map(|n| (*n).to_owned()).collect(),
            suggestion,
        }
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

/// Selectors as typed, space-separated.
fn shown(selectors: &[&Selector]) -> String {
    selectors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(" ")
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
    fn patterns_select_by_name_and_tag() {
        check(false, &["*top"], "desktop laptop");
        check(false, &["?erver"], "server");
        check(false, &["[dl]*"], "desktop laptop");
        check(false, &["[!dl]*"], "server");
        check(false, &["@work*"], "desktop laptop");
        check(false, &["@*"], "desktop laptop server");
        check(false, &["*", "laptop"], "desktop laptop server");
    }

    #[test]
    fn exclusions_take_away_in_fleet_order() {
        check(true, &["!server"], "desktop laptop");
        check(false, &["@workstation", "!laptop"], "desktop");
        check(false, &["!laptop", "@workstation"], "desktop");
        check(true, &["!@workstation"], "server");
        check(true, &["!*top"], "server");
        check(true, &["!@mob*", "!server"], "desktop");
        // Excluding a host that was not selected is fine, as long as it exists.
        check(false, &["server", "!laptop"], "server");
    }

    #[test]
    fn exclusions_alone_or_excluding_everything_are_errors() {
        check(
            false,
            &["!server"],
            "only exclusions given (!server): they take hosts away, but no host was selected | \
             say what to exclude from: `hbdeploy apply --all '!HOST'`, or `hbdeploy apply @TAG \
             '!HOST'` (quote `!` for the shell)",
        );
        check(
            false,
            &["@mobile", "!laptop"],
            "`@mobile !laptop` leaves no host: the exclusions take away every selected one | \
             select more hosts, or exclude fewer",
        );
        check(
            false,
            &["!"],
            "`!` on its own excludes nothing | write what to exclude right after the `!`, e.g. \
             `!server`",
        );
        check(
            false,
            &["!!server"],
            "`!!server`: an exclusion of an exclusion means nothing | write one `!`, e.g. `!server`",
        );
    }

    #[test]
    fn patterns_and_exclusions_that_match_nothing_suggest() {
        let hint = "in a pattern `*` matches any characters, `?` one, `[abc]` one of a, b, c, \
                    `[a-z]` one in the range, `[!abc]` any other; quote it for the shell: 'web-*'";
        check(
            false,
            &["sevr*"],
            &format!(
                "no host matches `sevr*` (fleet.toml has desktop, laptop, server); did you mean \
                 `serv*`? | {hint}"
            ),
        );
        check(
            false,
            &["x*"],
            &format!("no host matches `x*` (fleet.toml has desktop, laptop, server) | {hint}"),
        );
        check(
            false,
            &["@wrok*"],
            &format!(
                "no tag matches `@wrok*` (fleet.toml has tags infra, mobile, workstation); did \
                 you mean `@work*`? | {hint}"
            ),
        );
        check(
            true,
            &["!sever"],
            "unknown host `sever` (fleet.toml has desktop, laptop, server); did you mean \
             `server`? | a host's name is the NAME of its [hosts.NAME] table in fleet.toml",
        );
        check(
            true,
            &["!web-*"],
            &format!("no host matches `web-*` (fleet.toml has desktop, laptop, server) | {hint}"),
        );
        check(
            false,
            &["web-[12"],
            &format!("`web-[12` is not a valid pattern: `[` without its `]` | {hint}"),
        );
        check(
            false,
            &["!@[z-a]"],
            &format!("`@[z-a]` is not a valid pattern: a range in `[ ]` runs backwards | {hint}"),
        );
    }

    #[test]
    fn patterns_and_exclusions_display_as_typed() {
        let args = ["web-*".to_owned(), "!@eu-?".to_owned(), "!db".to_owned()];
        let shown: Vec<String> = Selector::parse_args(true, &args)
            .map(|s| s.iter().map(ToString::to_string).collect())
            .unwrap_or_default();
        assert_eq!(shown, ["--all", "web-*", "!@eu-?", "!db"]);
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
