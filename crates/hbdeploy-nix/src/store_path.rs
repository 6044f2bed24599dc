//! `StorePath`: an absolute path in the nix store, checked once when it enters the program.

use serde::Deserialize;

/// The store every supported nix uses.
pub const STORE_DIR: &str = "/nix/store";

/// An absolute nix store path, `/nix/store/<32-char hash>-<name>`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(try_from = "String")]
pub struct StorePath(String);

/// A string that is not a store path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a nix store path (/nix/store/<hash>-<name>)")]
pub struct StorePathError(pub String);

impl StorePath {
    /// Checks `text` and wraps it.
    pub fn new(text: impl Into<String>) -> Result<StorePath, StorePathError> {
        let text = text.into();
        let Some(base) = text
            .strip_prefix(STORE_DIR)
            .and_then(|rest| rest.strip_prefix('/'))
        else {
            return Err(StorePathError(text));
        };
        let (hash, name) = base.split_at_checked(32).unwrap_or(("", ""));
        let hash_ok = hash.len() == 32 && hash.bytes().all(|b| b.is_ascii_alphanumeric());
        let name_ok = name.len() > 1
            && name.starts_with('-')
            && !name.contains('/')
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+-._?=".contains(&b));
        if hash_ok && name_ok {
            Ok(StorePath(text))
        } else {
            Err(StorePathError(text))
        }
    }

    /// The full path.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The part after the hash, e.g. `nixos-system-laptop-24.11`.
    pub fn name(&self) -> &str {
        self.0.get(STORE_DIR.len() + 34..).unwrap_or("")
    }

    /// The path with its hash shortened, for display: `/nix/store/abcdefgh…-name`.
    pub fn short(&self) -> String {
        let hash = self
            .0
            .get(STORE_DIR.len() + 1..STORE_DIR.len() + 9)
            .unwrap_or("");
        format!("{STORE_DIR}/{hash}…-{}", self.name())
    }
}

impl TryFrom<String> for StorePath {
    type Error = StorePathError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        StorePath::new(value)
    }
}

impl std::fmt::Display for StorePath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "/nix/store/1j1d0hfqa121v0sk9380s5hrd4xm6g1y-nixos-system-h1";

    #[test]
    fn accepts_store_paths_and_splits_the_name() {
        let path = StorePath::new(GOOD).expect("valid");
        assert_eq!(path.name(), "nixos-system-h1");
        assert_eq!(path.short(), "/nix/store/1j1d0hfq…-nixos-system-h1");
        let drv = "/nix/store/z1iny4w11sg576s5cqnahyzhnci96kb3-nixos-system-h1.drv";
        assert!(StorePath::new(drv).is_ok());
    }

    #[test]
    fn rejects_everything_else() {
        for bad in [
            "",
            "/nix/store",
            "/nix/store/",
            "/nix/store/short-name",
            "/nix/store/1j1d0hfqa121v0sk9380s5hrd4xm6g1y",
            "/nix/store/1j1d0hfqa121v0sk9380s5hrd4xm6g1y-",
            "/nix/store/1j1d0hfqa121v0sk9380s5hrd4xm6g1y-a/bin",
            "/tmp/1j1d0hfqa121v0sk9380s5hrd4xm6g1y-x",
            "/nix/store/1j1d0hfqa121v0sk9380s5hrd4xm6g1y-a b",
            "/nix/store/1j1d0hfqa121v0sk9380s5hrd4xm6g1y-a;rm",
            "/nix/store/éj1d0hfqa121v0sk9380s5hrd4xm6g1y-x",
        ] {
            assert!(StorePath::new(bad).is_err(), "{bad:?} accepted");
        }
    }
}
