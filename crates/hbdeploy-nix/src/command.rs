//! Running a local command: stdout collected whole (callers parse it), stderr streamed line by
//! line to a sink and kept for error reports.

use std::ffi::OsStr;
use std::path::Path;
use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::Command;

use crate::NixError;

/// Receives each stderr line of a running nix command, as it arrives.
pub type OutputSink<'a> = &'a mut (dyn FnMut(&str) + Send);

/// How many trailing stderr lines an error report keeps.
pub const TAIL_LINES: usize = 20;

/// Upper bound on the stderr kept whole for attributing build errors to hosts.
const STDERR_CAP: usize = 4 << 20;

/// What a finished command left behind.
#[derive(Debug, Clone, Default)]
pub struct Output {
    /// Exit status 0.
    pub success: bool,
    /// The exit status as text, for messages.
    pub status: String,
    /// Everything it printed on stdout.
    pub stdout: String,
    /// Its stderr, up to [`STDERR_CAP`] bytes.
    pub stderr: String,
}

impl Output {
    /// The last [`TAIL_LINES`] lines of stderr.
    pub fn stderr_tail(&self) -> Vec<String> {
        let lines: Vec<&str> = self.stderr.lines().collect();
        let start = lines.len().saturating_sub(TAIL_LINES);
        lines[start..].iter().map(|l| (*l).to_owned()).collect()
    }
}

/// A command with stdin closed and the given arguments.
pub fn cmd<I, S>(program: &Path, args: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut command = Command::new(program);
    command.args(args).stdin(Stdio::null());
    command
}

/// Runs `command` to completion. `shown` is how the command is named in errors.
pub async fn run(
    mut command: Command,
    shown: &str,
    on_line: OutputSink<'_>,
) -> Result<Output, NixError> {
    command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = command.spawn().map_err(|source| NixError::Spawn {
        command: shown.to_owned(),
        source,
    })?;
    let io_error = |source| NixError::Io {
        command: shown.to_owned(),
        source,
    };
    let (Some(mut stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
        return Err(NixError::Unexpected {
            command: shown.to_owned(),
            detail: "its output pipes could not be opened".to_owned(),
        });
    };
    let read_stdout = async {
        let mut text = String::new();
        stdout.read_to_string(&mut text).await.map(|_| text)
    };
    let read_stderr = async {
        let mut kept = String::new();
        let mut lines = BufReader::new(stderr).lines();
        while let Some(line) = lines.next_line().await? {
            on_line(&line);
            if kept.len() < STDERR_CAP {
                kept.push_str(&line);
                kept.push('\n');
            }
        }
        Ok::<_, std::io::Error>(kept)
    };
    let (stdout, stderr) = tokio::try_join!(read_stdout, read_stderr).map_err(io_error)?;
    let status = child.wait().await.map_err(io_error)?;
    Ok(Output {
        success: status.success(),
        status: status.to_string(),
        stdout,
        stderr,
    })
}
