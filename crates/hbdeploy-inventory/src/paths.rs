//! Paths written in `fleet.toml`, and the flake reference.
//!
//! A path is resolved once, here, so that nothing later depends on the current directory:
//! `~` and `~/…` expand to the home directory, other relative paths are taken relative to the
//! directory holding `fleet.toml`, and `.` components are dropped. `..` is kept, because
//! resolving it without looking at the filesystem would be wrong across symlinks.

use std::fmt;
use std::path::{Path, PathBuf};

/// The flake that defines the hosts' `nixosConfigurations`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlakeRef {
    /// A local directory, written as a path starting with `.`, `/` or `~`; always absolute.
    Path(PathBuf),
    /// Any other flake reference, passed to nix as written: `github:me/nixos`, `path:/x`,
    /// `git+file:///x`, or a registry name such as `nixos`.
    Url(String),
}

impl fmt::Display for FlakeRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FlakeRef::Path(path) => write!(f, "{}", path.display()),
            FlakeRef::Url(url) => f.write_str(url),
        }
    }
}

/// Why a path from `fleet.toml` cannot be resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PathError {
    /// The value is empty.
    Empty,
    /// The value starts with `~` but no home directory is known.
    NoHome,
    /// The value starts with `~user`, which is not expanded.
    OtherUser,
}

impl PathError {
    /// The end of a sentence starting with the key.
    pub(crate) fn reason(self) -> &'static str {
        match self {
            PathError::Empty => "is empty",
            PathError::NoHome => "starts with `~`, but $HOME is not set to an absolute path",
            PathError::OtherUser => "starts with `~user`, which hbdeploy does not expand",
        }
    }

    /// What to do about it.
    pub(crate) fn advice(self) -> &'static str {
        match self {
            PathError::Empty => "remove the key to use the default, or give a path",
            PathError::NoHome => "set $HOME, or write the path in full",
            PathError::OtherUser => "write the path in full, or use `~/` for your own home",
        }
    }
}

/// Resolves paths written in `fleet.toml`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Resolver<'a> {
    /// The absolute directory holding `fleet.toml`.
    dir: &'a Path,
    /// The home directory, if known and absolute.
    home: Option<&'a Path>,
}

impl<'a> Resolver<'a> {
    /// A resolver for a file in `dir` (absolute); a relative or empty `home` counts as unknown.
    pub(crate) fn new(dir: &'a Path, home: Option<&'a Path>) -> Self {
        Resolver {
            dir,
            home: home.filter(|h| h.is_absolute()),
        }
    }

    /// The absolute path that `value` names.
    pub(crate) fn path(&self, value: &str) -> Result<PathBuf, PathError> {
        let joined = if value.is_empty() {
            return Err(PathError::Empty);
        } else if value == "~" {
            self.home.ok_or(PathError::NoHome)?.to_owned()
        } else if let Some(rest) = value.strip_prefix("~/") {
            self.home.ok_or(PathError::NoHome)?.join(rest)
        } else if value.starts_with('~') {
            return Err(PathError::OtherUser);
        } else {
            // `join` keeps `value` as it is when it is already absolute.
            self.dir.join(value)
        };
        // Rebuilding from components drops `.` and doubled or trailing separators.
        Ok(joined.components().collect())
    }

    /// The flake reference that `value` names: a path if it looks like one, else a URL.
    pub(crate) fn flake(&self, value: &str) -> Result<FlakeRef, PathError> {
        if value.starts_with(['.', '/', '~']) {
            self.path(value).map(FlakeRef::Path)
        } else if value.is_empty() {
            Err(PathError::Empty)
        } else {
            Ok(FlakeRef::Url(value.to_owned()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIR: &str = "/etc/fleet";
    const HOME: &str = "/home/me";

    fn check(home: Option<&str>, value: &str, expected: Result<&str, PathError>) {
        let resolver = Resolver::new(Path::new(DIR), home.map(Path::new));
        let got = resolver.path(value);
        assert_eq!(
            got,
            expected.map(PathBuf::from),
            "{value:?} with home {home:?}"
        );
    }

    #[test]
    fn relative_paths_are_relative_to_the_file() {
        check(Some(HOME), "keys/id", Ok("/etc/fleet/keys/id"));
        check(Some(HOME), "./nixos", Ok("/etc/fleet/nixos"));
        check(Some(HOME), ".", Ok("/etc/fleet"));
        check(Some(HOME), "../nixos/", Ok("/etc/fleet/../nixos"));
        check(Some(HOME), "a//b/./c", Ok("/etc/fleet/a/b/c"));
    }

    #[test]
    fn absolute_paths_stay() {
        check(Some(HOME), "/srv/nixos", Ok("/srv/nixos"));
        check(None, "/srv/./nixos", Ok("/srv/nixos"));
    }

    #[test]
    fn tilde_is_home() {
        check(Some(HOME), "~", Ok("/home/me"));
        check(
            Some(HOME),
            "~/.ssh/known_hosts",
            Ok("/home/me/.ssh/known_hosts"),
        );
        check(None, "~/.ssh/id", Err(PathError::NoHome));
        check(Some("relative/home"), "~/.ssh/id", Err(PathError::NoHome));
        check(Some(HOME), "~root/.ssh/id", Err(PathError::OtherUser));
        check(Some(HOME), "", Err(PathError::Empty));
    }

    fn check_flake(value: &str, expected: Result<FlakeRef, PathError>) {
        let resolver = Resolver::new(Path::new(DIR), Some(Path::new(HOME)));
        assert_eq!(resolver.flake(value), expected, "{value:?}");
    }

    #[test]
    fn flakes_are_paths_or_urls() {
        let path = |p: &str| Ok(FlakeRef::Path(PathBuf::from(p)));
        let url = |u: &str| Ok(FlakeRef::Url(u.to_owned()));
        check_flake("./nixos", path("/etc/fleet/nixos"));
        check_flake(".", path("/etc/fleet"));
        check_flake("/srv/nixos", path("/srv/nixos"));
        check_flake("~/nixos", path("/home/me/nixos"));
        check_flake("github:me/nixos", url("github:me/nixos"));
        check_flake("path:/x", url("path:/x"));
        check_flake("git+file:///x", url("git+file:///x"));
        check_flake("nixos", url("nixos"));
        check_flake("", Err(PathError::Empty));
    }

    #[test]
    fn flakes_display_as_nix_takes_them() {
        assert_eq!(
            FlakeRef::Path(PathBuf::from("/srv/nixos")).to_string(),
            "/srv/nixos"
        );
        assert_eq!(
            FlakeRef::Url("github:me/nixos".to_owned()).to_string(),
            "github:me/nixos"
        );
    }
}
