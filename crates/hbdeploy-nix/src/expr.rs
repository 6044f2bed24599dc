//! Evaluating any function of a flake output to JSON: `nix eval --json FLAKE#OUTPUT --apply FN`.
//!
//! The host evaluation in `eval.rs` is one such call with a fixed function; this is the general
//! form, for callers that need other facts of a configuration (its disks, its disko script).

use serde::de::DeserializeOwned;

use crate::command::{self, OutputSink};
use crate::eval::error_lines;
use crate::{FEATURES, Nix, NixError};

/// The argument vector of `nix eval --json FLAKE#OUTPUT --apply APPLY`.
pub(crate) fn eval_apply_args(flake: &str, output: &str, apply: &str) -> Vec<String> {
    let mut args: Vec<String> = FEATURES.iter().map(|s| (*s).to_owned()).collect();
    args.extend([
        "eval".to_owned(),
        "--json".to_owned(),
        format!("{flake}#{output}"),
        "--apply".to_owned(),
        apply.to_owned(),
    ]);
    args
}

impl Nix {
    /// Evaluates `apply` (a nix function) applied to `flake#output` and parses the JSON it
    /// returns. An evaluation error is `Ok(Err(lines))`, holding nix's `error:` lines; `Err` is
    /// for nix that cannot run or prints something other than the expected JSON.
    pub async fn eval_apply<T: DeserializeOwned>(
        &self,
        flake: &str,
        output: &str,
        apply: &str,
        on_line: OutputSink<'_>,
    ) -> Result<Result<T, Vec<String>>, NixError> {
        let shown = format!("nix eval {flake}#{output}");
        let args = eval_apply_args(flake, output, apply);
        let output = command::run(command::cmd(&self.nix, args), &shown, on_line).await?;
        if !output.success {
            return Ok(Err(error_lines(&output.stderr)));
        }
        serde_json::from_str(&output.stdout)
            .map(Ok)
            .map_err(|err| NixError::Unexpected {
                command: shown,
                detail: err.to_string(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eval_apply_args_name_the_output_and_the_function() {
        let args = eval_apply_args("path:/f", "nixosConfigurations", "cs: 1");
        assert_eq!(&args[..2], FEATURES);
        assert_eq!(
            &args[2..],
            [
                "eval",
                "--json",
                "path:/f#nixosConfigurations",
                "--apply",
                "cs: 1"
            ]
        );
    }
}
