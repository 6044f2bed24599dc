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
    command: Command,
    shown: &str,
    on_line: OutputSink<'_>,
) -> Result<Output, NixError> {
    let (output, _) = run_watched(command, shown, on_line, None).await?;
    Ok(output)
}

/// Runs `command` to completion; a non-zero exit is [`NixError::failed`] with its output.
pub async fn run_ok(
    command: Command,
    shown: &str,
    on_line: OutputSink<'_>,
) -> Result<(), NixError> {
    let output = run(command, shown, on_line).await?;
    if output.success {
        Ok(())
    } else {
        Err(NixError::failed(shown, &output))
    }
}

/// How often a watched command's resident memory is read.
const WATCH_EVERY: std::time::Duration = std::time::Duration::from_millis(50);

/// Runs `command` to completion like [`run`]; with `memory_limit` (bytes), reads the process's
/// resident memory from `/proc` every [`WATCH_EVERY`] and kills it once it exceeds the limit.
/// The second value says whether it was killed for that; its output is then what it printed
/// before.
pub async fn run_watched(
    mut command: Command,
    shown: &str,
    on_line: OutputSink<'_>,
    memory_limit: Option<u64>,
) -> Result<(Output, bool), NixError> {
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
    let pid = child.id();
    let watch = async {
        let (Some(limit), Some(pid)) = (memory_limit, pid) else {
            return std::future::pending::<()>().await;
        };
        let mut tick = tokio::time::interval(WATCH_EVERY);
        loop {
            tick.tick().await;
            if resident_bytes(pid).is_some_and(|rss| rss > limit) {
                return;
            }
        }
    };
    let both = async { tokio::try_join!(read_stdout, read_stderr) };
    let (read, killed) = tokio::select! {
        read = both => (Some(read), false),
        () = watch => (None, true),
    };
    if killed {
        // Killing closes its pipes; what it printed so far is lost with the readers, which is
        // fine: the caller reports the budget, not nix's output.
        let _ = child.start_kill();
    }
    let (stdout, stderr) = match read {
        Some(read) => read.map_err(io_error)?,
        None => (String::new(), String::new()),
    };
    let status = child.wait().await.map_err(io_error)?;
    Ok((
        Output {
            success: status.success() && !killed,
            status: status.to_string(),
            stdout,
            stderr,
        },
        killed,
    ))
}

/// The resident memory of process `pid` in bytes (`VmRSS` of `/proc/PID/status`), if readable.
pub fn resident_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}
