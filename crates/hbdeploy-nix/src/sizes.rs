//! The closure of a store path with the NAR size of every path in it, as two `nix-store`
//! queries (the closure, [`Nix::closure`], then `--size` of those paths). `nix-store` is used rather than
//! `nix path-info --json`, whose output changed shape between nix versions.

use crate::command;
use crate::{Nix, NixError, StorePath};

/// Each path of a closure with its NAR size in bytes.
pub type SizedClosure = Vec<(StorePath, u64)>;

/// Pairs the lines of `nix-store --query --requisites` with those of `nix-store --query --size`
/// of the same paths, in the same order. `None` when the two lists do not match up.
pub fn pair_sizes(paths: &str, sizes: &str) -> Option<SizedClosure> {
    let paths: Vec<&str> = paths.lines().filter(|l| !l.is_empty()).collect();
    let sizes: Vec<&str> = sizes.lines().filter(|l| !l.is_empty()).collect();
    if paths.len() != sizes.len() {
        return None;
    }
    paths
        .iter()
        .zip(sizes)
        .map(|(path, size)| Some((StorePath::new(*path).ok()?, size.trim().parse().ok()?)))
        .collect()
}

impl Nix {
    /// Every path in the closure of `path` (in the local store) with its size.
    pub async fn closure_sizes(&self, path: &StorePath) -> Result<SizedClosure, NixError> {
        let paths = self.closure(path).await?;
        let shown = format!("nix-store --query --size (the closure of {path})");
        let mut args = vec!["--query".to_owned(), "--size".to_owned()];
        args.extend(paths.iter().map(|p| p.to_string()));
        let output = command::run(command::cmd(&self.nix_store, args), &shown, &mut |_| {}).await?;
        if !output.success {
            return Err(NixError::failed(&shown, &output));
        }
        let sizes: Vec<&str> = output.stdout.lines().collect();
        if sizes.len() != paths.len() {
            return Err(NixError::Unexpected {
                command: shown,
                detail: format!("{} sizes for {} paths", sizes.len(), paths.len()),
            });
        }
        paths
            .into_iter()
            .zip(sizes)
            .map(|(p, s)| {
                let size = s.trim().parse().map_err(|_| NixError::Unexpected {
                    command: shown.clone(),
                    detail: format!("{s:?} is not a size"),
                })?;
                Ok((p, size))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "/nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-hello-2.12";
    const B: &str = "/nix/store/bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-glibc-2.39";

    #[test]
    fn pairs_paths_with_sizes_in_order() {
        let pairs = pair_sizes(&format!("{A}\n{B}\n"), "100\n2000\n").expect("pairs");
        assert_eq!(pairs.len(), 2);
        assert_eq!(pairs[0].0.as_str(), A);
        assert_eq!(pairs[1].1, 2000);
    }

    #[test]
    fn mismatched_or_garbled_lists_are_refused() {
        assert!(pair_sizes(&format!("{A}\n{B}\n"), "100\n").is_none());
        assert!(pair_sizes(&format!("{A}\n"), "lots\n").is_none());
        assert!(pair_sizes("not-a-path\n", "1\n").is_none());
        assert_eq!(pair_sizes("", ""), Some(Vec::new()));
    }
}
