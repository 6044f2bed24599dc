//! Evaluating the hosts' system derivations: one `nix eval` for all hosts, and one per host only
//! when the joint evaluation fails, to tell which hosts are broken and why.

use std::collections::BTreeMap;

use serde::Deserialize;
use tokio::task::JoinSet;

use crate::command::{self, OutputSink};
use crate::{FEATURES, Nix, NixError, StorePath};

/// A host's system: the derivation to build and the path it will produce.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Toplevel {
    /// `config.system.build.toplevel.drvPath`.
    #[serde(rename = "drv")]
    pub drv_path: StorePath,
    /// `config.system.build.toplevel.outPath`.
    #[serde(rename = "out")]
    pub out_path: StorePath,
}

/// The outcome per attribute: the toplevel, or the lines of nix's evaluation error.
pub type EvalResults = BTreeMap<String, Result<Toplevel, Vec<String>>>;

/// A nix string literal holding `text` (quotes, backslashes and `${` escaped).
pub fn nix_string(text: &str) -> String {
    let mut quoted = String::with_capacity(text.len() + 2);
    quoted.push('"');
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            '$' if chars.peek() == Some(&'{') => quoted.push_str("\\$"),
            '\n' => quoted.push_str("\\n"),
            _ => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted
}

/// The `--apply` function that maps `nixosConfigurations` to `{ attr = { drv; out; }; }`. (Not
/// `outPath`: nix turns any attribute set with an `outPath` into that string in JSON.)
pub(crate) fn apply_expr(attrs: &[String]) -> String {
    let mut expr = String::from("cs: {");
    for attr in attrs {
        let name = nix_string(attr);
        expr.push_str(&format!(
            " {name} = let t = cs.{name}.config.system.build.toplevel; \
             in {{ drv = t.drvPath; out = t.outPath; }};"
        ));
    }
    expr.push_str(" }");
    expr
}

fn eval_args(flake: &str, attrs: &[String]) -> Vec<String> {
    let mut args: Vec<String> = FEATURES.iter().map(|s| (*s).to_owned()).collect();
    args.extend([
        "eval".to_owned(),
        "--json".to_owned(),
        format!("{flake}#nixosConfigurations"),
        "--apply".to_owned(),
        apply_expr(attrs),
    ]);
    args
}

/// The `error: …` part of nix's stderr, without progress chatter.
pub(crate) fn error_lines(stderr: &str) -> Vec<String> {
    let lines: Vec<&str> = stderr.lines().collect();
    let start = lines
        .iter()
        .position(|l| l.starts_with("error:"))
        .unwrap_or(0);
    lines[start..]
        .iter()
        .filter(|l| !l.trim().is_empty())
        .map(|l| (*l).to_owned())
        .collect()
}

impl Nix {
    /// Evaluates `attrs` of `flake`'s `nixosConfigurations`. A host whose configuration does not
    /// evaluate gets its error; the others still get their toplevel.
    pub async fn eval_toplevels(
        &self,
        flake: &str,
        attrs: &[String],
        on_line: OutputSink<'_>,
    ) -> Result<EvalResults, NixError> {
        match self.eval_once(flake, attrs, on_line).await? {
            Ok(parsed) => Ok(attrs
                .iter()
                .map(|attr| {
                    let result = parsed
                        .get(attr)
                        .cloned()
                        .ok_or_else(|| vec![format!("nix eval returned nothing for `{attr}`")]);
                    (attr.clone(), result)
                })
                .collect()),
            Err(lines) if attrs.len() == 1 => Ok(attrs
                .iter()
                .map(|a| (a.clone(), Err(lines.clone())))
                .collect()),
            Err(_) => self.eval_each(flake, attrs).await,
        }
    }

    /// One `nix eval` of `attrs`: the toplevels, or the lines of nix's error.
    async fn eval_once(
        &self,
        flake: &str,
        attrs: &[String],
        on_line: OutputSink<'_>,
    ) -> Result<Result<BTreeMap<String, Toplevel>, Vec<String>>, NixError> {
        let shown = format!("nix eval {flake}#nixosConfigurations");
        let output = command::run(
            command::cmd(&self.nix, eval_args(flake, attrs)),
            &shown,
            on_line,
        )
        .await?;
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

    /// One evaluation per attribute, all at once, so each failure is attributed to its host.
    async fn eval_each(&self, flake: &str, attrs: &[String]) -> Result<EvalResults, NixError> {
        let mut tasks = JoinSet::new();
        for attr in attrs {
            let nix = self.clone();
            let flake = flake.to_owned();
            let attr = attr.clone();
            tasks.spawn(async move {
                let one = [attr.clone()];
                let result = nix.eval_once(&flake, &one, &mut |_| {}).await;
                (attr, result)
            });
        }
        let mut results = EvalResults::new();
        while let Some(joined) = tasks.join_next().await {
            let (attr, result) = joined.map_err(|err| NixError::Unexpected {
                command: "nix eval".to_owned(),
                detail: format!("evaluation task failed: {err}"),
            })?;
            let outcome = match result? {
                Ok(mut parsed) => parsed
                    .remove(&attr)
                    .ok_or_else(|| vec![format!("nix eval returned nothing for `{attr}`")]),
                Err(lines) => Err(lines),
            };
            results.insert(attr, outcome);
        }
        Ok(results)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nix_strings_are_escaped() {
        assert_eq!(nix_string("laptop"), "\"laptop\"");
        assert_eq!(nix_string("a\"b\\c${d}$e"), "\"a\\\"b\\\\c\\${d}$e\"");
    }

    #[test]
    fn apply_expression_names_every_attribute() {
        let expr = apply_expr(&["a".to_owned(), "b-c".to_owned()]);
        assert_eq!(
            expr,
            "cs: { \"a\" = let t = cs.\"a\".config.system.build.toplevel; in \
             { drv = t.drvPath; out = t.outPath; }; \"b-c\" = let t = \
             cs.\"b-c\".config.system.build.toplevel; in { drv = t.drvPath; \
             out = t.outPath; }; }"
        );
    }

    #[test]
    fn eval_args_enable_flakes_and_ask_for_json() {
        let args = eval_args("path:/x", &["a".to_owned()]);
        assert_eq!(
            args[..4],
            FEATURES.map(String::from)[..]
                .iter()
                .cloned()
                .chain(["eval".to_owned(), "--json".to_owned()])
                .collect::<Vec<_>>()[..]
        );
        assert_eq!(args[4], "path:/x#nixosConfigurations");
        assert_eq!(args[5], "--apply");
    }

    #[test]
    fn error_lines_skip_chatter_before_the_error() {
        let stderr =
            "warning: Git tree is dirty\nerror: attribute 'x' missing\n\n   at «string»:1:2\n";
        assert_eq!(
            error_lines(stderr),
            ["error: attribute 'x' missing", "   at «string»:1:2"]
        );
        assert_eq!(error_lines("just text\n"), ["just text"]);
    }
}
