//! The lab's file and process plumbing, below every other module: where a host's state directory
//! is mounted inside it, writing files and directories, and running a program to its end.

use std::path::Path;
use std::process::{Command, Stdio};

use crate::LabError;

/// Where the lab's state directory is mounted inside every host.
pub const HOST_STATE: &str = "/var/lib/hbdeploy-lab";

pub(crate) fn io(what: String) -> impl FnOnce(std::io::Error) -> LabError {
    move |source| LabError::Io { what, source }
}

pub(crate) fn write(path: &Path, text: &str) -> Result<(), LabError> {
    std::fs::write(path, text).map_err(io(format!("write {}", path.display())))
}

pub(crate) fn mkdir(path: &Path) -> Result<(), LabError> {
    std::fs::create_dir_all(path).map_err(io(format!("create {}", path.display())))
}

/// Runs a program to completion and fails with its stderr when it exits non-zero.
pub(crate) fn run(command: &mut Command, what: &str) -> Result<String, LabError> {
    let output = command
        .stdin(Stdio::null())
        .output()
        .map_err(io(format!("run {what}")))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(LabError::Command {
            what: what.to_owned(),
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        })
    }
}
