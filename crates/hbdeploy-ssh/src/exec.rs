//! Running a command on a channel of an open connection, with its output streamed line by line
//! and the last lines kept for reports.

use std::collections::VecDeque;

use russh::ChannelMsg;

use crate::{Connection, SshError};

/// How many trailing output lines a [`CommandOutput`] keeps.
pub const TAIL_LINES: usize = 20;

/// Which stream a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// One line of a remote command's output, without its line ending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputLine {
    /// Where it came from.
    pub stream: Stream,
    /// The text (invalid UTF-8 replaced).
    pub text: String,
}

/// How a remote command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exit {
    /// It exited with this code.
    Code(u32),
    /// It was killed by this signal.
    Signal(String),
    /// The channel closed without an exit status (e.g. the server dropped the session).
    Unknown,
}

impl Exit {
    /// True for exit code 0.
    pub fn success(&self) -> bool {
        matches!(self, Exit::Code(0))
    }
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Exit::Code(code) => write!(f, "exit code {code}"),
            Exit::Signal(signal) => write!(f, "killed by signal {signal}"),
            Exit::Unknown => write!(f, "no exit status (the session was closed)"),
        }
    }
}

/// What a finished remote command left behind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandOutput {
    /// How it ended.
    pub exit: Exit,
    /// Everything it printed on stdout (kept whole: callers parse it).
    pub stdout: String,
    /// The last [`TAIL_LINES`] lines of both streams, in arrival order.
    pub tail: Vec<OutputLine>,
}

/// Splits a byte stream into lines, keeping an unfinished last line for the next chunk.
#[derive(Default)]
struct LineSplitter {
    pending: Vec<u8>,
}

impl LineSplitter {
    fn push(&mut self, bytes: &[u8], mut emit: impl FnMut(String)) {
        self.pending.extend_from_slice(bytes);
        while let Some(pos) = self.pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=pos).collect();
            emit(clean(&line));
        }
    }

    fn finish(&mut self, mut emit: impl FnMut(String)) {
        if !self.pending.is_empty() {
            let line = std::mem::take(&mut self.pending);
            emit(clean(&line));
        }
    }
}

fn clean(line: &[u8]) -> String {
    String::from_utf8_lossy(line)
        .trim_end_matches(['\n', '\r'])
        .to_owned()
}

impl Connection {
    /// Opens a session channel and starts `command` on it.
    pub(crate) async fn start(
        &self,
        command: &str,
    ) -> Result<russh::Channel<russh::client::Msg>, SshError> {
        let broken = |source: russh::Error| SshError::Channel {
            target: self.target.display(),
            command: command.to_owned(),
            source: Some(source),
        };
        let channel = self.handle.channel_open_session().await.map_err(broken)?;
        channel.exec(true, command).await.map_err(broken)?;
        Ok(channel)
    }

    /// Runs `command` (a shell command line) on a new channel of this connection. Each output
    /// line is passed to `on_line` as it arrives. A non-zero exit is not an error: it is in the
    /// returned [`CommandOutput`]; errors are for channels that could not be used at all.
    pub async fn run(
        &self,
        command: &str,
        on_line: impl FnMut(&OutputLine),
    ) -> Result<CommandOutput, SshError> {
        let channel = self.start(command).await?;
        Ok(read(channel, on_line).await)
    }
}

/// Reads a started command's output to its end, passing each line to `on_line`.
pub(crate) async fn read(
    mut channel: russh::Channel<russh::client::Msg>,
    mut on_line: impl FnMut(&OutputLine),
) -> CommandOutput {
    let mut stdout = String::new();
    let mut tail: VecDeque<OutputLine> = VecDeque::with_capacity(TAIL_LINES);
    let mut out_lines = LineSplitter::default();
    let mut err_lines = LineSplitter::default();
    let mut exit = Exit::Unknown;
    let mut record = |stream: Stream, text: String, stdout: &mut String| {
        if stream == Stream::Stdout {
            stdout.push_str(&text);
            stdout.push('\n');
        }
        let line = OutputLine { stream, text };
        on_line(&line);
        if tail.len() == TAIL_LINES {
            tail.pop_front();
        }
        tail.push_back(line);
    };
    while let Some(msg) = channel.wait().await {
        match msg {
            ChannelMsg::Data { data } => {
                out_lines.push(&data, |l| record(Stream::Stdout, l, &mut stdout));
            }
            ChannelMsg::ExtendedData { data, .. } => {
                err_lines.push(&data, |l| record(Stream::Stderr, l, &mut stdout));
            }
            ChannelMsg::ExitStatus { exit_status } => exit = Exit::Code(exit_status),
            ChannelMsg::ExitSignal { signal_name, .. } => {
                exit = Exit::Signal(format!("{signal_name:?}"));
            }
            _ => {}
        }
    }
    out_lines.finish(|l| record(Stream::Stdout, l, &mut stdout));
    err_lines.finish(|l| record(Stream::Stderr, l, &mut stdout));
    CommandOutput {
        exit,
        stdout,
        tail: tail.into_iter().collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(chunks: &[&str]) -> Vec<String> {
        let mut splitter = LineSplitter::default();
        let mut lines = Vec::new();
        for chunk in chunks {
            splitter.push(chunk.as_bytes(), |l| lines.push(l));
        }
        splitter.finish(|l| lines.push(l));
        lines
    }

    #[test]
    fn lines_split_across_chunks_are_joined() {
        assert_eq!(split(&["ab", "c\nde", "f\r\n", "g"]), ["abc", "def", "g"]);
    }

    #[test]
    fn empty_lines_are_kept_and_no_phantom_last_line() {
        assert_eq!(split(&["\n\nx\n"]), ["", "", "x"]);
        assert!(split(&[]).is_empty());
    }

    #[test]
    fn exit_display_and_success() {
        assert!(Exit::Code(0).success());
        assert!(!Exit::Code(1).success());
        assert!(!Exit::Unknown.success());
        assert_eq!(Exit::Code(3).to_string(), "exit code 3");
    }
}
