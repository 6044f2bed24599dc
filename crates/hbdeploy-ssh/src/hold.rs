//! A command that keeps running for as long as hbdeploy holds its channel open, e.g. the holder
//! of a lock on the host: it prints one line saying whether it got what it wanted, then waits for
//! its stdin to end. Closing the channel (or the process's stdin, for the machine hbdeploy runs
//! on), or losing the connection, ends it.
//!
//! A holder may also serve requests while it holds ([`Held::ask`]): each is a line `ask NONCE
//! CLEN ILEN` on its stdin, then CLEN bytes of a shell command line (its last line `# end
//! NONCE`, so that one cut short is never run) and ILEN bytes of that command's input. It runs
//! the command (with that input, else none) and, once it has ended, prints
//! `hbdeploy-asked-NONCE EXIT` on a line of its own on stdout and on stderr: each stream is in
//! order, so once both markers have come, all of the command's output has. A request costs no
//! channel and no login shell: the lock's holder runs the steps that follow it.

use russh::ChannelMsg;
use russh::client::Msg;

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, ChildStderr, ChildStdin, ChildStdout};

use crate::exec::{Collector, LineSplitter};
use crate::{CommandOutput, Connection, Exit, OutputLine, SshError, Stream};

/// How long a released holder may take to end before it is killed.
const RELEASE_LIMIT: Duration = Duration::from_secs(10);

/// A running command whose first line was read.
pub struct Held {
    holding: Holding,
    /// Told apart from anything a command prints: the start of every answer's marker.
    seed: u64,
    /// Requests sent so far (each marker ends with its number).
    asked: u64,
    /// A request's answer was not read to its end (its reader gave up, or the holder ended):
    /// what comes next could be its rest, so no further request is sent.
    spoilt: bool,
}

/// What keeps a held command running: its channel, or (on the machine hbdeploy runs on) its
/// process and the write end of its stdin.
enum Holding {
    Channel(russh::Channel<Msg>),
    Process(Box<Holder>),
}

impl std::fmt::Debug for Held {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Held").finish_non_exhaustive()
    }
}

impl Held {
    /// Ends the command: its stdin reaches end of file and the channel closes.
    pub async fn release(self) {
        match self.holding {
            Holding::Channel(channel) => {
                let _ = channel.eof().await;
                let _ = channel.close().await;
            }
            Holding::Process(holder) => holder.release().await,
        }
    }

    pub(crate) fn process(holder: Holder) -> Held {
        Held::new(Holding::Process(Box::new(holder)))
    }

    fn new(holding: Holding) -> Held {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        Held {
            holding,
            seed: (nanos as u64) ^ (u64::from(std::process::id()) << 32),
            asked: 0,
            spoilt: false,
        }
    }

    /// Whether a request may be sent ([`Held::ask`]): none was left unfinished.
    pub fn can_ask(&self) -> bool {
        !self.spoilt
    }

    /// Runs `command` (a shell command line) in the held command, which must serve requests
    /// (see the module's documentation), with `stdin` as its input; each output line goes to
    /// `on_line` as it arrives. No new channel: it runs as the holder does (as root, for the
    /// lock). The answer is a [`CommandOutput`] like [`Connection::run`]'s (with `keep_stdout`
    /// false, only its tail); when the holder ends before answering (the connection was lost),
    /// its exit is [`Exit::Unknown`] and this holder takes no further request
    /// ([`Held::can_ask`]). Dropped before its answer is complete, it leaves the holder unable
    /// to take one too.
    pub async fn ask(
        &mut self,
        command: &str,
        stdin: &[u8],
        keep_stdout: bool,
        on_line: impl FnMut(&OutputLine),
    ) -> Result<CommandOutput, SshError> {
        if self.spoilt {
            return Err(SshError::Unanswered {
                command: command.to_owned(),
            });
        }
        self.asked += 1;
        let nonce = format!("{:016x}{}", self.seed, self.asked);
        let marker = format!("hbdeploy-asked-{nonce}");
        // The holder runs the command only when it came whole: up to its `# end` line.
        let whole = format!("{command}\n# end {nonce}");
        let mut request = format!("ask {nonce} {} {}\n", whole.len(), stdin.len()).into_bytes();
        request.extend_from_slice(whole.as_bytes());
        request.extend_from_slice(stdin);
        let mut answer = Answer::new(&marker, Collector::new(on_line, keep_stdout));
        // Unset only once the answer is complete: a caller that gives up drops this future.
        self.spoilt = true;
        let complete = match &mut self.holding {
            Holding::Channel(channel) => ask_channel(channel, &request, &mut answer).await,
            Holding::Process(holder) => holder.ask(&request, &mut answer).await,
        };
        self.spoilt = !complete;
        Ok(answer.finish())
    }
}

/// Sends `request` on the holder's channel while reading the answer; whether it came whole.
async fn ask_channel<F: FnMut(&OutputLine)>(
    channel: &mut russh::Channel<Msg>,
    request: &[u8],
    answer: &mut Answer<'_, F>,
) -> bool {
    let mut writer = channel.make_writer();
    let send = async {
        let _ = writer.write_all(request).await;
        let _ = writer.flush().await;
    };
    let read = async {
        while !answer.complete() {
            match channel.wait().await {
                Some(ChannelMsg::Data { data }) => answer.push(Stream::Stdout, &data),
                Some(ChannelMsg::ExtendedData { data, .. }) => answer.push(Stream::Stderr, &data),
                Some(ChannelMsg::ExitStatus { .. } | ChannelMsg::Eof | ChannelMsg::Close)
                | None => return false,
                Some(_) => {}
            }
        }
        true
    };
    let ((), complete) = tokio::join!(send, read);
    complete
}

/// A request's answer as it arrives: the command's lines, up to the marker on each stream. The
/// holder prints a newline before each marker (the command's output may not end with one): an
/// empty line right before a marker is that newline, not the command's.
struct Answer<'m, F> {
    marker: &'m str,
    collect: Collector<F>,
    streams: [AnswerStream; 2],
}

#[derive(Default)]
struct AnswerStream {
    lines: LineSplitter,
    /// An empty line not yet passed on: the marker's own newline if the marker follows.
    empty: bool,
    /// The marker came: the exit it says.
    ended: Option<Exit>,
}

impl<'m, F: FnMut(&OutputLine)> Answer<'m, F> {
    fn new(marker: &'m str, collect: Collector<F>) -> Self {
        Answer {
            marker,
            collect,
            streams: [AnswerStream::default(), AnswerStream::default()],
        }
    }

    fn complete(&self) -> bool {
        self.streams.iter().all(|s| s.ended.is_some())
    }

    fn push(&mut self, stream: Stream, bytes: &[u8]) {
        let index = usize::from(stream == Stream::Stderr);
        let Answer {
            marker,
            collect,
            streams,
        } = self;
        let state = &mut streams[index];
        if state.ended.is_some() {
            return;
        }
        let AnswerStream {
            lines,
            empty,
            ended,
        } = state;
        lines.push(bytes, |text| {
            if ended.is_some() {
                return;
            }
            if let Some(rest) = text.strip_prefix(*marker).and_then(|r| r.strip_prefix(' ')) {
                *ended = Some(rest.trim().parse().map_or(Exit::Unknown, Exit::Code));
                *empty = false;
                return;
            }
            if std::mem::take(empty) {
                collect.line(stream, String::new());
            }
            if text.is_empty() {
                *empty = true;
            } else {
                collect.line(stream, text);
            }
        });
    }

    fn finish(self) -> CommandOutput {
        let Answer {
            mut collect,
            streams,
            ..
        } = self;
        let [out, err] = streams;
        for (stream, state) in [(Stream::Stdout, &out), (Stream::Stderr, &err)] {
            if state.empty && state.ended.is_none() {
                collect.line(stream, String::new());
            }
        }
        let exit = out.ended.unwrap_or(Exit::Unknown);
        collect.finish(exit)
    }
}

impl Connection {
    /// Starts `command` and returns its first line of stdout, with the channel kept open when the
    /// command is still running then. A command that exits without printing gives an empty line.
    pub async fn hold(&self, command: &str) -> Result<(String, Option<Held>), SshError> {
        let channel = self.start(command).await?;
        Ok(first_line(channel).await)
    }
}

/// Reads a started command's first line of stdout; the channel is kept when it is still open.
pub(crate) async fn first_line(mut channel: russh::Channel<Msg>) -> (String, Option<Held>) {
    let mut line = Vec::new();
    while let Some(msg) = channel.wait().await {
        match msg {
            ChannelMsg::Data { data } => {
                line.extend_from_slice(&data);
                if let Some(end) = line.iter().position(|&b| b == b'\n') {
                    line.truncate(end);
                    let text = String::from_utf8_lossy(&line).into_owned();
                    return (text, Some(Held::new(Holding::Channel(channel))));
                }
            }
            ChannelMsg::ExitStatus { .. } | ChannelMsg::Eof | ChannelMsg::Close => break,
            _ => {}
        }
    }
    (String::from_utf8_lossy(&line).trim_end().to_owned(), None)
}

/// A held command on this machine: its process, and its stdin, whose end releases it.
pub(crate) struct Holder {
    pub(crate) child: Child,
    pub(crate) stdin: ChildStdin,
    pub(crate) stdout: ChildStdout,
    pub(crate) stderr: ChildStderr,
}

impl Holder {
    /// Sends `request` to the held process while reading the answer; whether it came whole.
    async fn ask<F: FnMut(&OutputLine)>(
        &mut self,
        request: &[u8],
        answer: &mut Answer<'_, F>,
    ) -> bool {
        let Holder {
            stdin,
            stdout,
            stderr,
            ..
        } = self;
        let send = async {
            let _ = stdin.write_all(request).await;
            let _ = stdin.flush().await;
        };
        let read = async {
            let (mut out_buf, mut err_buf) = (vec![0u8; 32 << 10], vec![0u8; 32 << 10]);
            while !answer.complete() {
                tokio::select! {
                    read = stdout.read(&mut out_buf) => match read {
                        Ok(0) | Err(_) => return false,
                        Ok(n) => answer.push(Stream::Stdout, &out_buf[..n]),
                    },
                    read = stderr.read(&mut err_buf) => match read {
                        Ok(0) | Err(_) => return false,
                        Ok(n) => answer.push(Stream::Stderr, &err_buf[..n]),
                    },
                }
            }
            true
        };
        let ((), complete) = tokio::join!(send, read);
        complete
    }

    /// Ends the held command's input and waits (briefly) for it to end; kills it after that.
    pub(crate) async fn release(mut self) {
        drop(self.stdin);
        if tokio::time::timeout(RELEASE_LIMIT, self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}
