//! The end of a run: the per-host result table and, for each failed host, what went wrong and
//! the last lines of the failing command's output.

use std::time::Duration;

use hbdeploy_pipeline::{HostReport, Outcome, Report};

/// Renders the report as plain text (no colour codes: it may go to a file).
pub fn render(report: &Report) -> String {
    let rows: Vec<[String; 6]> = report.hosts.iter().map(row).collect();
    let header = ["HOST", "RESULT", "STAGE", "SYSTEM", "COPIED", "TIME"].map(String::from);
    let mut widths = header.clone().map(|h| h.len());
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    // A blank line sets the table apart from the progress lines above it.
    let mut text = String::from("\n");
    for row in std::iter::once(&header).chain(&rows) {
        let cells: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        text.push_str(cells.join("  ").trim_end());
        text.push('\n');
    }
    for host in report.failed() {
        text.push('\n');
        text.push_str(&failure(host));
    }
    let failed = report.failed().count();
    text.push_str(&format!(
        "\n{} hosts: {} succeeded, {} failed\n",
        report.hosts.len(),
        report.hosts.len() - failed,
        failed
    ));
    text
}

fn row(host: &HostReport) -> [String; 6] {
    [
        host.host.clone(),
        if host.succeeded() { "ok" } else { "FAILED" }.to_owned(),
        host.stage.to_string(),
        host.new_path
            .as_ref()
            .map(|p| p.short())
            .unwrap_or_else(|| "-".to_owned()),
        host.copy
            .map(|c| format!("{}/{}", c.sent, c.total))
            .unwrap_or_else(|| "-".to_owned()),
        seconds(host.duration),
    ]
}

fn seconds(duration: Duration) -> String {
    format!("{:.1}s", duration.as_secs_f64())
}

fn failure(host: &HostReport) -> String {
    let Outcome::Failed(error) = &host.outcome else {
        return String::new();
    };
    let mut text = format!("{}: {error}\n", host.host);
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
