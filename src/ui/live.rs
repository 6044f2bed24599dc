//! The live view on a terminal: a line per host with a spinner, its stage and elapsed time, an
//! overall line, and while building a bounded area with nix's latest output lines. Every line is
//! cut to the terminal's width, so redrawing in place never breaks on wrapped lines.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use console::{Style, Term};
use hbdeploy_pipeline::{Event, Stage};

use super::printable;

/// How many of nix's latest output lines the live view shows while building.
const OUTPUT_LINES: usize = 5;

/// One host's line in the live view.
struct Row {
    host: String,
    status: String,
    /// `Some(succeeded)` once the host finished.
    finished: Option<bool>,
    /// How long the host took, frozen when it finished.
    took: Option<Duration>,
}

/// One status line per host, in selection order, an overall line, and while building the last
/// lines nix printed.
pub struct LiveLines {
    rows: Vec<Row>,
    width: usize,
    drawn: usize,
    frame: usize,
    start: Instant,
    output: VecDeque<String>,
    building: bool,
}

const SPINNER: [char; 10] = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];

impl LiveLines {
    /// A view of `hosts`, all waiting.
    pub fn new(hosts: Vec<String>) -> LiveLines {
        let width = hosts.iter().map(String::len).max().unwrap_or(0);
        LiveLines {
            rows: hosts
                .into_iter()
                .map(|host| Row {
                    host,
                    status: "waiting".to_owned(),
                    finished: None,
                    took: None,
                })
                .collect(),
            width,
            drawn: 0,
            frame: 0,
            start: Instant::now(),
            output: VecDeque::new(),
            building: false,
        }
    }

    /// Updates the host's status; true if something changed.
    pub fn apply(&mut self, event: &Event) -> bool {
        let (host, status, finished) = match event {
            Event::StageStarted { host, stage } => {
                self.building = matches!(stage, Stage::Evaluate | Stage::Build);
                (host, stage_status(*stage), None)
            }
            Event::Note { host, text } => (host, printable(text), None),
            Event::HostFinished {
                host,
                succeeded,
                stage,
                ..
            } => (
                host,
                if *succeeded {
                    "done".to_owned()
                } else {
                    format!("FAILED at {stage}")
                },
                Some(*succeeded),
            ),
            Event::Output {
                host: None, line, ..
            } => {
                if self.output.len() == OUTPUT_LINES {
                    self.output.pop_front();
                }
                self.output.push_back(printable(line));
                return self.building;
            }
            Event::Output { .. } => return false,
        };
        if matches!(event, Event::StageStarted { stage, .. } if !matches!(stage, Stage::Evaluate | Stage::Build))
        {
            self.building = false;
        }
        let elapsed = self.start.elapsed();
        match self.rows.iter_mut().find(|row| row.host == *host) {
            Some(row) => {
                row.status = status;
                if finished.is_some() {
                    row.finished = finished;
                    row.took = Some(elapsed);
                }
                true
            }
            None => false,
        }
    }

    /// The last drawing: nix's output area is gone.
    pub fn finish(&mut self, term: &Term) {
        self.building = false;
        self.draw(term);
    }

    /// The lines to show now, each at most `columns` wide.
    fn lines(&self, columns: usize) -> Vec<String> {
        let mut lines = Vec::new();
        for row in &self.rows {
            let (mark, status) = match row.finished {
                Some(true) => (
                    Style::new().for_stderr().green().apply_to('✓').to_string(),
                    Style::new()
                        .for_stderr()
                        .green()
                        .apply_to(&row.status)
                        .to_string(),
                ),
                Some(false) => (
                    Style::new()
                        .for_stderr()
                        .red()
                        .bold()
                        .apply_to('✗')
                        .to_string(),
                    Style::new()
                        .for_stderr()
                        .red()
                        .bold()
                        .apply_to(&row.status)
                        .to_string(),
                ),
                None => (
                    SPINNER[self.frame % SPINNER.len()].to_string(),
                    Style::new()
                        .for_stderr()
                        .cyan()
                        .apply_to(&row.status)
                        .to_string(),
                ),
            };
            let took = row.took.unwrap_or_else(|| self.start.elapsed());
            lines.push(format!(
                "{mark} {:<width$}  {status}  {}",
                row.host,
                Style::new()
                    .for_stderr()
                    .dim()
                    .apply_to(format!("{:.1}s", took.as_secs_f64())),
                width = self.width
            ));
        }
        let done = self
            .rows
            .iter()
            .filter(|r| r.finished == Some(true))
            .count();
        let failed = self
            .rows
            .iter()
            .filter(|r| r.finished == Some(false))
            .count();
        let remaining = self.rows.len() - done - failed;
        lines.push(format!(
            "{done} done, {failed} failed, {remaining} remaining  {:.1}s",
            self.start.elapsed().as_secs_f64()
        ));
        if self.building {
            for line in &self.output {
                lines.push(
                    Style::new()
                        .for_stderr()
                        .dim()
                        .apply_to(format!("  {line}"))
                        .to_string(),
                );
            }
        }
        lines
            .into_iter()
            .map(|l| console::truncate_str(&l, columns.max(20), "…").into_owned())
            .collect()
    }

    /// Redraws the view in place.
    pub fn draw(&mut self, term: &Term) {
        self.frame += 1;
        let columns = usize::from(term.size().1).saturating_sub(1);
        let lines = self.lines(columns);
        if self.drawn > 0 {
            let _ = term.move_cursor_up(self.drawn);
        }
        for line in &lines {
            let _ = term.clear_line();
            let _ = term.write_line(line);
        }
        // Clear what a longer previous frame left below, then come back up.
        let extra = self.drawn.saturating_sub(lines.len());
        for _ in 0..extra {
            let _ = term.clear_line();
            let _ = term.write_line("");
        }
        if extra > 0 {
            let _ = term.move_cursor_up(extra);
        }
        self.drawn = lines.len();
    }
}

fn stage_status(stage: Stage) -> String {
    match stage {
        Stage::Evaluate => "evaluating…",
        Stage::Build => "building…",
        Stage::Connect => "connecting…",
        Stage::Copy => "copying…",
        Stage::Activate => "activating…",
        Stage::Check => "checking health…",
        Stage::Reboot => "rebooting…",
    }
    .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(live.rows[1].status, "copied 1 of 3 paths");
        assert_eq!(live.rows[0].status, "waiting");
        assert!(live.apply(&Event::HostFinished {
            host: "a".into(),
            succeeded: false,
            stage: Stage::Copy,
            summary: "x".into(),
        }));
        let lines = live.lines(200);
        assert!(lines[0].starts_with("✗ a   FAILED at copy  "), "{lines:?}");
        assert!(
            lines[1].starts_with(SPINNER[0].to_string().as_str()),
            "{lines:?}"
        );
        assert!(
            lines[2].starts_with("0 done, 1 failed, 1 remaining"),
            "{lines:?}"
        );
    }

    #[test]
    fn nix_output_shows_only_while_building_and_is_bounded() {
        let mut live = LiveLines::new(vec!["a".into()]);
        live.apply(&Event::StageStarted {
            host: "a".into(),
            stage: Stage::Build,
        });
        for n in 0..9 {
            live.apply(&Event::Output {
                host: None,
                stage: Stage::Build,
                line: format!("building {n}"),
            });
        }
        let lines = live.lines(200);
        assert_eq!(lines.len(), 2 + OUTPUT_LINES, "{lines:?}");
        assert_eq!(lines.last().map(String::as_str), Some("  building 8"));
        live.apply(&Event::StageStarted {
            host: "a".into(),
            stage: Stage::Connect,
        });
        assert_eq!(live.lines(200).len(), 2);
    }
}
