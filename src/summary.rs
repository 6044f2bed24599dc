//! The end of a run: the per-host result table and, for each failed host, what went wrong and
//! the last lines of the failing command's output; with `--timings`, where each host's time
//! went. Also the table layout the other commands use.

use std::time::Duration;

use console::{Alignment, Style};
use hbdeploy_pipeline::{HostReport, Outcome, OutcomeKind, Report, Stage};

/// Lays out `rows` under `header`, columns separated by two spaces, no trailing blanks. Widths
/// are measured without colour codes, so coloured cells line up.
pub fn table(header: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(console::measure_text_width(cell));
        }
    }
    let header: Vec<String> = header.iter().map(|h| (*h).to_owned()).collect();
    let mut text = String::new();
    for row in std::iter::once(&header).chain(&rows) {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| console::pad_str(cell, *width, Alignment::Left, None).into_owned())
            .collect();
        text.push_str(cells.join("  ").trim_end());
        text.push('\n');
    }
    text
}

/// Renders the report. The result column is coloured only when stdout is a terminal with colour
/// on; the words carry the meaning without it.
pub fn render(report: &Report) -> String {
    let rows = report.hosts.iter().map(row).collect();
    // A blank line sets the table apart from the progress lines above it.
    let mut text = String::from("\n");
    text.push_str(&table(
        &["HOST", "RESULT", "STAGE", "SYSTEM", "GEN", "COPIED", "TIME"],
        rows,
    ));
    for host in &report.hosts {
        for note in &host.settled {
            text.push_str(&format!("\n{}: before this run: {note}", host.host));
        }
    }
    if report.hosts.iter().any(|h| !h.settled.is_empty()) {
        text.push('\n');
    }
    for host in report.failed() {
        if let Outcome::Failed(error) = &host.outcome {
            text.push('\n');
            text.push_str(&crate::error::host_failure(
                &host.host,
                error,
                &error.tail(),
            ));
        }
    }
    let count =
        |f: fn(OutcomeKind) -> bool| report.hosts.iter().filter(|h| f(h.outcome.kind())).count();
    let failed = count(OutcomeKind::failed);
    let skipped = count(|k| k == OutcomeKind::Skipped);
    let interrupted = count(|k| k == OutcomeKind::Interrupted);
    text.push_str(&format!(
        "\n{} host{}: {} succeeded, {failed} failed",
        report.hosts.len(),
        if report.hosts.len() == 1 { "" } else { "s" },
        report.hosts.len() - failed - skipped - interrupted,
    ));
    if skipped > 0 {
        text.push_str(&format!(", {skipped} skipped"));
    }
    if interrupted > 0 {
        text.push_str(&format!(", {interrupted} interrupted"));
    }
    text.push('\n');
    text
}

fn row(host: &HostReport) -> Vec<String> {
    let dash = || "-".to_owned();
    vec![
        host.host.clone(),
        result(host.outcome.kind()),
        host.stage.to_string(),
        host.new_path
            .as_ref()
            .map(|p| p.short())
            .unwrap_or_else(dash),
        host.generation.map(|g| g.to_string()).unwrap_or_else(dash),
        host.copy
            .map(|c| format!("{}/{}", c.sent, c.total))
            .unwrap_or_else(dash),
        seconds(host.duration),
    ]
}

/// The RESULT column: the outcome's word, but `ok` for success and `FAILED` shouting for a host
/// left failed.
fn result(kind: OutcomeKind) -> String {
    let (style, word) = match kind {
        OutcomeKind::Succeeded => (Style::new().green(), "ok"),
        OutcomeKind::Failed => (Style::new().red().bold(), "FAILED"),
        OutcomeKind::Unchanged => (Style::new(), kind.as_str()),
        OutcomeKind::Skipped | OutcomeKind::Interrupted | OutcomeKind::Unfinished => {
            (Style::new().yellow(), kind.as_str())
        }
        OutcomeKind::RolledBack | OutcomeKind::RollbackPending => {
            (Style::new().yellow().bold(), kind.as_str())
        }
        OutcomeKind::BootedOldSystem | OutcomeKind::DidNotComeBack | OutcomeKind::HealthFailed => {
            (Style::new().red().bold(), kind.as_str())
        }
    };
    style.apply_to(word).to_string()
}

fn seconds(duration: Duration) -> String {
    format!("{:.1}s", duration.as_secs_f64())
}

/// The stages of a host's own task that `--timings` shows, in order.
const TIMED: [Stage; 3] = [Stage::Connect, Stage::Copy, Stage::Activate];

/// `--timings`: per host, the shared build, each of its own stages, what is left (waiting for a
/// parallel slot, reading the host's state) and the total; then the median and the maximum of
/// each column over the hosts.
pub fn timings(report: &Report) -> String {
    let columns: Vec<Vec<Option<Duration>>> = report
        .hosts
        .iter()
        .map(|host| host_timings(host, report.build_time))
        .collect();
    let mut rows: Vec<Vec<String>> = report
        .hosts
        .iter()
        .zip(&columns)
        .map(|(host, cells)| {
            std::iter::once(host.host.clone())
                .chain(cells.iter().map(|c| fine(*c)))
                .collect()
        })
        .collect();
    let width = TIMED.len() + 3;
    for (label, pick) in [
        ("(median)", median as fn(&mut [Duration]) -> _),
        ("(max)", max),
    ] {
        let mut row = vec![label.to_owned()];
        for column in 0..width {
            let mut values: Vec<Duration> = columns.iter().filter_map(|c| c[column]).collect();
            row.push(fine(pick(&mut values)));
        }
        rows.push(row);
    }
    let mut text = String::from("\n");
    text.push_str(&table(
        &[
            "HOST", "BUILD", "CONNECT", "COPY", "ACTIVATE", "OTHER", "TOTAL",
        ],
        rows,
    ));
    text.push_str(
        "\nBUILD: until this host's system was evaluated and built (hosts are evaluated and built \
         in parallel, each going on as soon as its own is built). OTHER: waiting for a parallel \
         slot and reading the host's state. TOTAL: from the start of the run until the host was \
         done.\n",
    );
    text
}

/// BUILD, each of [`TIMED`], OTHER, TOTAL for one host; `None` where a stage did not run.
fn host_timings(host: &HostReport, build: Duration) -> Vec<Option<Duration>> {
    let stage = |wanted: Stage| {
        host.timings
            .iter()
            .filter(|(s, _)| *s == wanted)
            .map(|(_, d)| *d)
            .reduce(|a, b| a + b)
    };
    // A host's own, since its system is handed on as soon as it is built (issue 17).
    let build = stage(Stage::Build).unwrap_or(build);
    let own: Vec<Option<Duration>> = TIMED.into_iter().map(stage).collect();
    let accounted = build + own.iter().flatten().sum::<Duration>();
    let mut cells = vec![Some(build)];
    cells.extend(own);
    cells.push(Some(host.duration.saturating_sub(accounted)));
    cells.push(Some(host.duration));
    cells
}

fn median(values: &mut [Duration]) -> Option<Duration> {
    values.sort();
    values.get(values.len() / 2).copied()
}

fn max(values: &mut [Duration]) -> Option<Duration> {
    values.iter().max().copied()
}

/// Seconds with two decimals: connections take tens of milliseconds.
fn fine(duration: Option<Duration>) -> String {
    duration.map_or_else(|| "-".to_owned(), |d| format!("{:.2}s", d.as_secs_f64()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(name: &str, timings: &[(Stage, u64)], total: u64) -> HostReport {
        HostReport {
            timings: timings
                .iter()
                .map(|(s, ms)| (*s, Duration::from_millis(*ms)))
                .collect(),
            duration: Duration::from_millis(total),
            ..HostReport::new(name, Stage::Activate)
        }
    }

    #[test]
    fn timings_show_each_stage_the_rest_and_the_total() {
        let report = Report {
            hosts: vec![
                host(
                    "a",
                    &[
                        (Stage::Connect, 20),
                        (Stage::Copy, 1500),
                        (Stage::Activate, 300),
                    ],
                    3000,
                ),
                host("b", &[(Stage::Connect, 30)], 1250),
            ],
            build_time: Duration::from_millis(1000),
        };
        let text = timings(&report);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[1].split_whitespace().collect::<Vec<_>>(),
            [
                "HOST", "BUILD", "CONNECT", "COPY", "ACTIVATE", "OTHER", "TOTAL"
            ]
        );
        let cells = |i: usize| lines[i].split_whitespace().collect::<Vec<_>>();
        assert_eq!(
            cells(2),
            ["a", "1.00s", "0.02s", "1.50s", "0.30s", "0.18s", "3.00s"]
        );
        assert_eq!(
            cells(3),
            ["b", "1.00s", "0.03s", "-", "-", "0.22s", "1.25s"]
        );
        assert_eq!(
            cells(4),
            [
                "(median)", "1.00s", "0.03s", "1.50s", "0.30s", "0.22s", "3.00s"
            ]
        );
        assert_eq!(
            cells(5),
            [
                "(max)", "1.00s", "0.03s", "1.50s", "0.30s", "0.22s", "3.00s"
            ]
        );
    }
}
