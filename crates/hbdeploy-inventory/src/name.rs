//! Validated identities: [`HostName`] and [`Tag`].
//!
//! Both follow one rule, that of a DNS label which is also a plain Nix attribute name: 1 to 63
//! characters, ASCII letters, digits, `-` and `_`, starting with a letter or digit. Holding one of
//! these types is proof that the rule was checked, so later stages (ssh, nix, the UI) never see a
//! host name with a space, a dot or a shell metacharacter in it.

use std::borrow::Borrow;
use std::fmt;
use std::str::FromStr;

/// The longest name allowed, as for a DNS label.
pub const MAX_NAME_LEN: usize = 63;

/// Why a string is not a valid [`HostName`] or [`Tag`].
///
/// The messages describe only what is wrong; the caller names the value and says whether it is a
/// host name or a tag.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// The string is empty.
    #[error("it is empty")]
    Empty,
    /// The string is longer than [`MAX_NAME_LEN`] characters.
    #[error("it is {len} characters long; at most 63 are allowed")]
    TooLong {
        /// Its length in characters.
        len: usize,
    },
    /// The first character is `-` or `_`.
    #[error("it starts with `{first}`; the first character must be a letter or a digit")]
    BadStart {
        /// The offending first character.
        first: char,
    },
    /// A character other than an ASCII letter, digit, `-` or `_`.
    #[error("it contains `{found}`; only ASCII letters, digits, `-` and `_` are allowed")]
    BadChar {
        /// The first offending character.
        found: char,
    },
}

/// No advice of its own: the caller says which value it was and what to write instead.
impl hbdeploy_files::Hint for NameError {}

/// Checks the shared rule for host names and tags.
fn validate(s: &str) -> Result<(), NameError> {
    let mut chars = s.chars();
    let first = chars.next().ok_or(NameError::Empty)?;
    let len = s.chars().count();
    if len > MAX_NAME_LEN {
        return Err(NameError::TooLong { len });
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    if !allowed(first) {
        return Err(NameError::BadChar { found: first });
    }
    if !first.is_ascii_alphanumeric() {
        return Err(NameError::BadStart { first });
    }
    match chars.find(|&c| !allowed(c)) {
        Some(found) => Err(NameError::BadChar { found }),
        None => Ok(()),
    }
}

/// Defines a validated string newtype with the traits both names share.
macro_rules! name_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(String);

        impl $name {
            /// Checks `s` against the naming rule and wraps it.
            pub fn new(s: impl Into<String>) -> Result<Self, NameError> {
                let s = s.into();
                validate(&s)?;
                Ok(Self(s))
            }

            /// The name as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl FromStr for $name {
            type Err = NameError;

            fn from_str(s: &str) -> Result<Self, NameError> {
                Self::new(s)
            }
        }

        impl TryFrom<String> for $name {
            type Error = NameError;

            fn try_from(s: String) -> Result<Self, NameError> {
                Self::new(s)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        // Sound because the derived `Eq`, `Ord` and `Hash` are those of the inner `String`,
        // which agree with `str`'s; this lets maps keyed by names be searched with a `&str`.
        impl Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }
    };
}

name_type! {
    /// The name of a host: the `NAME` in `[hosts.NAME]`, and what users type to select it.
    HostName
}

name_type! {
    /// A tag grouping hosts, selected on the command line as `@TAG`.
    Tag
}

#[cfg(test)]
#[allow(clippy::expect_used)]
mod tests {
    use super::*;

    fn check(input: &str, expected: Result<(), NameError>) {
        let host = HostName::new(input).map(|n| assert_eq!(n.as_str(), input));
        let tag = Tag::new(input).map(|t| assert_eq!(t.to_string(), input));
        assert_eq!(host, expected, "host name {input:?}");
        assert_eq!(tag, expected, "tag {input:?}");
    }

    #[test]
    fn valid_names() {
        for name in [
            "a",
            "server",
            "web-1",
            "db_2",
            "0day",
            "A-b_C",
            &"x".repeat(63),
        ] {
            check(name, Ok(()));
        }
    }

    #[test]
    fn invalid_names() {
        use NameError::*;
        check("", Err(Empty));
        check(&"x".repeat(64), Err(TooLong { len: 64 }));
        check("-web", Err(BadStart { first: '-' }));
        check("_web", Err(BadStart { first: '_' }));
        check("web.example.org", Err(BadChar { found: '.' }));
        check("my host", Err(BadChar { found: ' ' }));
        check("@infra", Err(BadChar { found: '@' }));
        check("héllo", Err(BadChar { found: 'é' }));
        check("ü", Err(BadChar { found: 'ü' }));
    }

    #[test]
    fn length_counts_characters_not_bytes() {
        // 32 two-byte characters: 64 bytes but 32 characters, so the length check passes and the
        // character check is the one that reports.
        let s = "é".repeat(32);
        check(&s, Err(NameError::BadChar { found: 'é' }));
    }

    #[test]
    fn messages_read_as_sentences() {
        assert_eq!(
            NameError::BadChar { found: '.' }.to_string(),
            "it contains `.`; only ASCII letters, digits, `-` and `_` are allowed"
        );
        assert_eq!(
            NameError::TooLong { len: 70 }.to_string(),
            "it is 70 characters long; at most 63 are allowed"
        );
    }

    #[test]
    fn names_order_and_borrow_as_str() {
        use std::collections::BTreeMap;
        let map: BTreeMap<HostName, usize> = ["server", "desktop", "laptop"]
            .into_iter()
            .enumerate()
            .map(|(i, n)| (n.parse().expect("valid name"), i))
            .collect();
        let names: Vec<&str> = map.keys().map(HostName::as_str).collect();
        assert_eq!(names, ["desktop", "laptop", "server"]);
        assert_eq!(map.get("laptop"), Some(&2));
    }
}
