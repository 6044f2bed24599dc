//! A command that keeps running for as long as hbdeploy holds its channel open, e.g. the holder
//! of a lock on the host: it prints one line saying whether it got what it wanted, then waits for
//! its stdin to end. Closing the channel (or the process's stdin, for the machine hbdeploy runs
//! on), or losing the connection, ends it.

use russh::ChannelMsg;
use russh::client::Msg;

use std::time::Duration;

use tokio::process::{Child, ChildStdin, ChildStdout};

use crate::{Connection, SshError};

/// How long a released holder may take to end before it is killed.
const RELEASE_LIMIT: Duration = Duration::from_secs(10);

/// A running command whose first line was read.
pub struct Held {
    holding: Holding,
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
        Held {
            holding: Holding::Process(Box::new(holder)),
        }
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
                    let holding = Holding::Channel(channel);
                    return (text, Some(Held { holding }));
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
    pub(crate) _stdout: ChildStdout,
}

impl Holder {
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
