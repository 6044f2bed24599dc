//! Systems built elsewhere (`apply --systems`): which of them the local store lacks, and
//! fetching closures into it from another store (`nix copy --from URL`), such as the binary
//! cache CI pushed to.

use crate::command::{self, OutputSink};
use crate::{FEATURES, Nix, NixError, StorePath};

/// `nix copy --from` arguments: the closures of `paths` from the store at `from` into the local
/// store. `--no-check-sigs`: the store was named on the command line by the user, like the
/// paths, and is trusted as they are (a nix that does not trust the user ignores it, and then
/// the paths need signatures it trusts).
fn fetch_args(from: &str, paths: &[StorePath]) -> Vec<String> {
    let mut args: Vec<String> = FEATURES.iter().map(|s| (*s).to_owned()).collect();
    args.extend(["copy", "--no-check-sigs", "--from", from].map(String::from));
    args.extend(paths.iter().map(ToString::to_string));
    args
}

impl Nix {
    /// Copies the closures of `paths` from the store at `from` into the local store.
    pub async fn fetch(
        &self,
        from: &str,
        paths: &[StorePath],
        on_line: OutputSink<'_>,
    ) -> Result<(), NixError> {
        let shown = match paths {
            [one] => format!("nix copy --from {from} {one}"),
            _ => format!("nix copy --from {from} ({} paths)", paths.len()),
        };
        let cmd = command::cmd(&self.nix, fetch_args(from, paths));
        command::run_ok(cmd, &shown, on_line).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fetch_copies_from_the_given_store_into_the_local_one() {
        let path = StorePath::new("/nix/store/1j1d0hfqa121v0sk9380s5hrd4xm6g1y-nixos-system-h1")
            .expect("valid");
        assert_eq!(
            fetch_args("file:///tmp/cache", std::slice::from_ref(&path)),
            [
                "--extra-experimental-features",
                "nix-command flakes",
                "copy",
                "--no-check-sigs",
                "--from",
                "file:///tmp/cache",
                path.as_str(),
            ]
        );
    }
}
