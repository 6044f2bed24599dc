//! Live progress: the only listener of the pipeline's events.
//!
//! On a terminal (and without `-v`) it keeps one line per host with a spinner, its current stage
//! and its elapsed time, an overall line (done, failed, remaining), and while building the last
//! few lines nix printed, all redrawn in place. Elsewhere, or with `-v`, it prints plain
//! `[host] stage …` lines without control characters, which read well in logs and CI; `-v` adds
//! every line nix and the activations print.

mod live;

use std::time::Duration;

use console::Term;
use hbdeploy_pipeline::{Event, EventReceiver, EventSender};

/// Prints `text` on stdout. A closed stdout (e.g. `| head`) is not an error worth reporting.
pub fn out(text: &str) {
    let _ = Term::stdout().write_str(text);
}

/// Runs `work` with a UI task listening to its events; returns once the UI has shown them all.
pub async fn watched<F, Fut, T>(verbose: bool, hosts: Vec<String>, work: F) -> T
where
    F: FnOnce(EventSender) -> Fut,
    Fut: std::future::Future<Output = T>,
{
    let (events, rx) = EventSender::channel();
    let ui = tokio::spawn(run(rx, Mode::detect(verbose), hosts));
    let result = work(events).await;
    // Every sender is gone once `work` returned: the UI drains what is left and ends.
    let _ = ui.await;
    result
}

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// One line per host, redrawn in place.
    Live,
    /// Plain lines, one per event.
    Plain {
        /// Also print command output.
        verbose: bool,
    },
}

impl Mode {
    /// Live on a terminal unless verbose; plain otherwise.
    pub fn detect(verbose: bool) -> Mode {
        if !verbose && Term::stderr().is_term() {
            Mode::Live
        } else {
            Mode::Plain { verbose }
        }
    }
}

/// How often the live lines are redrawn (spinners, elapsed times).
const TICK: Duration = Duration::from_millis(100);

/// Consumes events until the pipeline drops its sender.
pub async fn run(mut events: EventReceiver, mode: Mode, hosts: Vec<String>) {
    let term = Term::stderr();
    let mut live = live::LiveLines::new(hosts);
    let mut tick = tokio::time::interval(TICK);
    loop {
        let event = match mode {
            Mode::Plain { .. } => events.recv().await,
            Mode::Live => tokio::select! {
                event = events.recv() => event,
                _ = tick.tick() => {
                    live.draw(&term);
                    continue;
                }
            },
        };
        let Some(event) = event else { break };
        match mode {
            Mode::Plain { verbose } => {
                if let Some(line) = plain_line(&event, verbose) {
                    let _ = term.write_line(&line);
                }
            }
            Mode::Live => {
                if live.apply(&event) {
                    live.draw(&term);
                }
            }
        }
    }
    if mode == Mode::Live {
        live.finish(&term);
    }
}

/// `text` without control characters (colour codes, carriage returns), which would garble a
/// log; tabs become spaces.
pub fn printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            // An ANSI escape sequence: ESC [ parameters final-byte.
            '\u{1b}' => {
                if chars.peek() == Some(&'[') {
                    chars.next();
                    for c in chars.by_ref() {
                        if ('@'..='~').contains(&c) {
                            break;
                        }
                    }
                }
            }
            '\t' => out.push(' '),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// The plain rendering of one event, if it is shown at all; never with control characters.
pub fn plain_line(event: &Event, verbose: bool) -> Option<String> {
    let line = match event {
        Event::StageStarted { host, stage } => format!("[{host}] {stage}"),
        Event::Note { host, text } => format!("[{host}] {text}"),
        Event::Output { host, stage, line } if verbose => {
            let who = host.as_deref().unwrap_or("nix");
            format!("[{who}] {stage} | {line}")
        }
        Event::Output { .. } => return None,
        Event::HostFinished {
            host,
            succeeded,
            stage,
            summary,
        } => {
            if *succeeded {
                format!("[{host}] done")
            } else {
                format!("[{host}] FAILED at {stage}: {summary}")
            }
        }
    };
    Some(printable(&line))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hbdeploy_pipeline::Stage;

    #[test]
    fn plain_lines_name_host_and_stage() {
        let check = |event: Event, verbose: bool, expected: Option<&str>| {
            assert_eq!(plain_line(&event, verbose).as_deref(), expected);
        };
        check(
            Event::StageStarted {
                host: "web".into(),
                stage: Stage::Copy,
            },
            false,
            Some("[web] copy"),
        );
        let output = Event::Output {
            host: None,
            stage: Stage::Build,
            line: "building '/nix/store/x.drv'...".into(),
        };
        check(output.clone(), false, None);
        check(
            output,
            true,
            Some("[nix] build | building '/nix/store/x.drv'..."),
        );
        check(
            Event::HostFinished {
                host: "db".into(),
                succeeded: false,
                stage: Stage::Activate,
                summary: "boom".into(),
            },
            false,
            Some("[db] FAILED at activate: boom"),
        );
    }

    #[test]
    fn control_characters_never_reach_plain_lines() {
        assert_eq!(
            printable("\u{1b}[31;1merror:\u{1b}[0m x\r\ty"),
            "error: x y"
        );
        let event = Event::Note {
            host: "h".into(),
            text: "a\u{7}b".into(),
        };
        assert_eq!(plain_line(&event, false).as_deref(), Some("[h] ab"));
    }
}
