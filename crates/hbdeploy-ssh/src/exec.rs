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
    /// What it printed on stdout, for callers that parse it: whole up to [`STDOUT_CAP`] bytes,
    /// and nothing after that (see [`CommandOutput::stdout_truncated`]), so that a command that
    /// prints without end (an activation's log) cannot grow the deployer's memory.
    pub stdout: String,
    /// Whether stdout went past [`STDOUT_CAP`] and the rest was not kept.
    pub stdout_truncated: bool,
    /// The last [`TAIL_LINES`] lines of both streams, in arrival order.
    pub tail: Vec<OutputLine>,
}

impl CommandOutput {
    /// The text of the last lines of both streams ([`CommandOutput::tail`]), for reports.
    pub fn tail_lines(&self) -> Vec<String> {
        self.tail.iter().map(|l| l.text.clone()).collect()
    }
}

/// How much of a command's stdout is kept for its caller to parse: far more than any reply of
/// hbdeploy's remote scripts (a list of store paths runs to a few hundred KiB).
pub const STDOUT_CAP: usize = 8 << 20;

/// The longest line passed on whole; a longer run without a newline is passed on in pieces of
/// this size, so that output without newlines cannot grow the deployer's memory either.
pub const LINE_CAP: usize = 64 << 10;

/// Splits a byte stream into lines, keeping an unfinished last line for the next chunk.
#[derive(Default)]
pub(crate) struct LineSplitter {
    pending: Vec<u8>,
}

impl LineSplitter {
    pub(crate) fn push(&mut self, bytes: &[u8], mut emit: impl FnMut(String)) {
        self.pending.extend_from_slice(bytes);
        while let Some(pos) = self.pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=pos).collect();
            emit(clean(&line));
        }
        while self.pending.len() >= LINE_CAP {
            let piece: Vec<u8> = self.pending.drain(..LINE_CAP).collect();
            emit(clean(&piece));
        }
    }

    pub(crate) fn finish(&mut self, mut emit: impl FnMut(String)) {
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
        Ok(read(channel, on_line, true).await)
    }

    /// Runs `command` as [`Connection::run`] does, with `stdin` as its standard input, then
    /// end-of-file: for input of any size, which a command line (at most 128 KiB for the one
    /// argument sshd hands the login shell) could not carry.
    pub async fn run_with_stdin(
        &self,
        command: &str,
        stdin: &[u8],
        on_line: impl FnMut(&OutputLine),
    ) -> Result<CommandOutput, SshError> {
        let channel = self.start(command).await?;
        Ok(fed(channel, stdin, on_line).await)
    }
}

/// Sends `stdin` to a started command, then end-of-file, while reading its output to its end
/// (as [`read`]): a command that answers as it reads never waits for a reader. A command that
/// ends without reading all of its input is no error here: what it did is in its output.
pub(crate) async fn fed(
    channel: russh::Channel<russh::client::Msg>,
    stdin: &[u8],
    on_line: impl FnMut(&OutputLine),
) -> CommandOutput {
    use tokio::io::AsyncWriteExt;
    let mut writer = channel.make_writer();
    let feed = async {
        if writer.write_all(stdin).await.is_ok() {
            let _ = writer.shutdown().await;
        }
    };
    let ((), output) = tokio::join!(feed, read(channel, on_line, true));
    output
}

/// Reads a started command's output to its end, passing each line to `on_line`; with
/// `keep_stdout` false only the tail is kept (for output that is streamed, not parsed).
pub(crate) async fn read(
    mut channel: russh::Channel<russh::client::Msg>,
    on_line: impl FnMut(&OutputLine),
    keep_stdout: bool,
) -> CommandOutput {
    let mut collect = Collector::new(on_line, keep_stdout);
    let mut exit = Exit::Unknown;
    while let Some(msg) = channel.wait().await {
        match msg {
            ChannelMsg::Data { data } => collect.push(Stream::Stdout, &data),
            ChannelMsg::ExtendedData { data, .. } => collect.push(Stream::Stderr, &data),
            ChannelMsg::ExitStatus { exit_status } => exit = Exit::Code(exit_status),
            ChannelMsg::ExitSignal { signal_name, .. } => {
                exit = Exit::Signal(format!("{signal_name:?}"));
            }
            _ => {}
        }
    }
    collect.finish(exit)
}

/// A running command's output as it arrives, from either stream in any order: split into lines,
/// each passed to `on_line`, and kept within bounds for the [`CommandOutput`].
pub(crate) struct Collector<F> {
    on_line: F,
    kept: Kept,
    keep_stdout: bool,
    out_lines: LineSplitter,
    err_lines: LineSplitter,
}

impl<F: FnMut(&OutputLine)> Collector<F> {
    /// A collector passing lines to `on_line`; with `keep_stdout` false only the tail is kept.
    pub(crate) fn new(on_line: F, keep_stdout: bool) -> Self {
        Collector {
            on_line,
            kept: Kept {
                truncated: !keep_stdout,
                ..Kept::default()
            },
            keep_stdout,
            out_lines: LineSplitter::default(),
            err_lines: LineSplitter::default(),
        }
    }

    /// Takes the next bytes of `stream`.
    pub(crate) fn push(&mut self, stream: Stream, bytes: &[u8]) {
        let Collector {
            on_line,
            kept,
            out_lines,
            err_lines,
            ..
        } = self;
        let lines = match stream {
            Stream::Stdout => out_lines,
            Stream::Stderr => err_lines,
        };
        lines.push(bytes, |text| record(on_line, kept, stream, text));
    }

    /// Takes a whole line of `stream` (split elsewhere).
    pub(crate) fn line(&mut self, stream: Stream, text: String) {
        record(&mut self.on_line, &mut self.kept, stream, text);
    }

    /// Ends both streams (an unfinished last line counts) with the command's `exit`.
    pub(crate) fn finish(mut self, exit: Exit) -> CommandOutput {
        let (on_line, kept) = (&mut self.on_line, &mut self.kept);
        self.out_lines
            .finish(|text| record(on_line, kept, Stream::Stdout, text));
        self.err_lines
            .finish(|text| record(on_line, kept, Stream::Stderr, text));
        CommandOutput {
            exit,
            stdout: self.kept.stdout,
            stdout_truncated: self.kept.truncated && self.keep_stdout,
            tail: self.kept.tail.into_iter().collect(),
        }
    }
}

fn record(on_line: &mut impl FnMut(&OutputLine), kept: &mut Kept, stream: Stream, text: String) {
    let line = OutputLine { stream, text };
    on_line(&line);
    kept.push(line);
}

/// What is kept of a command's output while it runs: stdout up to [`STDOUT_CAP`], and the last
/// [`TAIL_LINES`] lines of both streams. Bounded whatever the command prints.
#[derive(Default)]
struct Kept {
    stdout: String,
    truncated: bool,
    tail: VecDeque<OutputLine>,
}

impl Kept {
    fn push(&mut self, line: OutputLine) {
        if line.stream == Stream::Stdout && !self.truncated {
            if self.stdout.len() + line.text.len() < STDOUT_CAP {
                self.stdout.push_str(&line.text);
                self.stdout.push('\n');
            } else {
                self.truncated = true;
            }
        }
        if self.tail.len() == TAIL_LINES {
            self.tail.pop_front();
        }
        self.tail.push_back(line);
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
    fn a_line_without_end_is_passed_on_in_bounded_pieces() {
        let long = "x".repeat(LINE_CAP * 3 + 5);
        let lines = split(&[&long, "y\nz"]);
        assert_eq!(
            lines.iter().map(String::len).collect::<Vec<_>>(),
            [LINE_CAP, LINE_CAP, LINE_CAP, 6, 1]
        );
        assert!(lines[3].ends_with("xy"));
    }

    #[test]
    fn kept_output_is_bounded_however_much_is_printed() {
        let mut kept = Kept::default();
        let text = "o".repeat(1000);
        for i in 0..20_000 {
            let stream = if i % 2 == 0 {
                Stream::Stdout
            } else {
                Stream::Stderr
            };
            kept.push(OutputLine {
                stream,
                text: text.clone(),
            });
        }
        assert!(kept.truncated);
        assert!(kept.stdout.len() < STDOUT_CAP);
        assert!(kept.stdout.len() > STDOUT_CAP - 2000);
        assert_eq!(kept.tail.len(), TAIL_LINES);

        let mut small = Kept::default();
        small.push(OutputLine {
            stream: Stream::Stdout,
            text: "/nix/store/x".to_owned(),
        });
        assert_eq!(
            (small.stdout.as_str(), small.truncated),
            ("/nix/store/x\n", false)
        );
    }

    #[test]
    fn exit_display_and_success() {
        assert!(Exit::Code(0).success());
        assert!(!Exit::Code(1).success());
        assert!(!Exit::Unknown.success());
        assert_eq!(Exit::Code(3).to_string(), "exit code 3");
    }
}
