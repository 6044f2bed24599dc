//! The errors that stop a run before or outside the per-host work, how every error is shown
//! ([`explain`], the one renderer), and the exit codes: 0 every host succeeded, 1 some host
//! failed, 2 usage, configuration or environment error, 130 interrupted.

use hbdeploy_files::Hint;
use hbdeploy_inventory::{InventoryError, SelectError};
use hbdeploy_pipeline::PipelineError;

use crate::ledger::LedgerError;
use crate::passphrase::PassphraseError;
use crate::preflight::Refused;

/// Exit code when some host failed.
pub(crate) const EXIT_HOST_FAILED: u8 = 1;
/// Exit code for usage, configuration and environment errors.
pub(crate) const EXIT_USAGE: u8 = 2;
/// Exit code after Ctrl-C, as shells report a death by SIGINT.
pub(crate) const EXIT_INTERRUPTED: u8 = 130;

/// Errors that stop the run before or outside the per-host work.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AppError {
    /// fleet.toml could not be used.
    #[error(transparent)]
    Inventory(InventoryError),
    /// The command line selected no known host.
    #[error(transparent)]
    Select(SelectError),
    /// nix could not run.
    #[error(transparent)]
    Pipeline(PipelineError),
    /// `install` refused or could not start.
    #[error(transparent)]
    Install(hbdeploy_pipeline::install::InstallError),
    /// The async runtime could not start, or a file could not be written.
    #[error(transparent)]
    Runtime(std::io::Error),
    /// The deployment ledger could not be read.
    #[error(transparent)]
    Ledger(LedgerError),
    /// A command's own usage error, with a hint.
    #[error("{0}")]
    Usage(String, Option<String>),
    /// An encrypted identity file could not be unlocked.
    #[error(transparent)]
    Passphrase(#[from] PassphraseError),
    /// The user pressed Ctrl-C at a prompt, before anything was changed.
    #[error("{0}")]
    Interrupted(String),
    /// A file named in fleet.toml is not a regular file, or is too large.
    #[error(transparent)]
    File(Refused),
    /// A secret's content could not be read; no host was contacted.
    #[error(transparent)]
    Secret(hbdeploy_pipeline::SecretError),
    /// The systems file of `apply --systems` or `build --systems-out` cannot be used.
    #[error(transparent)]
    Systems(Box<crate::systems::SystemsError>),
}

impl From<crate::systems::SystemsError> for AppError {
    fn from(err: crate::systems::SystemsError) -> AppError {
        AppError::Systems(Box::new(err))
    }
}

impl Hint for AppError {
    fn hint(&self) -> Option<String> {
        match self {
            AppError::Inventory(err) => err.hint(),
            AppError::Select(err) => err.hint(),
            AppError::Pipeline(err) => err.hint(),
            AppError::Install(err) => err.hint(),
            AppError::Runtime(err) => err.hint(),
            AppError::Ledger(err) => err.hint(),
            AppError::Usage(_, hint) => hint.clone(),
            AppError::Passphrase(err) => err.hint(),
            AppError::Interrupted(_) => None,
            AppError::File(err) => err.hint(),
            AppError::Secret(err) => err.hint(),
            AppError::Systems(err) => err.hint(),
        }
    }
}

impl AppError {
    /// The message shown on stderr: the error, each cause, then the hint.
    pub(crate) fn render(&self) -> String {
        explain("error: ", self, &[], "")
    }

    /// The exit code this error ends the run with.
    pub(crate) fn exit_code(&self) -> u8 {
        match self {
            AppError::Passphrase(PassphraseError::Interrupted { .. })
            | AppError::Interrupted(_) => EXIT_INTERRUPTED,
            _ => EXIT_USAGE,
        }
    }
}

/// The one rendering of an error for people: `{first}{error}`, each cause on a line of its own
/// (`  caused by: …`), the last lines of the failing command's output (`  | …`), then the hint
/// after `hint_indent` (`hint: …`). A whole run's error is `error: …` with the hint flush left; a
/// host's failure in a summary is `HOST: …` with the hint indented under it.
pub(crate) fn explain(first: &str, error: &dyn Hint, tail: &[String], hint_indent: &str) -> String {
    let mut text = format!("{first}{error}\n");
    for cause in hbdeploy_files::causes(error) {
        text.push_str(&format!("  caused by: {cause}\n"));
    }
    for line in tail {
        text.push_str(&format!("  | {line}\n"));
    }
    if let Some(hint) = error.hint() {
        text.push_str(&format!("{hint_indent}hint: {hint}\n"));
    }
    text
}

/// A host's failure, as the summaries of `apply`, `rollback`, `plan`, `exec`, `status` and
/// `install` show it: `host: error`, its causes, the output tail and the hint, one per line.
pub(crate) fn host_failure(host: &str, error: &dyn Hint, tail: &[String]) -> String {
    explain(&format!("{host}: "), error, tail, "  ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_error_shows_its_causes_then_its_hint_flush_left() {
        let err = AppError::Runtime(std::io::Error::other("no runtime"));
        assert_eq!(err.render(), "error: no runtime\n");
        let usage = AppError::Usage("bad".to_owned(), Some("do that".to_owned()));
        assert_eq!(usage.render(), "error: bad\nhint: do that\n");
        let ledger = AppError::Ledger(LedgerError::Io {
            what: "read",
            path: "/l".into(),
            source: std::io::Error::other("denied"),
        });
        let text = ledger.render();
        assert!(
            text.starts_with("error: cannot read /l\n  caused by: denied\nhint: check the state"),
            "{text}"
        );
    }

    #[test]
    fn a_host_failure_shows_causes_tail_and_an_indented_hint() {
        let err = hbdeploy_pipeline::HostError::Locked {
            holder: "someone".to_owned(),
        };
        let text = host_failure("web", &err, &["last line".to_owned()]);
        assert!(text.starts_with(&format!("web: {err}\n")), "{text}");
        assert!(text.contains("\n  | last line\n"), "{text}");
        assert!(text.ends_with(&format!("  hint: {}\n", err.hint().unwrap_or_default())));
    }
}
