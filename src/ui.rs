//! Live progress: the only listener of the pipeline's events.
//!
//! On a terminal (and without `-v`) it keeps one line per host showing its current stage,
//! redrawn in place. Elsewhere, or with `-v`, it prints plain `[host] stage …` lines, which read
//! well in logs and CI; `-v` adds every line nix and the activations print.

use console::{Style, Term};
use hbdeploy_pipeline::{Event, Stage};
use tokio::sync::mpsc::UnboundedReceiver;

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

/// Consumes events until the pipeline drops its sender.
pub async fn run(mut events: UnboundedReceiver<Event>, mode: Mode, hosts: Vec<String>) {
    let term = Term::stderr();
    let mut live = LiveLines::new(hosts);
    while let Some(event) = events.recv().await {
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
}

/// The plain rendering of one event, if it is shown at all.
pub fn plain_line(event: &Event, verbose: bool) -> Option<String> {
    match event {
        Event::StageStarted { host, stage } => Some(format!("[{host}] {stage}")),
        Event::Note { host, text } => Some(format!("[{host}] {text}")),
        Event::Output { host, stage, line } if verbose => {
            let who = host.as_deref().unwrap_or("nix");
            Some(format!("[{who}] {stage} | {line}"))
        }
        Event::Output { .. } => None,
        Event::HostFinished {
            host,
            succeeded,
            stage,
            summary,
        } => Some(if *succeeded {
            format!("[{host}] done")
        } else {
            format!("[{host}] FAILED at {stage}: {summary}")
        }),
    }
}

/// One status line per host, in selection order.
struct LiveLines {
    rows: Vec<(String, String)>,
    width: usize,
    drawn: usize,
}

impl LiveLines {
    fn new(hosts: Vec<String>) -> LiveLines {
        let width = hosts.iter().map(String::len).max().unwrap_or(0);
        LiveLines {
            rows: hosts
                .into_iter()
                .map(|h| (h, "waiting".to_owned()))
                .collect(),
            width,
            drawn: 0,
        }
    }

    /// Updates the host's status; true if something changed.
    fn apply(&mut self, event: &Event) -> bool {
        let (host, status) = match event {
            Event::StageStarted { host, stage } => (host, stage_status(*stage)),
            Event::Note { host, text } => (host, text.clone()),
            Event::HostFinished {
                host,
                succeeded,
                stage,
                ..
            } => (
                host,
                if *succeeded {
                    Style::new().green().apply_to("done").to_string()
                } else {
                    Style::new()
                        .red()
                        .bold()
                        .apply_to(format!("FAILED at {stage}"))
                        .to_string()
                },
            ),
            Event::Output { .. } => return false,
        };
        match self.rows.iter_mut().find(|(name, _)| name == host) {
            Some(row) => {
                row.1 = status;
                true
            }
            None => false,
        }
    }

    fn draw(&mut self, term: &Term) {
        if self.drawn > 0 {
            let _ = term.move_cursor_up(self.drawn);
        }
        for (host, status) in &self.rows {
            let _ = term.clear_line();
            let _ = term.write_line(&format!("{host:<width$}  {status}", width = self.width));
        }
        self.drawn = self.rows.len();
    }
}

fn stage_status(stage: Stage) -> String {
    let verb = match stage {
        Stage::Evaluate => "evaluating…",
        Stage::Build => "building…",
        Stage::Connect => "connecting…",
        Stage::Copy => "copying…",
        Stage::Activate => "activating…",
        Stage::Check => "checking health…",
    };
    Style::new().cyan().apply_to(verb).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn live_rows_follow_events_and_ignore_strangers() {
        let mut live = LiveLines::new(vec!["a".into(), "bb".into()]);
        assert!(live.apply(&Event::Note {
            host: "bb".into(),
            text: "copied 1 of 3 paths".into()
        }));
        assert!(!live.apply(&Event::Note {
            host: "zz".into(),
            text: "x".into()
        }));
        assert_eq!(live.rows[1].1, "copied 1 of 3 paths");
        assert_eq!(live.rows[0].1, "waiting");
    }
}
