//! Commands that need root, run by a user who is not root: each goes through the privilege
//! escalation command (`sudo` by default) as `sudo -n -- sh -c 'COMMAND'`, the command quoted as
//! one shell word. With a password, `sudo` reads it from stdin (`-S`), where it is written before
//! anything else: it never appears on a command line, in a process listing or in a log.
//!
//! `sudo -S` reads stdin only when the host's sudo asks for a password. Where it does not
//! (`NOPASSWD`), a password written there would reach the command itself. So, with a password,
//! each connection first asks once whether `sudo -n true` works; when it does, that connection's
//! commands run with `sudo -n` and the password is never sent.

use zeroize::Zeroizing;

use crate::{CommandOutput, Connection, Held, OutputLine, SshError};

/// What a connection learnt about its escalation command: probed once, on the first command that
/// needs root, and only when there is a password to send.
#[derive(Debug, Default)]
pub(crate) struct Probe(tokio::sync::OnceCell<Needs>);

/// Whether the host's `sudo` wants the password.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Needs {
    /// `sudo -n true` worked: no password is asked for, so none is sent.
    Nothing,
    /// It did not: the password goes to `sudo -S` on stdin.
    Password,
}

/// How a non-root login runs a command as root.
#[derive(Clone, PartialEq, Eq)]
pub struct Escalation {
    /// The command and its arguments, e.g. `["sudo"]` or `["doas"]`. When the program is `sudo`,
    /// hbdeploy adds `-n` (or `-S -p ""` with a password) right after it, and `--` before the
    /// shell; any other program is used exactly as given and must read a password from stdin.
    pub command: Vec<String>,
}

impl std::fmt::Debug for Escalation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Escalation")
            .field("command", &self.command)
            .finish()
    }
}

/// A password kept out of `Debug` output; cheap to clone: every host of a run shares one copy,
/// which is overwritten with zeros when the last clone is dropped.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(std::sync::Arc<Zeroizing<String>>);

impl Password {
    /// Wraps a password as typed (without its newline).
    pub fn new(text: &str) -> Password {
        Password(std::sync::Arc::new(Zeroizing::new(text.to_owned())))
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(<hidden>)")
    }
}

/// Quotes `word` for a POSIX shell: one single-quoted word, each `'` written as `'\''`.
pub fn shell_quote(word: &str) -> String {
    // `#` is literal inside a word, and starts a comment only at a word's start.
    let safe = !word.is_empty()
        && !word.starts_with('#')
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-+=:@,%#".contains(&b));
    if safe {
        return word.to_owned();
    }
    format!("'{}'", word.replace('\'', r"'\''"))
}

/// `argv` as one line to paste into a POSIX shell, each word through [`shell_quote`].
pub fn shell_line<S: AsRef<str>>(argv: &[S]) -> String {
    argv.iter()
        .map(|word| shell_quote(word.as_ref()))
        .collect::<Vec<_>>()
        .join(" ")
}

impl Escalation {
    /// The command line that runs `command` (a shell command line) as root, without asking for
    /// a password.
    pub fn wrap(&self, command: &str) -> String {
        self.wrap_with(command, false)
    }

    /// The command line that runs `command` as root; with `password`, `sudo` reads it from stdin.
    pub(crate) fn wrap_with(&self, command: &str, password: bool) -> String {
        let mut words: Vec<String> = Vec::new();
        let mut parts = self.command.iter();
        if let Some(program) = parts.next() {
            words.push(shell_quote(program));
            let is_sudo = self.is_sudo();
            if is_sudo {
                if password {
                    words.extend(["-S".to_owned(), "-p".to_owned(), "''".to_owned()]);
                } else {
                    words.push("-n".to_owned());
                }
            }
            words.extend(parts.map(|w| shell_quote(w)));
            if is_sudo {
                words.push("--".to_owned());
            }
        }
        words.push("sh".to_owned());
        words.push("-c".to_owned());
        words.push(shell_quote(command));
        words.join(" ")
    }

    /// Whether `sudo` is the program: only then can hbdeploy tell whether it wants a password.
    fn is_sudo(&self) -> bool {
        self.command.first().is_some_and(|program| {
            std::path::Path::new(program)
                .file_name()
                .is_some_and(|name| name == "sudo")
        })
    }
}

impl Probe {
    /// Whether `escalation` wants the password: only `sudo` with a `password` to send is asked,
    /// once per session (`sudo -n true`, run by `run` as the login user); any other program
    /// is taken to want it.
    pub(crate) async fn needs<F, R>(
        &self,
        password: bool,
        escalation: &Escalation,
        run: F,
    ) -> Result<Needs, SshError>
    where
        F: FnOnce(String) -> R,
        R: std::future::Future<Output = Result<CommandOutput, SshError>>,
    {
        if !password {
            return Ok(Needs::Nothing);
        }
        if !escalation.is_sudo() {
            return Ok(Needs::Password);
        }
        let probe = || async {
            let output = run(escalation.wrap_with("true", false)).await?;
            Ok::<_, SshError>(if output.exit.success() {
                Needs::Nothing
            } else {
                Needs::Password
            })
        };
        self.0.get_or_try_init(probe).await.copied()
    }
}

/// The error of an escalation command that would not run `true` as root on `target`, with what
/// it printed.
pub(crate) fn refused(target: &str, escalation: &Escalation, check: &CommandOutput) -> SshError {
    SshError::Escalation {
        target: target.to_owned(),
        command: escalation.command.join(" "),
        output: check
            .tail
            .iter()
            .map(|l| l.text.trim())
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join("; "),
    }
}

impl Password {
    /// The password and its newline, as written to the command's stdin; zeroed once written.
    pub(crate) fn stdin(&self) -> Zeroizing<Vec<u8>> {
        let mut bytes = Zeroizing::new(Vec::with_capacity(self.0.len() + 1));
        bytes.extend_from_slice(self.0.as_bytes());
        bytes.push(b'\n');
        bytes
    }
}

impl Connection {
    /// The escalation this connection's commands that need root go through; `None` when the
    /// login is root (or no escalation is configured).
    fn escalation(&self) -> Option<&Escalation> {
        self.target
            .escalation
            .as_ref()
            .filter(|_| self.target.user != "root")
    }

    /// Runs `command` as root: as is when the login is root, else through the escalation
    /// command. Otherwise as [`Connection::run`].
    pub async fn run_root(
        &self,
        command: &str,
        on_line: impl FnMut(&OutputLine),
    ) -> Result<CommandOutput, SshError> {
        self.root(command, on_line, true).await
    }

    /// Like [`Connection::run_root`] for output that is only streamed to `on_line`, never
    /// parsed: only its last lines are kept (`stdout` stays empty), however much it prints.
    pub async fn stream_root(
        &self,
        command: &str,
        on_line: impl FnMut(&OutputLine),
    ) -> Result<CommandOutput, SshError> {
        self.root(command, on_line, false).await
    }

    /// Runs `command` as root (as [`Connection::run_root`]) with `stdin` as its standard input,
    /// then end-of-file. Through `sudo` with a password, the password goes first and `sudo`
    /// reads only its line; the command reads the rest. The bytes go over the channel only:
    /// never on a command line, and they are not kept here.
    pub async fn run_root_with_stdin(
        &self,
        command: &str,
        stdin: &[u8],
        on_line: impl FnMut(&OutputLine),
    ) -> Result<CommandOutput, SshError> {
        let channel = match self.escalation() {
            None => self.start(command).await?,
            Some(escalation) => self.start_root(escalation, command).await?,
        };
        Ok(crate::exec::fed(channel, stdin, on_line).await)
    }

    async fn root(
        &self,
        command: &str,
        on_line: impl FnMut(&OutputLine),
        keep_stdout: bool,
    ) -> Result<CommandOutput, SshError> {
        let Some(escalation) = self.escalation() else {
            let channel = self.start(command).await?;
            return Ok(crate::exec::read(channel, on_line, keep_stdout).await);
        };
        let channel = self.start_root(escalation, command).await?;
        let _ = channel.eof().await;
        Ok(crate::exec::read(channel, on_line, keep_stdout).await)
    }

    /// Holds `command` as root (see [`Connection::hold`]). Through an escalation command, first
    /// checks that it works at all (`sudo -n true`), so that a refused or missing password is an
    /// [`SshError::Escalation`] rather than a command that waits for stdin that never comes.
    pub async fn hold_root(&self, command: &str) -> Result<(String, Option<Held>), SshError> {
        let Some(escalation) = self.escalation() else {
            return self.hold(command).await;
        };
        let check = self.run_root("true", |_| {}).await?;
        if !check.exit.success() {
            return Err(refused(&self.target.display(), escalation, &check));
        }
        let channel = self.start_root(escalation, command).await?;
        Ok(crate::hold::first_line(channel).await)
    }

    /// Whether this connection's escalation wants the password (see [`Probe::needs`]).
    async fn needs(&self, escalation: &Escalation) -> Result<Needs, SshError> {
        let password = self.session.sudo_password.is_some();
        self.escalation_probe
            .needs(password, escalation, |line| async move {
                self.run(&line, |_| {}).await
            })
            .await
    }

    /// Starts `command` through `escalation`, with the password (if the host's sudo wants one)
    /// already on its stdin.
    async fn start_root(
        &self,
        escalation: &Escalation,
        command: &str,
    ) -> Result<russh::Channel<russh::client::Msg>, SshError> {
        let needs = self.needs(escalation).await?;
        let wrapped = escalation.wrap_with(command, needs == Needs::Password);
        let channel = self.start(&wrapped).await?;
        let password = self.session.sudo_password.as_ref();
        if let Some(stdin) = password
            .map(Password::stdin)
            .filter(|_| needs == Needs::Password)
        {
            channel
                .data(stdin.as_slice())
                .await
                .map_err(|source| SshError::Channel {
                    target: self.target.display(),
                    command: wrapped,
                    source: Some(source),
                })?;
        }
        Ok(channel)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sudo() -> Escalation {
        Escalation {
            command: vec!["sudo".to_owned()],
        }
    }

    #[test]
    fn quoting_survives_hostile_words() {
        assert_eq!(shell_quote("nix-env"), "nix-env");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's $(x)"), r"'it'\''s $(x)'");
        let words = ["a b", "it's", "$HOME", "", "#x", "x#y", "/dev/sda"];
        assert_eq!(
            shell_line(&words),
            r"'a b' 'it'\''s' '$HOME' '' '#x' x#y /dev/sda"
        );
    }

    #[test]
    fn sudo_is_non_interactive_without_a_password_and_reads_stdin_with_one() {
        assert_eq!(
            sudo().wrap("echo 'hi'"),
            r"sudo -n -- sh -c 'echo '\''hi'\'''"
        );
        assert_eq!(
            sudo().wrap_with("id -u", true),
            "sudo -S -p '' -- sh -c 'id -u'"
        );
        let doas = Escalation {
            command: vec!["doas".to_owned(), "-u".to_owned(), "root".to_owned()],
        };
        assert_eq!(doas.wrap("id"), "doas -u root sh -c id");
        let custom = Escalation {
            command: vec!["/run/wrappers/bin/sudo".to_owned(), "-H".to_owned()],
        };
        assert_eq!(
            custom.wrap("id"),
            "/run/wrappers/bin/sudo -n -H -- sh -c id"
        );
    }

    #[test]
    fn every_clone_of_a_session_shares_the_one_zeroizing_password() {
        let password = Password::new("pw");
        let session = crate::Session {
            sudo_password: Some(password.clone()),
            ..crate::Session::default()
        };
        let cloned = session.clone();
        let Some(shared) = cloned.sudo_password.as_ref() else {
            panic!("the clone lost its password");
        };
        assert!(std::sync::Arc::ptr_eq(&password.0, &shared.0));
        assert_eq!(std::sync::Arc::strong_count(&password.0), 3);
        drop((session, cloned));
        assert_eq!(std::sync::Arc::strong_count(&password.0), 1);
    }

    #[test]
    fn the_password_stays_out_of_debug_output_and_command_lines() {
        let session = crate::Session {
            sudo_password: Some(Password::new("pw")),
            ..crate::Session::default()
        };
        let shown = format!("{session:?}");
        assert!(!shown.contains("pw"), "{shown}");
        assert!(!sudo().wrap_with("true", true).contains("pw"));
        let Some(password) = &session.sudo_password else {
            panic!("no password");
        };
        assert_eq!(password.stdin().as_slice(), b"pw\n");
    }
}
