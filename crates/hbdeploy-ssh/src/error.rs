//! The errors of the SSH transport. Each names the target (`user@address:port`) and, where there is
//! one, the command or file involved; causes are attached as sources, not pasted into messages.

use std::path::PathBuf;
use std::time::Duration;

use crate::verdict::HostKeyVerdict;

/// Everything that can go wrong while reaching a host or running a command on it.
#[derive(Debug, thiserror::Error)]
pub enum SshError {
    /// The TCP connection could not be opened.
    #[error("cannot connect to {target}")]
    Connect {
        /// `user@address:port`.
        target: String,
        /// The socket error.
        #[source]
        source: std::io::Error,
    },
    /// Connecting, the handshake or authentication took longer than the connect timeout.
    #[error("no answer from {target} within {}s (connect-timeout)", after.as_secs())]
    Timeout {
        /// `user@address:port`.
        target: String,
        /// The timeout that ran out.
        after: Duration,
    },
    /// The jump host would not open a channel to the target.
    #[error("{jump} would not forward a connection to {target}")]
    Jump {
        /// `user@address:port` of the target.
        target: String,
        /// `user@address:port` of the jump host.
        jump: String,
        /// russh's error.
        #[source]
        source: russh::Error,
    },
    /// The SSH handshake failed for a reason other than the host key.
    #[error("SSH handshake with {target} failed")]
    Handshake {
        /// `user@address:port`.
        target: String,
        /// russh's error.
        #[source]
        source: russh::Error,
    },
    /// The host key or host certificate was not accepted.
    #[error("host {} of {target} refused: {verdict}", verdict.subject())]
    HostKey {
        /// `user@address:port`.
        target: String,
        /// Why the key was refused.
        verdict: HostKeyVerdict,
    },
    /// The identity file could not be loaded.
    #[error("cannot load identity file {}", path.display())]
    IdentityFile {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: russh::keys::Error,
    },
    /// The identity file could not be read, or is not a regular file.
    #[error(transparent)]
    Identity(#[from] crate::IdentityError),
    /// The identity file is encrypted, no decrypted key was handed over for it, and ssh-agent
    /// does not hold it.
    #[error("identity file {} is encrypted and no passphrase was given for it", path.display())]
    PassphraseNeeded {
        /// The file.
        path: PathBuf,
    },
    /// No identity file is configured and ssh-agent cannot be used.
    #[error("no identity-file is set for {target} and ssh-agent is not usable: {reason}")]
    NoAgent {
        /// `user@address:port`.
        target: String,
        /// Why the agent cannot be used.
        reason: String,
    },
    /// The server refused every key we offered.
    #[error("{target} refused authentication with {offered}")]
    AuthRejected {
        /// `user@address:port`.
        target: String,
        /// What was offered, e.g. the identity file or "the keys in ssh-agent".
        offered: String,
    },
    /// The connection broke during authentication.
    #[error("authentication with {target} failed")]
    Auth {
        /// `user@address:port`.
        target: String,
        /// russh's error.
        #[source]
        source: russh::Error,
    },
    /// A command could not be started or its channel broke.
    #[error("running `{command}` on {target} failed: the SSH channel broke")]
    Channel {
        /// `user@address:port`.
        target: String,
        /// The command line.
        command: String,
        /// russh's error, when it gave one.
        #[source]
        source: Option<russh::Error>,
    },
    /// A request was not sent to a held command (the deployment lock's holder): an earlier one
    /// was left unanswered, so what the holder prints next could be its rest.
    #[error("`{command}` was not sent to the held command: an earlier request was left unanswered")]
    Unanswered {
        /// The command line.
        command: String,
    },
    /// A command could not be run on the machine hbdeploy runs on (`address = "local"`).
    #[error("running `{command}` on {target} (this machine) failed")]
    Local {
        /// The host's name for this machine.
        target: String,
        /// The command line.
        command: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The privilege escalation command (`sudo`) refused to run a command as root.
    #[error("{target} cannot run commands as root with `{command}`: {output}")]
    Escalation {
        /// `user@address:port`.
        target: String,
        /// The escalation command, e.g. `sudo`.
        command: String,
        /// What it printed.
        output: String,
    },
}

impl hbdeploy_files::Hint for SshError {
    /// Advice for the user, where there is one to give.
    fn hint(&self) -> Option<String> {
        match self {
            SshError::Connect { .. } | SshError::Timeout { .. } => Some(
                "check that the host is up and that `address` and `port` in fleet.toml are right"
                    .to_owned(),
            ),
            SshError::HostKey { verdict, .. } => Some(verdict.advice()),
            SshError::Identity(err) => err.hint(),
            SshError::PassphraseNeeded { path } => Some(format!(
                "run hbdeploy on a terminal: it asks for the passphrase once, before contacting \
                 any host; or add the key to ssh-agent (ssh-add {})",
                path.display()
            )),
            SshError::NoAgent { .. } => Some(
                "set `identity-file` in fleet.toml, or start ssh-agent and add a key (ssh-add)"
                    .to_owned(),
            ),
            SshError::AuthRejected { .. } => Some(
                "add the deployer's public key to the host's authorized_keys, or set the right \
                 `identity-file`/`user` in fleet.toml"
                    .to_owned(),
            ),
            SshError::Escalation { output, .. } => Some(escalation_hint(output)),
            _ => None,
        }
    }
}

/// What to do when `sudo` (or the configured command) refused, judged from what it printed.
fn escalation_hint(output: &str) -> String {
    let said = output.to_lowercase();
    if said.contains("incorrect password") || said.contains("sorry, try again") {
        "the sudo password was refused; run again and type the user's password on the host"
            .to_owned()
    } else if said.contains("password is required") || said.contains("no password was provided") {
        "give the user passwordless sudo on the host (NOPASSWD in sudoers), or run with \
         --ask-sudo-password"
            .to_owned()
    } else if said.contains("not found") {
        "install sudo on the host, or set `privilege-escalation` in fleet.toml to the command \
         that runs a command as root there"
            .to_owned()
    } else {
        "allow the user to run commands as root with sudo on the host (sudoers), or log in as \
         root (user = \"root\")"
            .to_owned()
    }
}
