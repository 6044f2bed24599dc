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

fn command(binary: &Path, fleet: Option<&Path>, args: &[&str]) -> Command {
    let mut command = Command::new(binary);
    if let Some(fleet) = fleet {
        command.arg("--fleet").arg(fleet);
    }
    command
        .args(args)
        .env("NIX_CONFIG", NIX_CONFIG)
        .env("NO_COLOR", "1")
        .env_remove("HBDEPLOY_FLEET")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// Runs `binary` with `args` and the lab's nix settings (no binary caches), colour off, stdin
/// closed. `fleet`, when given, is passed as `--fleet`.
pub fn hbdeploy(binary: &Path, fleet: Option<&Path>, args: &[&str]) -> Result<Run, LabError> {
    let child = command(binary, fleet, args)
        .spawn()
        .map_err(|source| LabError::Io {
            what: format!("run {}", binary.display()),
            source,
        })?;
    finish(child)
}

/// Waits for a hbdeploy started with [`Lab::spawn_hbdeploy`] and collects its output.
pub fn finish(child: std::process::Child) -> Result<Run, LabError> {
    let output = child.wait_with_output().map_err(|source| LabError::Io {
        what: "wait for hbdeploy".to_owned(),
        source,
    })?;
    Ok(Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    })
}

impl Lab {
    /// The command that runs hbdeploy against this lab's fleet file, not started (e.g. to
    /// measure it with [`crate::bench::measure`]).
    pub fn hbdeploy_command(&self, binary: &Path, args: &[&str]) -> Command {
        command(binary, Some(&self.dir().join("fleet.toml")), args)
    }

    /// Starts hbdeploy against this lab's fleet file without waiting for it (to interrupt it, or
    /// to run two at once); collect it with [`finish`].
    pub fn spawn_hbdeploy(
        &self,
        binary: &Path,
        args: &[&str],
    ) -> Result<std::process::Child, LabError> {
        command(binary, Some(&self.dir().join("fleet.toml")), args)
            .spawn()
            .map_err(|source| LabError::Io {
                what: format!("start {}", binary.display()),
                source,
            })
    }

    /// Like [`Lab::spawn_hbdeploy`], with extra environment variables.
    pub fn spawn_hbdeploy_with_env(
        &self,
        binary: &Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Result<std::process::Child, LabError> {
        let mut command = command(binary, Some(&self.dir().join("fleet.toml")), args);
        command.envs(env.iter().copied());
        command.spawn().map_err(|source| LabError::Io {
            what: format!("start {}", binary.display()),
            source,
        })
    }

    /// Runs hbdeploy against this lab's fleet file with extra environment variables.
    pub fn hbdeploy_with_env(
        &self,
        binary: &Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Result<Run, LabError> {
        finish(self.spawn_hbdeploy_with_env(binary, args, env)?)
    }

    /// Runs hbdeploy against this lab's fleet file (written by [`Lab::write_fleet`]).
    pub fn hbdeploy(&self, binary: &Path, args: &[&str]) -> Result<Run, LabError> {
        hbdeploy(binary, Some(&self.dir().join("fleet.toml")), args)
    }
}
