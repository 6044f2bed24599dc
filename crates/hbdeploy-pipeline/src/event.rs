//! The events a deployment emits while it runs. One closed enum, sent over an unbounded channel
//! so that a slow UI never slows a deployment down; the run is over when the channel closes.

use tokio::sync::mpsc::UnboundedSender;

use crate::report::{HostReport, Outcome};

/// The stages a host goes through, in order. One name per concept everywhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Stage {
    /// Evaluating the host's configuration (shared: one `nix eval`).
    Evaluate,
    /// Building its system (shared: one `nix build`).
    Build,
    /// Opening the SSH connection.
    Connect,
    /// Copying the closure with `nix copy`.
    Copy,
    /// Setting the profile and running `switch-to-configuration`.
    Activate,
    /// Running the host's health checks.
    Check,
}

impl Stage {
    /// The stage's name in progress lines and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Evaluate => "evaluate",
            Stage::Build => "build",
            Stage::Connect => "connect",
            Stage::Copy => "copy",
            Stage::Activate => "activate",
            Stage::Check => "check",
        }
    }
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Something that happened during a deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A host entered a stage.
    StageStarted {
        /// The host.
        host: String,
        /// The stage.
        stage: Stage,
    },
    /// A line of output: of the shared nix commands (`host` is `None`) or of one host's.
    Output {
        /// The host, or `None` for the shared evaluation and build.
        host: Option<String>,
        /// The stage that printed it.
        stage: Stage,
        /// The line.
        line: String,
    },
    /// A short note about a host's progress, e.g. how many paths were copied.
    Note {
        /// The host.
        host: String,
        /// The note.
        text: String,
    },
    /// A host is done, one way or another; the full result is in the [`crate::Report`].
    HostFinished {
        /// The host.
        host: String,
        /// Whether it succeeded.
        succeeded: bool,
        /// The last stage it entered.
        stage: Stage,
        /// One line: what happened.
        summary: String,
    },
}

/// Where a deployment sends its events. Sending never fails the deployment: a UI that went away
/// only means nobody is watching.
#[derive(Debug, Clone)]
pub struct EventSender(Option<UnboundedSender<Event>>);

impl EventSender {
    /// Sends events into `tx`.
    pub fn new(tx: UnboundedSender<Event>) -> EventSender {
        EventSender(Some(tx))
    }

    /// Drops every event.
    pub fn none() -> EventSender {
        EventSender(None)
    }

    pub(crate) fn send(&self, event: Event) {
        if let Some(tx) = &self.0 {
            let _ = tx.send(event);
        }
    }

    pub(crate) fn finished(&self, report: &HostReport) {
        let summary = match &report.outcome {
            Outcome::Succeeded => "done".to_owned(),
            Outcome::Unchanged => "unchanged".to_owned(),
            Outcome::Skipped => "skipped: an earlier wave failed".to_owned(),
            Outcome::Interrupted => "interrupted".to_owned(),
            Outcome::Failed(error) => error.to_string(),
        };
        self.send(Event::HostFinished {
            host: report.host.clone(),
            succeeded: report.succeeded(),
            stage: report.stage,
            summary,
        });
    }

    pub(crate) fn stage(&self, host: &str, stage: Stage) {
        self.send(Event::StageStarted {
            host: host.to_owned(),
            stage,
        });
    }

    pub(crate) fn output(&self, host: Option<&str>, stage: Stage, line: &str) {
        self.send(Event::Output {
            host: host.map(str::to_owned),
            stage,
            line: line.to_owned(),
        });
    }

    pub(crate) fn note(&self, host: &str, text: String) {
        self.send(Event::Note {
            host: host.to_owned(),
            text,
        });
    }
}
