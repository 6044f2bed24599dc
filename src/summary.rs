//! The end of a run: the per-host result table and, for each failed host, what went wrong and
//! the last lines of the failing command's output. Also the table layout the other commands use.

use std::time::Duration;

use console::{Alignment, Style};
use hbdeploy_pipeline::{HostError, HostReport, Outcome, Report};

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
    for host in report.failed() {
        if let Outcome::Failed(error) = &host.outcome {
            text.push('\n');
            text.push_str(&failure(&host.host, error));
        }
    }
    let count = |f: fn(&Outcome) -> bool| report.hosts.iter().filter(|h| f(&h.outcome)).count();
    let failed = count(|o| matches!(o, Outcome::Failed(_)));
    let skipped = count(|o| matches!(o, Outcome::Skipped));
    let interrupted = count(|o| matches!(o, Outcome::Interrupted));
    text.push_str(&format!(
        "\n{} hosts: {} succeeded, {failed} failed",
        report.hosts.len(),
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
        match &host.outcome {
            Outcome::Succeeded => Style::new().green().apply_to("ok"),
            Outcome::Unchanged => Style::new().apply_to("unchanged"),
            Outcome::Skipped | Outcome::Interrupted => {
                Style::new()
                    .yellow()
                    .apply_to(if matches!(host.outcome, Outcome::Skipped) {
                        "skipped"
                    } else {
                        "interrupted"
                    })
            }
            Outcome::Failed(error) => match error.label() {
                "FAILED" => Style::new().red().bold().apply_to("FAILED"),
                label => Style::new().yellow().bold().apply_to(label),
            },
        }
        .to_string(),
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

fn seconds(duration: Duration) -> String {
    format!("{:.1}s", duration.as_secs_f64())
}

/// The error and its causes on one line, for JSON.
pub fn error_chain(error: &HostError) -> String {
    chain(error)
}

/// Any error and its causes on one line.
pub fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// `host: error`, its causes, the output tail and the hint, one per line.
pub fn failure(host: &str, error: &HostError) -> String {
    let mut text = format!("{host}: {error}\n");
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(&format!("  caused by: {cause}\n"));
        source = cause.source();
    }
    for line in error.tail() {
        text.push_str(&format!("  | {line}\n"));
    }
    if let Some(hint) = error.hint() {
        text.push_str(&format!("  hint: {hint}\n"));
    }
    text
}
