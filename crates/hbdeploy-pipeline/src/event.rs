//! The events a command emits while it runs, and the one channel every command sends them over
//! ([`EventSender`]): unbounded, so that a slow UI never slows a run down, and the run is over
//! when the channel closes. Each command has one closed enum of events: [`Event`] for the
//! commands that deploy, read or change hosts, `InstallEvent` for `install`, `ExecLine` for
//! `exec`. Only lines of output can pile up without end (an activation may print hundreds of
//! MiB), so at most [`OUTPUT_BACKLOG`] of them wait for the UI at a time, whatever the enum:
//! further lines are not shown (their tail is in the report all the same), and memory stays flat
//! however much is printed.

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

/// What the channel needs to know of an event: whether it is a line of output (which may be
/// dropped once [`OUTPUT_BACKLOG`] lines wait) or something that is always delivered.
pub trait Output {
    /// Whether this event is a line of output.
    fn is_output(&self) -> bool;
}

impl Output for Event {
    fn is_output(&self) -> bool {
        matches!(self, Event::Output { .. })
    }
}

/// Where a command sends its events. Sending never fails the command: a UI that went away only
/// means nobody is watching.
#[derive(Debug)]
pub struct EventSender<E = Event>(Option<(UnboundedSender<E>, Arc<AtomicUsize>)>);

impl<E> Clone for EventSender<E> {
    fn clone(&self) -> Self {
        EventSender(self.0.clone())
    }
}

/// Where the UI receives a command's events.
#[derive(Debug)]
pub struct EventReceiver<E = Event> {
    rx: UnboundedReceiver<E>,
    /// Lines of output sent and not received yet.
    waiting: Arc<AtomicUsize>,
}

impl<E: Output> EventReceiver<E> {
    /// The next event; `None` once every sender is gone and everything sent was received.
    pub async fn recv(&mut self) -> Option<E> {
        let event = self.rx.recv().await;
        if event.as_ref().is_some_and(Output::is_output) {
            self.waiting.fetch_sub(1, Ordering::Relaxed);
        }
        event
    }
}

impl<E: Output> EventSender<E> {
    /// A connected pair.
    pub fn channel() -> (EventSender<E>, EventReceiver<E>) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let waiting = Arc::new(AtomicUsize::new(0));
        (
            EventSender(Some((tx, Arc::clone(&waiting)))),
            EventReceiver { rx, waiting },
        )
    }

    /// Drops every event.
    pub fn none() -> EventSender<E> {
        EventSender(None)
    }

    pub(crate) fn send(&self, event: E) {
        if let Some((tx, waiting)) = &self.0 {
            if event.is_output() {
                // Counted before it is sent, so the receiver never counts below zero.
                if waiting.fetch_add(1, Ordering::Relaxed) >= OUTPUT_BACKLOG {
                    waiting.fetch_sub(1, Ordering::Relaxed);
                    return;
                }
            }
            let _ = tx.send(event);
        }
    }
}

impl EventSender {
    /// The report of a host whose task was lost (it panicked: a bug), at `stage`, `elapsed`
    /// into the run; told to the UI like any host's end.
    pub(crate) fn lost(
        &self,
        host: &str,
        stage: Stage,
        elapsed: std::time::Duration,
    ) -> HostReport {
        let report = HostReport::failed(host, stage, crate::HostError::TaskLost, elapsed);
        self.finished(&report);
        report
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
        let (events, mut rx) = EventSender::<Event>::channel();
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
        let (events, mut rx) = EventSender::<Event>::channel();
        for _ in 0..3 {
            events.output(None, Stage::Build, "x");
            assert!(matches!(rx.recv().await, Some(Event::Output { .. })));
        }
    }
}
