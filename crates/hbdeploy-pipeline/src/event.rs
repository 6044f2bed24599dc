//! The events a deployment emits while it runs. One closed enum, sent over an unbounded channel
//! so that a slow UI never slows a deployment down; the run is over when the channel closes.
//! Only lines of output can pile up without end (an activation may print hundreds of MiB), so
//! at most [`OUTPUT_BACKLOG`] of them wait for the UI at a time: further lines are not shown
//! (their tail is in the report all the same), and memory stays flat however much is printed.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};

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
    /// Rebooting it and waiting for it to come back (`reboot`, `apply --reboot`).
    Reboot,
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
            Stage::Reboot => "reboot",
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

/// How many lines of output may wait for the UI at once.
pub const OUTPUT_BACKLOG: usize = 4096;

/// Where a deployment sends its events. Sending never fails the deployment: a UI that went away
/// only means nobody is watching.
#[derive(Debug, Clone)]
pub struct EventSender(Option<(UnboundedSender<Event>, Arc<AtomicUsize>)>);

/// Where the UI receives a deployment's events.
#[derive(Debug)]
pub struct EventReceiver {
    rx: UnboundedReceiver<Event>,
    /// Lines of output sent and not received yet.
    waiting: Arc<AtomicUsize>,
}

impl EventReceiver {
    /// The next event; `None` once every sender is gone and everything sent was received.
    pub async fn recv(&mut self) -> Option<Event> {
        let event = self.rx.recv().await;
        if let Some(Event::Output { .. }) = event {
            self.waiting.fetch_sub(1, Ordering::Relaxed);
        }
        event
    }
}

impl EventSender {
    /// A connected pair.
    pub fn channel() -> (EventSender, EventReceiver) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let waiting = Arc::new(AtomicUsize::new(0));
        (
            EventSender(Some((tx, Arc::clone(&waiting)))),
            EventReceiver { rx, waiting },
        )
    }

    /// Drops every event.
    pub fn none() -> EventSender {
        EventSender(None)
    }

    pub(crate) fn send(&self, event: Event) {
        if let Some((tx, waiting)) = &self.0 {
            if let Event::Output { .. } = event {
                // Counted before it is sent, so the receiver never counts below zero.
                if waiting.fetch_add(1, Ordering::Relaxed) >= OUTPUT_BACKLOG {
                    waiting.fetch_sub(1, Ordering::Relaxed);
                    return;
                }
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn output_waiting_for_the_ui_is_bounded_and_other_events_are_never_dropped() {
        let (events, mut rx) = EventSender::channel();
        for n in 0..OUTPUT_BACKLOG + 100 {
            events.output(Some("h"), Stage::Activate, &n.to_string());
        }
        events.note("h", "still here".to_owned());
        drop(events);
        let mut lines = 0;
        let mut notes = 0;
        while let Some(event) = rx.recv().await {
            match event {
                Event::Output { .. } => lines += 1,
                Event::Note { .. } => notes += 1,
                _ => {}
            }
        }
        assert_eq!((lines, notes), (OUTPUT_BACKLOG, 1));
        // Once received, lines flow again.
        let (events, mut rx) = EventSender::channel();
        for _ in 0..3 {
            events.output(None, Stage::Build, "x");
            assert!(matches!(rx.recv().await, Some(Event::Output { .. })));
        }
    }
}
