//! `hbdeploy exec`: run one shell command on every selected host in parallel, over the same
//! connections and trust rules as a deployment, streaming each output line as it arrives.
//!
//! The command line is passed to the host's login shell as one string, as `ssh host COMMAND…`
//! does. A command that exits non-zero, a host that cannot be reached and a connection that
//! breaks are all per-host results, never an early return.

use std::num::NonZeroUsize;
use std::time::{Duration, Instant};

use hbdeploy_ssh::{Exit, OutputLine, SshError};

use crate::EventSender;
use crate::HostPlan;
use crate::fanout::each_host;
use crate::port::{Dial, Host, Reach};

/// A command for several hosts.
#[derive(Debug, Clone)]
pub struct ExecRequest {
    /// The run's credentials, for every connection.
    pub session: hbdeploy_ssh::Session,
    /// The selected hosts.
    pub hosts: Vec<HostPlan>,
    /// Hosts running the command at once.
    pub parallel: NonZeroUsize,
    /// The shell command line.
    pub command: String,
}

/// One line a host's command printed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecLine {
    /// The host.
    pub host: String,
    /// The line, and which stream it came from.
    pub line: OutputLine,
}

impl crate::event::Output for ExecLine {
    fn is_output(&self) -> bool {
        true
    }
}

/// Why a host could not run the command to its end.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// The host could not be reached; the command did not run.
    #[error("cannot reach the host; the command did not run")]
    Connect(#[source] SshError),
    /// The connection broke; the command may or may not have run to its end.
    #[error("the SSH connection failed while the command ran; it may not have finished")]
    Channel(#[source] SshError),
    /// The host's task ended abnormally (a bug).
    #[error("internal error: the host's task ended abnormally")]
    TaskLost,
}

impl hbdeploy_files::Hint for ExecError {
    /// Advice for the user, where there is one.
    fn hint(&self) -> Option<String> {
        match self {
            ExecError::Connect(err) | ExecError::Channel(err) => err.hint(),
            ExecError::TaskLost => None,
        }
    }
}

/// One host's result.
#[derive(Debug)]
pub struct ExecResult {
    /// The host.
    pub host: String,
    /// How the command ended, or why it could not run.
    pub outcome: Result<Exit, ExecError>,
    /// Time from connecting until the command ended.
    pub duration: Duration,
}

impl ExecResult {
    /// Whether the command ran and exited 0.
    pub fn succeeded(&self) -> bool {
        matches!(&self.outcome, Ok(exit) if exit.success())
    }
}

/// Runs the command on every host of `request`, at most `parallel` at once, sending each output
/// line to `lines` (the one event channel, so at most `OUTPUT_BACKLOG` lines wait for the UI)
/// as it arrives. One result per host, in order.
pub async fn exec(request: &ExecRequest, lines: EventSender<ExecLine>) -> Vec<ExecResult> {
    let command = request.command.clone();
    let results = each_host(request.hosts.clone(), request.parallel, |plan| {
        let lines = lines.clone();
        let command = command.clone();
        let session = request.session.clone();
        async move {
            let start = Instant::now();
            let outcome = run_on(&plan, &command, &lines, &session).await;
            ExecResult {
                host: plan.name,
                outcome,
                duration: start.elapsed(),
            }
        }
    })
    .await;
    results
        .into_iter()
        .map(|(plan, result)| {
            result.unwrap_or(ExecResult {
                host: plan.name,
                outcome: Err(ExecError::TaskLost),
                duration: Duration::ZERO,
            })
        })
        .collect()
}

async fn run_on(
    plan: &HostPlan,
    command: &str,
    lines: &EventSender<ExecLine>,
    session: &hbdeploy_ssh::Session,
) -> Result<Exit, ExecError> {
    let conn = Reach::with(session)
        .connect(&plan.target)
        .await
        .map_err(ExecError::Connect)?;
    let output = crate::remote::user_command(&conn, command, |line| {
        lines.send(ExecLine {
            host: plan.name.clone(),
            line: line.clone(),
        });
    })
    .await
    .map_err(ExecError::Channel);
    conn.close().await;
    Ok(output?.exit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_command_that_prints_without_end_keeps_the_ui_backlog_bounded() {
        let (lines, mut rx) = EventSender::<ExecLine>::channel();
        for n in 0..crate::OUTPUT_BACKLOG + 50 {
            lines.send(ExecLine {
                host: "h".to_owned(),
                line: hbdeploy_ssh::OutputLine {
                    stream: hbdeploy_ssh::Stream::Stdout,
                    text: n.to_string(),
                },
            });
        }
        drop(lines);
        let mut received = 0;
        while rx.recv().await.is_some() {
            received += 1;
        }
        assert_eq!(received, crate::OUTPUT_BACKLOG);
    }
}
