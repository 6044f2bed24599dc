//! Building every selected host's system with one `nix build --keep-going`, then telling per host
//! whether its system was built and, if not, which of nix's errors concern it.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::command::{self, OutputSink};
use crate::eval::error_lines;
use crate::{FEATURES, Nix, NixError, NixVersion, StorePath, Toplevel};

/// Per derivation: built, or the lines of nix's error that concern it.
pub type BuildResults = BTreeMap<StorePath, Result<(), Vec<String>>>;

/// One entry of `nix build --json` (nix sorts them by drvPath, not in argument order).
#[derive(Debug, Deserialize)]
struct Built {
    #[serde(rename = "drvPath")]
    drv_path: StorePath,
    outputs: BTreeMap<String, StorePath>,
}

/// How a derivation's output is named on the command line: nix 2.8 builds a bare `.drv` path;
/// from 2.9 on a bare `.drv` means the file itself and the output is selected with `^out`.
fn installable(drv: &StorePath, version: NixVersion) -> String {
    if version < (NixVersion { major: 2, minor: 9 }) {
        drv.to_string()
    } else {
        format!("{drv}^out")
    }
}

fn build_args(toplevels: &[Toplevel], version: NixVersion, builders: Option<&str>) -> Vec<String> {
    let mut args: Vec<String> = FEATURES.iter().map(|s| (*s).to_owned()).collect();
    args.extend(["build", "--json", "--no-link", "--keep-going"].map(String::from));
    if let Some(builders) = builders {
        args.extend(["--builders".to_owned(), builders.to_owned()]);
    }
    args.extend(toplevels.iter().map(|t| installable(&t.drv_path, version)));
    args
}

/// Splits nix's stderr into its `error:` blocks (the line and its indented continuation).
fn error_blocks(stderr: &str) -> Vec<Vec<String>> {
    let mut blocks: Vec<Vec<String>> = Vec::new();
    for line in stderr.lines() {
        if line.starts_with("error:") {
            blocks.push(vec![line.to_owned()]);
        } else if line.starts_with(char::is_whitespace)
            && let Some(block) = blocks.last_mut()
        {
            block.push(line.to_owned());
        }
    }
    blocks
}

/// The error lines that concern `drv`: blocks that name it, plus blocks that name no toplevel
/// at all (a failed dependency is named by its own derivation).
fn attribute(stderr: &str, drv: &StorePath, all: &[Toplevel]) -> Vec<String> {
    let blocks = error_blocks(stderr);
    let names =
        |block: &[String], path: &StorePath| block.iter().any(|l| l.contains(path.as_str()));
    let mut lines: Vec<String> = Vec::new();
    for block in &blocks {
        let own = names(block, drv);
        let orphan = !all.iter().any(|t| names(block, &t.drv_path));
        if own || orphan {
            lines.extend(block.iter().cloned());
        }
    }
    if lines.is_empty() {
        error_lines(stderr)
    } else {
        lines
    }
}

impl Nix {
    /// Builds all `toplevels` in one `nix build`. A failed host does not stop the others
    /// (`--keep-going`); its entry holds nix's error. `builders` is passed as `--builders`.
    pub async fn build(
        &self,
        toplevels: &[Toplevel],
        builders: Option<&str>,
        on_line: OutputSink<'_>,
    ) -> Result<BuildResults, NixError> {
        let shown = "nix build";
        let args = build_args(toplevels, self.version().await?, builders);
        let output = command::run(command::cmd(&self.nix, &args), shown, on_line).await?;
        if output.success {
            let built: Vec<Built> =
                serde_json::from_str(&output.stdout).map_err(|err| NixError::Unexpected {
                    command: shown.to_owned(),
                    detail: err.to_string(),
                })?;
            return Ok(toplevels
                .iter()
                .map(|t| {
                    let out = built
                        .iter()
                        .find(|b| b.drv_path == t.drv_path)
                        .and_then(|b| b.outputs.get("out"));
                    let result = match out {
                        Some(out) if *out == t.out_path => Ok(()),
                        Some(out) => Err(vec![format!(
                            "nix built {out}, but evaluation promised {}",
                            t.out_path
                        )]),
                        None => Err(vec![format!("nix build did not report {}", t.drv_path)]),
                    };
                    (t.drv_path.clone(), result)
                })
                .collect());
        }
        let outs: Vec<StorePath> = toplevels.iter().map(|t| t.out_path.clone()).collect();
        let invalid = self.invalid_paths(&outs).await?;
        Ok(toplevels
            .iter()
            .map(|t| {
                let result = if invalid.contains(&t.out_path) {
                    Err(attribute(&output.stderr, &t.drv_path, toplevels))
                } else {
                    Ok(())
                };
                (t.drv_path.clone(), result)
            })
            .collect())
    }

    /// The paths among `paths` that are not valid in the local store.
    pub async fn invalid_paths(&self, paths: &[StorePath]) -> Result<Vec<StorePath>, NixError> {
        if paths.is_empty() {
            return Ok(Vec::new());
        }
        let shown = "nix-store --check-validity --print-invalid";
        let mut args = vec!["--check-validity", "--print-invalid"];
        args.extend(paths.iter().map(StorePath::as_str));
        let output = command::run(command::cmd(&self.nix_store, &args), shown, &mut |_| {}).await?;
        if !output.success {
            return Err(NixError::failed(shown, &output));
        }
        Ok(paths
            .iter()
            .filter(|p| output.stdout.lines().any(|l| l == p.as_str()))
            .cloned()
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sp(hash_char: char, name: &str) -> StorePath {
        let hash: String = std::iter::repeat_n(hash_char, 32).collect();
        StorePath::new(format!("/nix/store/{hash}-{name}")).expect("valid test path")
    }

    fn toplevel(c: char, host: &str) -> Toplevel {
        Toplevel {
            drv_path: sp(c, &format!("nixos-system-{host}.drv")),
            out_path: sp(c.to_ascii_uppercase(), &format!("nixos-system-{host}")),
        }
    }

    #[test]
    fn installable_syntax_follows_the_nix_version() {
        let drv = sp('a', "x.drv");
        assert_eq!(
            installable(&drv, NixVersion { major: 2, minor: 8 }),
            drv.as_str()
        );
        assert_eq!(
            installable(
                &drv,
                NixVersion {
                    major: 2,
                    minor: 24
                }
            ),
            format!("{drv}^out")
        );
    }

    #[test]
    fn build_args_build_everything_in_one_call() {
        let tops = [toplevel('a', "one"), toplevel('b', "two")];
        let args = build_args(
            &tops,
            NixVersion { major: 2, minor: 8 },
            Some("ssh://b x86_64-linux"),
        );
        assert_eq!(
            &args[2..],
            [
                "build",
                "--json",
                "--no-link",
                "--keep-going",
                "--builders",
                "ssh://b x86_64-linux",
                tops[0].drv_path.as_str(),
                tops[1].drv_path.as_str(),
            ]
        );
    }

    #[test]
    fn errors_are_attributed_to_the_host_they_name() {
        let tops = [toplevel('a', "one"), toplevel('b', "two")];
        let stderr = format!(
            "building '{a}'...\nerror: builder for '{b}' failed with exit code 1;\n       last 1 log lines:\n       > boom\nerror: builder for '/nix/store/cccccccccccccccccccccccccccccccc-dep.drv' failed\n       > dep broke\nerror: 1 dependencies of derivation '{a}' failed to build\n",
            a = tops[0].drv_path,
            b = tops[1].drv_path
        );
        let two = attribute(&stderr, &tops[1].drv_path, &tops);
        assert!(two.iter().any(|l| l.contains("> boom")), "{two:?}");
        assert!(!two.iter().any(|l| l.contains("dependencies")), "{two:?}");
        let one = attribute(&stderr, &tops[0].drv_path, &tops);
        assert!(one.iter().any(|l| l.contains("dep broke")), "{one:?}");
        assert!(one.iter().any(|l| l.contains("1 dependencies")), "{one:?}");
        assert!(!one.iter().any(|l| l.contains("> boom")), "{one:?}");
    }
}
