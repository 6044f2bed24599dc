//! The errors that stop a run before or outside the per-host work, how they are shown, and the
//! exit codes: 0 every host succeeded, 1 some host failed, 2 usage, configuration or environment
//! error, 130 interrupted.

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
#[derive(Debug)]
pub(crate) enum AppError {
    /// fleet.toml could not be used.
    Inventory(InventoryError),
    /// The command line selected no known host.
    Select(SelectError),
    /// nix could not run.
    Pipeline(PipelineError),
    /// `install` refused or could not start.
    Install(hbdeploy_pipeline::install::InstallError),
    /// The async runtime could not start, or a file could not be written.
    Runtime(std::io::Error),
    /// The deployment ledger could not be read.
    Ledger(LedgerError),
    /// A command's own usage error, with a hint.
    Usage(String, Option<String>),
    /// An encrypted identity file could not be unlocked.
    Passphrase(PassphraseError),
    /// The user pressed Ctrl-C at a prompt, before anything was changed.
    Interrupted(String),
    /// A file named in fleet.toml is not a regular file, or is too large.
    File(Refused),
}

impl From<PassphraseError> for AppError {
    fn from(err: PassphraseError) -> AppError {
        AppError::Passphrase(err)
    }
}

impl AppError {
    /// The message shown on stderr: the error, each cause, then the hint.
    pub(crate) fn render(&self) -> String {
        let (error, hint): (&dyn std::error::Error, Option<String>) = match self {
            AppError::Inventory(err) => (err, err.hint().map(str::to_owned)),
            AppError::Select(err) => (err, err.hint().map(str::to_owned)),
            AppError::Pipeline(err) => (err, err.hint()),
            AppError::Install(err) => (err, err.hint()),
            AppError::Runtime(err) => (err, None),
            AppError::Passphrase(err) => (err, err.hint()),
            AppError::Ledger(err) => (err, Some(err.hint())),
            AppError::File(err) => (err, Some(err.hint())),
            AppError::Interrupted(message) => return format!("error: {message}\n"),
            AppError::Usage(message, hint) => {
                let mut text = format!("error: {message}\n");
                if let Some(hint) = hint {
                    text.push_str(&format!("hint: {hint}\n"));
                }
                return text;
            }
        };
        let mut text = format!("error: {error}\n");
        let mut source = error.source();
        while let Some(cause) = source {
            text.push_str(&format!("  caused by: {cause}\n"));
            source = cause.source();
        }
        if let Some(hint) = hint {
            text.push_str(&format!("hint: {hint}\n"));
        }
        text
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
