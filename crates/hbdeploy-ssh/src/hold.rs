//! A command that keeps running for as long as hbdeploy holds its channel open, e.g. the holder
//! of a lock on the host: it prints one line saying whether it got what it wanted, then waits for
//! its stdin to end. Closing the channel, or losing the connection, ends it.

use russh::ChannelMsg;
use russh::client::Msg;

use crate::{Connection, SshError};

/// A running command whose first line was read.
pub struct Held {
    channel: russh::Channel<Msg>,
}

impl std::fmt::Debug for Held {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Held").finish_non_exhaustive()
    }
}

impl Held {
    /// Ends the command: its stdin reaches end of file and the channel closes.
    pub async fn release(self) {
        let _ = self.channel.eof().await;
        let _ = self.channel.close().await;
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
                    return (text, Some(Held { channel }));
                }
            }
            ChannelMsg::ExitStatus { .. } | ChannelMsg::Eof | ChannelMsg::Close => break,
            _ => {}
        }
    }
    (String::from_utf8_lossy(&line).trim_end().to_owned(), None)
}
