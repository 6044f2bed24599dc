//! The machine hbdeploy runs on, as a host of the fleet (`address = "local"`): the same command
//! lines a [`Connection`](crate::Connection) runs over SSH, run here by `/bin/sh -c`, with their
//! output streamed and kept the same way. Commands that need root go through the escalation
//! command (`sudo`) when hbdeploy does not run as root, with the run's sudo password on stdin
//! where `sudo` asks for one, exactly as over SSH (`escalate.rs`).
//!
//! Nothing here can be cut off: there is no connection to lose, so a [`Local`] is never closed.

use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

use crate::escalate::{Needs, Probe};
use crate::exec::Collector;
use crate::{CommandOutput, Escalation, Exit, Held, OutputLine, Session, SshError, Stream, Target};

/// The `address` that names the machine hbdeploy runs on.
pub const LOCAL_ADDRESS: &str = "local";

/// The shell every command line is given to, as sshd gives it to the login shell.
const SHELL: &str = "/bin/sh";

impl Target {
    /// Whether this target is the machine hbdeploy runs on (`address = "local"`, no jump host).
    pub fn is_local(&self) -> bool {
        self.address == LOCAL_ADDRESS && self.jump.is_none()
    }
}

/// The login name hbdeploy runs as here: `root` for user id 0, else the name `/etc/passwd`
/// gives the effective user id, else `$USER`.
pub fn local_user() -> String {
    let Some(uid) = effective_uid() else {
        return std::env::var("USER").unwrap_or_else(|_| "unknown".to_owned());
    };
    if uid == 0 {
        return "root".to_owned();
    }
    let named = std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|passwd| {
            passwd.lines().find_map(|line| {
                let mut fields = line.split(':');
                let name = fields.next()?;
                let id = fields.nth(1)?;
                (id.parse::<u32>().ok()? == uid).then(|| name.to_owned())
            })
        });
    named
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| uid.to_string())
}

/// The effective user id of this process, from `/proc/self/status`.
fn effective_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

/// The machine hbdeploy runs on, standing in for a connection to it.
#[derive(Debug)]
pub struct Local {
    target: Target,
    session: Session,
    /// Whether hbdeploy runs as root (then nothing is escalated).
    root: bool,
    escalation_probe: Probe,
}

impl Local {
    /// The machine hbdeploy runs on, as `target` (whose escalation command is used when hbdeploy
    /// is not root), with the run's credentials `session` (its sudo password).
    pub fn open(target: &Target, session: &Session) -> Local {
        Local {
            target: target.clone(),
            session: session.clone(),
            root: effective_uid() == Some(0),
            escalation_probe: Probe::default(),
        }
    }

    /// The host this stands for.
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// The escalation commands that need root go through; `None` when hbdeploy runs as root.
    fn escalation(&self) -> Option<Escalation> {
        if self.root {
            return None;
        }
        Some(
            self.target
                .escalation
                .clone()
                .unwrap_or_else(|| Escalation {
                    command: vec!["sudo".to_owned()],
                }),
        )
    }

    /// Runs `command` as hbdeploy's own user; otherwise as [`Connection::run`](crate::Connection::run).
    pub async fn run(
        &self,
        command: &str,
        on_line: impl FnMut(&OutputLine),
    ) -> Result<CommandOutput, SshError> {
        let child = self
            .spawn(command, false)
            .map_err(|e| self.failed(command, e))?;
        self.collect(command, child, on_line, true).await
    }

    /// Runs `command` as hbdeploy's own user with `stdin` as its standard input, then end of
    /// input; otherwise as [`Local::run`].
    pub async fn run_with_stdin(
        &self,
        command: &str,
        stdin: &[u8],
        on_line: impl FnMut(&OutputLine),
    ) -> Result<CommandOutput, SshError> {
        let child = self
            .spawn(command, true)
            .map_err(|e| self.failed(command, e))?;
        self.collect_fed(command, child, Some(stdin), on_line, true)
            .await
    }

    /// Runs `command` as root (through the escalation command unless hbdeploy is root).
    pub async fn run_root(
        &self,
        command: &str,
        on_line: impl FnMut(&OutputLine),
    ) -> Result<CommandOutput, SshError> {
        self.root_with(command, None, on_line, true).await
    }

    /// Like [`Local::run_root`], keeping only the output's last lines.
    pub async fn stream_root(
        &self,
        command: &str,
        on_line: impl FnMut(&OutputLine),
    ) -> Result<CommandOutput, SshError> {
        self.root_with(command, None, on_line, false).await
    }

    /// Runs `command` as root with `stdin` as its standard input (after the sudo password,
    /// where sudo wants one), then end of input.
    pub async fn run_root_with_stdin(
        &self,
        command: &str,
        stdin: &[u8],
        on_line: impl FnMut(&OutputLine),
    ) -> Result<CommandOutput, SshError> {
        self.root_with(command, Some(stdin), on_line, true).await
    }

    /// Starts `command` as root and returns its first line of stdout, keeping it running until
    /// released (see [`Held`]); `None` when it ended at once. A refused escalation is an
    /// [`SshError::Escalation`], as over SSH.
    pub async fn hold_root(&self, command: &str) -> Result<(String, Option<Held>), SshError> {
        if let Some(escalation) = self.escalation() {
            let check = self.run_root("true", |_| {}).await?;
            if !check.exit.success() {
                return Err(crate::escalate::refused(
                    &self.target.display(),
                    &escalation,
                    &check,
                ));
            }
        }
        let (mut child, line) = self.start_root(command).await?;
        let stdout = child.stdout.take();
        let stdin = child.stdin.take();
        let stderr = child.stderr.take();
        let (Some(stdout), Some(stderr)) = (stdout, stderr) else {
            return Ok((String::new(), None));
        };
        let mut reader = BufReader::new(stdout);
        let mut first = Vec::new();
        let read = reader.read_until(b'\n', &mut first).await;
        let text = String::from_utf8_lossy(&first).trim_end().to_owned();
        match (read, first.last(), stdin) {
            (Ok(_), Some(b'\n'), Some(stdin)) => {
                let holder = crate::hold::Holder {
                    child,
                    stdin,
                    stdout: reader.into_inner(),
                    stderr,
                };
                Ok((text, Some(Held::process(holder))))
            }
            (Err(source), ..) => Err(self.failed(&line, source)),
            _ => {
                let _ = child.wait().await;
                Ok((text, None))
            }
        }
    }

    async fn root_with(
        &self,
        command: &str,
        stdin: Option<&[u8]>,
        on_line: impl FnMut(&OutputLine),
        keep_stdout: bool,
    ) -> Result<CommandOutput, SshError> {
        let (child, line) = self.start_root(command).await?;
        self.collect_fed(&line, child, stdin, on_line, keep_stdout)
            .await
    }

    /// [`Local::collect`] of a started command, fed `stdin` (then its input closed; without
    /// `stdin`, closed at once) while its output is read: a command that answers as it reads
    /// never waits for a reader. It may end without reading its input; what it did is in its
    /// output.
    async fn collect_fed(
        &self,
        line: &str,
        mut child: Child,
        stdin: Option<&[u8]>,
        on_line: impl FnMut(&OutputLine),
        keep_stdout: bool,
    ) -> Result<CommandOutput, SshError> {
        let input = child.stdin.take();
        let feed = async {
            if let (Some(bytes), Some(mut input)) = (stdin, input) {
                let _ = input.write_all(bytes).await;
            }
        };
        let ((), output) = tokio::join!(feed, self.collect(line, child, on_line, keep_stdout));
        output
    }

    /// Starts `command` as root with stdin open and the password (when the escalation wants
    /// it) already written there. Returns the child and the command line run.
    async fn start_root(&self, command: &str) -> Result<(Child, String), SshError> {
        let Some(escalation) = self.escalation() else {
            let child = self
                .spawn(command, true)
                .map_err(|e| self.failed(command, e))?;
            return Ok((child, command.to_owned()));
        };
        let password = self.session.sudo_password.as_ref();
        let needs = self
            .escalation_probe
            .needs(password.is_some(), &escalation, |line| async move {
                self.run(&line, |_| {}).await
            })
            .await?;
        let line = escalation.wrap_with(command, needs == Needs::Password);
        let mut child = self.spawn(&line, true).map_err(|e| self.failed(&line, e))?;
        if let Some(secret) = password
            .map(crate::Password::stdin)
            .filter(|_| needs == Needs::Password)
            && let Some(input) = child.stdin.as_mut()
            && let Err(source) = input.write_all(secret.as_slice()).await
        {
            return Err(self.failed(&line, source));
        }
        Ok((child, line))
    }

    fn spawn(&self, line: &str, stdin: bool) -> std::io::Result<Child> {
        Command::new(SHELL)
            .arg("-c")
            .arg(line)
            .stdin(if stdin { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group: a Ctrl-C on hbdeploy's terminal is hbdeploy's to handle
            // (running activations finish), as it would be for a command on a remote host.
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
    }

    fn failed(&self, line: &str, source: std::io::Error) -> SshError {
        SshError::Local {
            target: self.target.display(),
            command: line.to_owned(),
            source,
        }
    }

    /// Reads a started command's output to its end (both streams as they come), then its exit.
    async fn collect(
        &self,
        line: &str,
        mut child: Child,
        on_line: impl FnMut(&OutputLine),
        keep_stdout: bool,
    ) -> Result<CommandOutput, SshError> {
        let mut collect = Collector::new(on_line, keep_stdout);
        let mut out = child.stdout.take();
        let mut err = child.stderr.take();
        let (mut out_buf, mut err_buf) = (vec![0u8; 32 << 10], vec![0u8; 32 << 10]);
        while out.is_some() || err.is_some() {
            tokio::select! {
                read = read_some(&mut out, &mut out_buf), if out.is_some() => match read {
                    Some(n) => collect.push(Stream::Stdout, &out_buf[..n]),
                    None => out = None,
                },
                read = read_some(&mut err, &mut err_buf), if err.is_some() => match read {
                    Some(n) => collect.push(Stream::Stderr, &err_buf[..n]),
                    None => err = None,
                },
            }
        }
        let status = child.wait().await.map_err(|e| self.failed(line, e))?;
        let exit = match (status.code(), status.signal()) {
            (Some(code), _) => Exit::Code(u32::try_from(code).unwrap_or(u32::MAX)),
            (None, Some(signal)) => Exit::Signal(signal_name(signal)),
            (None, None) => Exit::Unknown,
        };
        Ok(collect.finish(exit))
    }
}

/// Reads what is there of `stream`; `None` at its end (or when it broke).
async fn read_some<R: AsyncReadExt + Unpin>(
    stream: &mut Option<R>,
    buf: &mut [u8],
) -> Option<usize> {
    match stream.as_mut()?.read(buf).await {
        Ok(0) | Err(_) => None,
        Ok(n) => Some(n),
    }
}

/// The name of a signal as SSH reports it (`TERM`, `KILL`), or its number.
fn signal_name(signal: i32) -> String {
    match signal {
        1 => "HUP".to_owned(),
        2 => "INT".to_owned(),
        9 => "KILL".to_owned(),
        13 => "PIPE".to_owned(),
        15 => "TERM".to_owned(),
        n => n.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn here() -> Local {
        let target = Target {
            address: LOCAL_ADDRESS.to_owned(),
            port: 22,
            user: local_user(),
            identity_file: None,
            known_hosts: std::path::PathBuf::from("/dev/null"),
            pinned_keys: Vec::new(),
            accept_new: false,
            connect_timeout: std::time::Duration::from_secs(1),
            jump: None,
            escalation: None,
            keepalive: None,
            compress: false,
        };
        Local::open(&target, &Session::default())
    }

    #[tokio::test]
    async fn commands_run_here_with_both_streams_and_their_exit() {
        let local = here();
        assert!(local.target().is_local());
        let mut seen = Vec::new();
        let output = local
            .run("echo out; echo err >&2; printf tail; exit 3", |l| {
                seen.push((l.stream, l.text.clone()));
            })
            .await
            .unwrap();
        assert_eq!(output.exit, Exit::Code(3));
        assert_eq!(output.stdout, "out\ntail\n");
        assert!(
            seen.contains(&(Stream::Stderr, "err".to_owned())),
            "{seen:?}"
        );
        let killed = local.run("kill -TERM $$", |_| {}).await.unwrap();
        assert_eq!(killed.exit, Exit::Signal("TERM".to_owned()));
    }

    #[tokio::test]
    async fn stdin_reaches_a_root_command_and_a_held_command_ends_on_release() {
        let local = here();
        if !local.root {
            // Without root, these need sudo: the lab test of the local host covers that.
            return;
        }
        let output = local
            .run_root_with_stdin("wc -c", b"12345", |_| {})
            .await
            .unwrap();
        assert_eq!(output.stdout.trim(), "5");
        let dir = hbdeploy_files::Scratch::fresh("hbdeploy-local").unwrap();
        let done = dir.join("done");
        let script = format!("echo held; cat >/dev/null; touch {}", done.display());
        let (line, held) = local.hold_root(&script).await.unwrap();
        assert_eq!(line, "held");
        assert!(!done.exists(), "the held command ended before its release");
        held.unwrap().release().await;
        assert!(done.exists(), "releasing did not end the held command");
        let (line, held) = local.hold_root("printf gone").await.unwrap();
        assert_eq!((line.as_str(), held.is_none()), ("gone", true));
    }

    /// Input larger than a pipe holds, to a command that answers as it reads: fed while its
    /// output is read, it never waits for a reader (fed first, both sides would wait).
    #[tokio::test]
    async fn large_input_reaches_a_command_that_answers_as_it_reads() {
        let local = here();
        let input: Vec<u8> = (0..200_000u32)
            .flat_map(|i| format!("{i}\n").into_bytes())
            .collect();
        let run = local.run_with_stdin("cat", &input, |_| {});
        let output = tokio::time::timeout(std::time::Duration::from_secs(30), run)
            .await
            .expect("the command waited for a reader")
            .unwrap();
        assert_eq!(output.exit, Exit::Code(0));
        assert_eq!(output.stdout.as_bytes(), input.as_slice());
        if local.root {
            let run = local.run_root_with_stdin("cat", &input, |_| {});
            let output = tokio::time::timeout(std::time::Duration::from_secs(30), run)
                .await
                .expect("the root command waited for a reader")
                .unwrap();
            assert_eq!(output.stdout.len(), input.len());
        }
    }

    #[test]
    fn the_local_user_is_root_for_uid_zero() {
        if effective_uid() == Some(0) {
            assert_eq!(local_user(), "root");
        } else {
            assert_ne!(local_user(), "root");
        }
    }
}
