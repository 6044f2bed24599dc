//! The errors of the nix driver. Each names the command that failed and carries the last lines of
//! what nix printed.

use crate::command::Output;

/// A nix command that could not run or did not do its job.
#[derive(Debug, thiserror::Error)]
pub enum NixError {
    /// The program could not be started (usually: nix is not installed).
    #[error("cannot run `{command}`")]
    Spawn {
        /// The command.
        command: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Reading the command's output failed.
    #[error("reading the output of `{command}` failed")]
    Io {
        /// The command.
        command: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The command exited unsuccessfully.
    #[error("`{command}` failed ({status})")]
    Failed {
        /// The command.
        command: String,
        /// Its exit status.
        status: String,
        /// The last lines of its stderr.
        tail: Vec<String>,
    },
    /// The command succeeded but printed something we cannot use.
    #[error("`{command}` printed something unexpected: {detail}")]
    Unexpected {
        /// The command.
        command: String,
        /// What was wrong.
        detail: String,
    },
}

impl NixError {
    pub(crate) fn failed(command: &str, output: &Output) -> NixError {
        NixError::Failed {
            command: command.to_owned(),
            status: output.status.clone(),
            tail: output.stderr_tail(),
        }
    }

    /// The last lines nix printed, when the error carries them.
    pub fn tail(&self) -> &[String] {
        match self {
            NixError::Failed { tail, .. } => tail,
            _ => &[],
        }
    }
}

impl hbdeploy_files::Hint for NixError {
    /// Advice for the user, where there is one to give.
    fn hint(&self) -> Option<String> {
        match self {
            // E2BIG: the command line was too long for the kernel; nix is there.
            NixError::Spawn { source, .. } if source.raw_os_error() == Some(7) => Some(
                "the command line was longer than the system allows: this is a bug in hbdeploy, \
                 please report it with the number of hosts selected"
                    .to_owned(),
            ),
            NixError::Spawn { .. } => Some(
                "install nix (Debian/Ubuntu: `apt-get install nix-bin`) and make sure `nix` is on PATH"
                    .to_owned(),
            ),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hbdeploy_files::Hint as _;

    #[test]
    fn a_too_long_command_line_is_not_taken_for_a_missing_nix() {
        let spawn = |source| NixError::Spawn {
            command: "nix eval".to_owned(),
            source,
        };
        let e2big = spawn(std::io::Error::from_raw_os_error(7)).hint();
        assert!(e2big.is_some_and(|h| h.contains("bug") && !h.contains("install nix")));
        let missing = spawn(std::io::Error::from(std::io::ErrorKind::NotFound)).hint();
        assert!(missing.is_some_and(|h| h.contains("install nix")));
    }
}
