//! Running the real `hbdeploy` binary against a lab, as a user would, for tests and benchmarks.

use std::path::Path;
use std::process::{Command, Stdio};

use crate::{Lab, LabError, NIX_CONFIG};

/// What one run of hbdeploy left behind.
#[derive(Debug, Clone)]
pub struct Run {
    /// Its exit code (-1 if killed by a signal).
    pub code: i32,
    /// Everything it printed on stdout.
    pub stdout: String,
    /// Everything it printed on stderr.
    pub stderr: String,
}

impl Run {
    /// Both streams, for assertion messages.
    pub fn both(&self) -> String {
        format!("--- stdout\n{}--- stderr\n{}", self.stdout, self.stderr)
    }
}

/// Runs `binary` with `args` and the lab's nix settings (no binary caches), colour off, stdin
/// closed. `fleet`, when given, is passed as `--fleet`.
pub fn hbdeploy(binary: &Path, fleet: Option<&Path>, args: &[&str]) -> Result<Run, LabError> {
    let mut command = Command::new(binary);
    if let Some(fleet) = fleet {
        command.arg("--fleet").arg(fleet);
    }
    let output = command
        .args(args)
        .env("NIX_CONFIG", NIX_CONFIG)
        .env("NO_COLOR", "1")
        .env_remove("HBDEPLOY_FLEET")
        .stdin(Stdio::null())
        .output()
        .map_err(|source| LabError::Io {
            what: format!("run {}", binary.display()),
            source,
        })?;
    Ok(Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    })
}

impl Lab {
    /// Runs hbdeploy against this lab's fleet file (written by [`Lab::write_fleet`]).
    pub fn hbdeploy(&self, binary: &Path, args: &[&str]) -> Result<Run, LabError> {
        hbdeploy(binary, Some(&self.dir().join("fleet.toml")), args)
    }
}
