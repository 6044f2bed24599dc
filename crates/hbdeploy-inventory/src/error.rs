//! The errors of loading `fleet.toml`: where in the file, what is wrong, and what to do about it.
//!
//! Every problem inside the file carries a [`Location`] (`path:line:column`, 1-based, columns
//! counted in characters) so that editors and terminals can jump to it, and a hint sentence that
//! the binary prints after the error as `hint: …`.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use hbdeploy_files::FileError;

use crate::name::NameError;

/// A position in `fleet.toml`, shown as `path:line:column`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The file, as the caller named it.
    pub path: PathBuf,
    /// 1-based line number.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
}

impl Location {
    /// The location of byte `offset` in `text`. Offsets past the end, or inside a multi-byte
    /// character, are clamped rather than trusted, so a bad span can never cause a panic.
    pub fn from_offset(path: &Path, text: &str, offset: usize) -> Self {
        let mut offset = offset.min(text.len());
        while !text.is_char_boundary(offset) {
            offset -= 1;
        }
        let before = &text[..offset];
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        Location {
            path: path.to_owned(),
            line: before.matches('\n').count() + 1,
            column: before[line_start..].chars().count() + 1,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.path.display(), self.line, self.column)
    }
}

/// Everything that can go wrong in [`Fleet::load`](crate::Fleet::load) and
/// [`Fleet::parse`](crate::Fleet::parse).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InventoryError {
    /// The file could not be read, or was refused: not a regular file, or too large.
    #[error(transparent)]
    File(#[from] FileError),
    /// The file's own location could not be made absolute, because the current directory is
    /// unavailable; relative paths in the file could not be resolved.
    #[error("cannot resolve {} against the current directory", path.display())]
    CurrentDir {
        /// The file, as the caller named it.
        path: PathBuf,
        /// Why not.
        #[source]
        source: io::Error,
    },
    /// The file was read but its contents are wrong.
    #[error("{0}")]
    Config(Box<ConfigError>),
}

impl InventoryError {
    /// What the user can do about it, when there is more to say than the message.
    fn advice(&self) -> Option<&str> {
        match self {
            InventoryError::File(FileError::NotRegular { .. }) => Some(
                "fleet.toml must be a regular file (or a symlink to one): choose the file with \
                 --fleet PATH or HBDEPLOY_FLEET",
            ),
            InventoryError::File(FileError::TooLarge { .. }) => Some(
                "check that --fleet PATH or HBDEPLOY_FLEET names the fleet's fleet.toml, which \
                 is never that large",
            ),
            InventoryError::File(err) => match err.io_kind() {
                Some(io::ErrorKind::NotFound) => Some(
                    "check the path (a relative one is taken from the current directory), or choose the file with --fleet PATH or HBDEPLOY_FLEET",
                ),
                Some(io::ErrorKind::PermissionDenied) => {
                    Some("make the file readable by this user")
                }
                _ => None,
            },
            InventoryError::CurrentDir { .. } => {
                Some("run hbdeploy from a directory that exists, or give fleet.toml's full path")
            }
            InventoryError::Config(e) => Some(&e.hint),
        }
    }

    /// The position in the file, for problems with the file's contents.
    pub fn location(&self) -> Option<&Location> {
        match self {
            InventoryError::Config(e) => Some(&e.location),
            _ => None,
        }
    }

    /// The problem with the file's contents, if that is what went wrong.
    pub fn problem(&self) -> Option<&Problem> {
        match self {
            InventoryError::Config(e) => Some(&e.problem),
            _ => None,
        }
    }
}

impl hbdeploy_files::Hint for InventoryError {
    /// What the user can do about it, when there is more to say than the message.
    fn hint(&self) -> Option<String> {
        self.advice().map(str::to_owned)
    }
}

/// A problem in the contents of `fleet.toml`, with where it is and what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{location}: {problem}")]
pub struct ConfigError {
    /// Where in the file.
    pub location: Location,
    /// What is wrong.
    pub problem: Problem,
    /// What to do about it: one sentence for the user.
    pub hint: String,
}

/// What is wrong with the contents of `fleet.toml`.
///
/// `table` fields name the table as the user wrote it: `[fleet]`, `[hosts.server]`, or
/// `the top level`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Problem {
    /// Not valid TOML; `message` is the TOML parser's.
    Syntax {
        /// The parser's description.
        message: String,
    },
    /// A table header or key appears twice.
    Duplicate {
        /// The repeated table header (`[hosts.server]`) or key (`port`).
        what: String,
        /// Whether `what` is a table header.
        is_table: bool,
    },
    /// A key the table does not have.
    UnknownKey {
        /// The key as written.
        key: String,
        /// The table it is in.
        table: String,
        /// The keys the table accepts.
        expected: &'static [&'static str],
    },
    /// A value of the wrong TOML type.
    WrongType {
        /// The key.
        key: String,
        /// The table it is in.
        table: String,
        /// What it should be, with its article (`an integer`).
        expected: &'static str,
        /// What it is, with its article (`a string`).
        found: &'static str,
    },
    /// A required key or table is absent.
    MissingKey {
        /// The key.
        key: &'static str,
        /// The table that should have it.
        table: String,
    },
    /// An integer outside its allowed range.
    OutOfRange {
        /// The key.
        key: String,
        /// The table it is in.
        table: String,
        /// The value as written.
        value: String,
        /// The smallest allowed value.
        min: u64,
        /// The largest allowed value, if there is one below the integer type's own limit.
        max: Option<u64>,
    },
    /// A host name or tag that breaks the naming rule.
    InvalidName {
        /// `host name` or `tag`.
        kind: &'static str,
        /// The name as written.
        value: String,
        /// The table it is in.
        table: String,
        /// What is wrong with it.
        reason: NameError,
    },
    /// Some other value that cannot be used, such as an empty address.
    InvalidValue {
        /// The key.
        key: String,
        /// The table it is in.
        table: String,
        /// What is wrong, as the end of a sentence starting with the key (`is empty`).
        reason: String,
    },
    /// `[hosts]` is missing or has no hosts.
    NoHosts,
    /// The file is not UTF-8 text; the location is that of the first byte that is not.
    NotUtf8 {
        /// That byte.
        byte: u8,
    },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Syntax { message } => write!(f, "invalid TOML: {message}"),
            Problem::Duplicate {
                what,
                is_table: true,
            } => {
                write!(f, "table {what} is defined twice")
            }
            Problem::Duplicate {
                what,
                is_table: false,
            } => write!(f, "key `{what}` is set twice"),
            Problem::UnknownKey {
                key,
                table,
                expected,
            } => write!(
                f,
                "unknown key `{key}` {}; expected one of: {}",
                in_table(table),
                expected.join(", ")
            ),
            Problem::WrongType {
                key,
                table,
                expected,
                found,
            } => {
                write!(
                    f,
                    "`{key}` {} must be {expected}, not {found}",
                    in_table(table)
                )
            }
            Problem::MissingKey { key, table } if table == TOP_LEVEL => {
                write!(f, "missing table [{key}]")
            }
            Problem::MissingKey { key, table } => write!(f, "missing key `{key}` in {table}"),
            Problem::OutOfRange {
                key,
                table,
                value,
                min,
                max,
            } => {
                write!(f, "`{key}` {} must be ", in_table(table))?;
                match max {
                    Some(max) => write!(f, "between {min} and {max}, not {value}"),
                    None => write!(f, "at least {min}, not {value}"),
                }
            }
            Problem::InvalidName {
                kind,
                value,
                table,
                reason,
            } => {
                write!(f, "invalid {kind} `{value}` {}: {reason}", in_table(table))
            }
            Problem::InvalidValue { key, table, reason } => {
                write!(f, "`{key}` {} {reason}", in_table(table))
            }
            Problem::NoHosts => f.write_str("the fleet has no hosts"),
            Problem::NotUtf8 { byte } => write!(
                f,
                "invalid UTF-8: byte {byte:#04x} is not part of a valid character"
            ),
        }
    }
}

/// How the root table is named in messages.
pub(crate) const TOP_LEVEL: &str = "the top level";

/// `in [ssh]`, or `at the top level`.
fn in_table(table: &str) -> String {
    if table == TOP_LEVEL {
        format!("at {table}")
    } else {
        format!("in {table}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str, offset: usize, expected: &str) {
        let at = Location::from_offset(Path::new("fleet.toml"), text, offset);
        assert_eq!(at.to_string(), expected, "offset {offset} in {text:?}");
    }

    #[test]
    fn locations_are_one_based() {
        let text = "[fleet]\nflake = \"./x\"\n\nparallel = 0\n";
        check(text, 0, "fleet.toml:1:1");
        check(text, 8, "fleet.toml:2:1");
        check(text, 16, "fleet.toml:2:9");
        check(text, 23, "fleet.toml:4:1");
        check(text, 34, "fleet.toml:4:12");
    }

    #[test]
    fn columns_count_characters() {
        // "é" is two bytes; the `x` after it is the third character on the line.
        check("# é\nkey = \"é\" x", 16, "fleet.toml:2:11");
        check("é x", 3, "fleet.toml:1:3");
    }

    #[test]
    fn bad_offsets_are_clamped() {
        check("ab\ncd", 99, "fleet.toml:2:3");
        check("é", 1, "fleet.toml:1:1");
        check("", 5, "fleet.toml:1:1");
    }

    #[test]
    fn problems_render_as_sentences() {
        let table = "[hosts.server]".to_owned();
        let cases = [
            (
                Problem::MissingKey {
                    key: "fleet",
                    table: TOP_LEVEL.to_owned(),
                },
                "missing table [fleet]",
            ),
            (
                Problem::MissingKey {
                    key: "address",
                    table: table.clone(),
                },
                "missing key `address` in [hosts.server]",
            ),
            (
                Problem::OutOfRange {
                    key: "port".to_owned(),
                    table: table.clone(),
                    value: "0".to_owned(),
                    min: 1,
                    max: Some(65535),
                },
                "`port` in [hosts.server] must be between 1 and 65535, not 0",
            ),
            (
                Problem::UnknownKey {
                    key: "host".to_owned(),
                    table: TOP_LEVEL.to_owned(),
                    expected: &["fleet", "ssh", "hosts"],
                },
                "unknown key `host` at the top level; expected one of: fleet, ssh, hosts",
            ),
        ];
        for (problem, expected) in cases {
            assert_eq!(problem.to_string(), expected);
        }
    }
}
