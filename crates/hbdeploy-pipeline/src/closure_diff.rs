//! What changes between two system closures, in the spirit of `nvd` and
//! `nix store diff-closures`: packages added, removed, and whose versions changed, read from the
//! names of the store paths alone, plus the closures' sizes.
//!
//! A store path's name is split like nvd does it: the version starts after the first `-` that
//! is followed by a digit (`gnome-shell-46.2` is `gnome-shell` at `46.2`); a name without such a
//! `-` has no version. A trailing output name (`-man`, `-dev`, `-bin`, …) is dropped from the
//! version, so a package's outputs count as one package. Paths are grouped by package name; a
//! package whose set of versions differs between the two closures has changed.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

use hbdeploy_nix::StorePath;

/// Output names dropped from the end of a version, so `foo-1.0-man` is `foo` at `1.0`.
const OUTPUTS: [&str; 12] = [
    "bin", "dev", "lib", "man", "doc", "info", "debug", "static", "out", "data", "lib32", "devdoc",
];

/// A package name and the versions of it in one closure (sorted; `""` for no version).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Package {
    /// The name without its version.
    pub name: String,
    /// Its versions in the closure.
    pub versions: Vec<String>,
}

/// A package present in both closures with different versions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionChange {
    /// The name without its version.
    pub name: String,
    /// Its versions in the old closure.
    pub old: Vec<String>,
    /// Its versions in the new closure.
    pub new: Vec<String>,
}

impl VersionChange {
    /// `upgraded` when the newest new version is newer than the newest old one, `downgraded`
    /// when it is older, `changed` otherwise (same newest version, or not comparable).
    pub fn kind(&self) -> &'static str {
        let newest = |versions: &[String]| {
            versions
                .iter()
                .max_by(|a, b| compare_versions(a, b))
                .cloned()
                .unwrap_or_default()
        };
        match compare_versions(&newest(&self.new), &newest(&self.old)) {
            Ordering::Greater => "upgraded",
            Ordering::Less => "downgraded",
            Ordering::Equal => "changed",
        }
    }
}

/// Compares versions like nix's `builtins.compareVersions`: components split at `.` and `-`
/// and between digits and letters; numbers compare as numbers, a number is newer than a word,
/// `pre` is older than anything else, and a missing component is older than any.
pub fn compare_versions(a: &str, b: &str) -> Ordering {
    let (a, b) = (components(a), components(b));
    for i in 0..a.len().max(b.len()) {
        let order = compare_component(a.get(i).map(String::as_str), b.get(i).map(String::as_str));
        if order != Ordering::Equal {
            return order;
        }
    }
    Ordering::Equal
}

fn components(version: &str) -> Vec<String> {
    let mut parts: Vec<String> = Vec::new();
    let mut current = String::new();
    for c in version.chars() {
        let boundary = c == '.' || c == '-';
        let kind_changes = current
            .chars()
            .last()
            .is_some_and(|last| last.is_ascii_digit() != c.is_ascii_digit());
        if (boundary || kind_changes) && !current.is_empty() {
            parts.push(std::mem::take(&mut current));
        }
        if !boundary {
            current.push(c);
        }
    }
    if !current.is_empty() {
        parts.push(current);
    }
    parts
}

fn compare_component(a: Option<&str>, b: Option<&str>) -> Ordering {
    match (a, b) {
        (None, None) => Ordering::Equal,
        (None, Some(b)) => older_if_missing(b).reverse(),
        (Some(a), None) => older_if_missing(a),
        (Some(a), Some(b)) => match (a.parse::<u64>(), b.parse::<u64>()) {
            (Ok(x), Ok(y)) => x.cmp(&y),
            (Ok(_), Err(_)) => Ordering::Greater,
            (Err(_), Ok(_)) => Ordering::Less,
            (Err(_), Err(_)) if a == "pre" && b != "pre" => Ordering::Less,
            (Err(_), Err(_)) if b == "pre" && a != "pre" => Ordering::Greater,
            (Err(_), Err(_)) => a.cmp(b),
        },
    }
}

/// How a present component compares with a missing one: `pre` is older, anything else newer.
fn older_if_missing(present: &str) -> Ordering {
    if present == "pre" {
        Ordering::Less
    } else {
        Ordering::Greater
    }
}

/// The difference between an old closure and a new one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClosureDiff {
    /// Packages only in the new closure.
    pub added: Vec<Package>,
    /// Packages only in the old closure.
    pub removed: Vec<Package>,
    /// Packages in both, with different versions.
    pub changed: Vec<VersionChange>,
    /// Sum of the old closure's NAR sizes, in bytes.
    pub old_size: u64,
    /// Sum of the new closure's NAR sizes, in bytes.
    pub new_size: u64,
    /// Paths in the old closure.
    pub old_paths: usize,
    /// Paths in the new closure.
    pub new_paths: usize,
}

/// Splits a store path name into package name and version, as nvd does.
pub fn split_name(name: &str) -> (&str, &str) {
    let bytes = name.as_bytes();
    let at = (0..bytes.len().saturating_sub(1))
        .find(|&i| bytes[i] == b'-' && bytes[i + 1].is_ascii_digit());
    let Some(at) = at else {
        return (name, "");
    };
    let (pname, version) = (&name[..at], &name[at + 1..]);
    let version = OUTPUTS
        .iter()
        .find_map(|out| {
            version
                .strip_suffix(out)
                .and_then(|v| v.strip_suffix('-'))
                .filter(|v| !v.is_empty())
        })
        .unwrap_or(version);
    (pname, version)
}

/// Package name → its versions, for a closure.
fn packages<'a>(paths: impl Iterator<Item = &'a StorePath>) -> BTreeMap<String, BTreeSet<String>> {
    let mut map: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for path in paths {
        let (name, version) = split_name(path.name());
        map.entry(name.to_owned())
            .or_default()
            .insert(version.to_owned());
    }
    map
}

/// Compares the closure `old` (what the host runs) with `new` (what it would run), each path
/// with its size in bytes.
pub fn diff(old: &[(StorePath, u64)], new: &[(StorePath, u64)]) -> ClosureDiff {
    let before = packages(old.iter().map(|(p, _)| p));
    let after = packages(new.iter().map(|(p, _)| p));
    let list = |set: &BTreeSet<String>| set.iter().cloned().collect::<Vec<_>>();
    let mut result = ClosureDiff {
        old_size: old.iter().map(|(_, s)| s).sum(),
        new_size: new.iter().map(|(_, s)| s).sum(),
        old_paths: old.len(),
        new_paths: new.len(),
        ..ClosureDiff::default()
    };
    for (name, versions) in &after {
        match before.get(name) {
            None => result.added.push(Package {
                name: name.clone(),
                versions: list(versions),
            }),
            Some(was) if was != versions => result.changed.push(VersionChange {
                name: name.clone(),
                old: list(was),
                new: list(versions),
            }),
            Some(_) => {}
        }
    }
    for (name, versions) in &before {
        if !after.contains_key(name) {
            result.removed.push(Package {
                name: name.clone(),
                versions: list(versions),
            });
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(name: &str) -> StorePath {
        let hash: String = std::iter::repeat_n('a', 32).collect();
        StorePath::new(format!("/nix/store/{hash}-{name}")).expect("valid")
    }

    fn closure(items: &[(&str, u64)]) -> Vec<(StorePath, u64)> {
        items.iter().map(|(n, s)| (path(n), *s)).collect()
    }

    #[test]
    fn names_split_at_the_first_dash_before_a_digit() {
        let check = |name: &str, expected: (&str, &str)| {
            assert_eq!(split_name(name), expected, "{name}");
        };
        check("hello-2.12.1", ("hello", "2.12.1"));
        check("gnome-shell-46.2", ("gnome-shell", "46.2"));
        check(
            "nixos-system-server-24.11.20241201.abcdef",
            ("nixos-system-server", "24.11.20241201.abcdef"),
        );
        check(
            "nixos-system-server-toy-2",
            ("nixos-system-server-toy", "2"),
        );
        check(
            "python3.12-requests-2.32.3",
            ("python3.12-requests", "2.32.3"),
        );
        check("openssl-3.0.14-bin", ("openssl", "3.0.14"));
        check("util-linux-2.39.4-man", ("util-linux", "2.39.4"));
        check("etc", ("etc", ""));
        check("unit-dbus.service", ("unit-dbus.service", ""));
        check("x-", ("x-", ""));
        check("1password-8", ("1password", "8"));
    }

    #[test]
    fn added_removed_and_changed_packages_and_sizes() {
        let old = closure(&[
            ("glibc-2.39-52", 30),
            ("hello-2.12", 1),
            ("openssl-3.0.13", 5),
            ("openssl-3.0.13-bin", 2),
            ("etc", 1),
            ("old-tool-1.0", 4),
        ]);
        let new = closure(&[
            ("glibc-2.39-52", 30),
            ("hello-2.12", 1),
            ("openssl-3.0.14", 5),
            ("openssl-3.0.14-bin", 2),
            ("etc", 1),
            ("new-tool-0.3", 7),
        ]);
        let d = diff(&old, &new);
        assert_eq!(
            d.changed,
            [VersionChange {
                name: "openssl".into(),
                old: vec!["3.0.13".into()],
                new: vec!["3.0.14".into()],
            }]
        );
        assert_eq!(d.added.len(), 1);
        assert_eq!(d.added[0].name, "new-tool");
        assert_eq!(d.added[0].versions, ["0.3"]);
        assert_eq!(d.removed.len(), 1);
        assert_eq!(d.removed[0].name, "old-tool");
        assert_eq!((d.old_size, d.new_size), (43, 46));
        assert_eq!((d.old_paths, d.new_paths), (6, 6));
    }

    #[test]
    fn same_versions_rebuilt_are_no_change_and_several_versions_are_kept() {
        let old = closure(&[
            ("zlib-1.3", 1),
            ("python3-3.11.9", 1),
            ("python3-3.12.4", 1),
        ]);
        let new = closure(&[("zlib-1.3", 2), ("python3-3.12.4", 1)]);
        let d = diff(&old, &new);
        assert!(d.added.is_empty() && d.removed.is_empty());
        assert_eq!(d.changed[0].old, ["3.11.9", "3.12.4"]);
        assert_eq!(d.changed[0].new, ["3.12.4"]);
        assert_eq!(diff(&new, &new).changed, []);
    }

    #[test]
    fn versions_compare_like_nix() {
        let check = |a: &str, b: &str, expected: Ordering| {
            assert_eq!(compare_versions(a, b), expected, "{a} vs {b}");
        };
        check("1.0", "1.0", Ordering::Equal);
        check("1.10", "1.9", Ordering::Greater);
        check("2.39-52", "2.39-51", Ordering::Greater);
        check("1.0", "1.0.1", Ordering::Less);
        check("1.0pre", "1.0", Ordering::Less);
        check("1.0a", "1.0", Ordering::Greater);
        check(
            "24.11.20241201.abc",
            "24.05.20240601.def",
            Ordering::Greater,
        );
        let change = |old: &str, new: &str| VersionChange {
            name: "p".into(),
            old: vec![old.into()],
            new: vec![new.into()],
        };
        assert_eq!(change("1", "2").kind(), "upgraded");
        assert_eq!(change("2", "1").kind(), "downgraded");
        assert_eq!(change("1", "1.0").kind(), "upgraded");
    }

    #[test]
    fn an_empty_old_closure_adds_everything() {
        let new = closure(&[("a-1", 1), ("b", 2)]);
        let d = diff(&[], &new);
        assert_eq!(d.added.len(), 2);
        assert_eq!(d.old_size, 0);
        assert_eq!(d.new_size, 3);
    }
}
