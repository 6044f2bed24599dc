//! `hbdeploy exec HOSTS -- COMMAND…`: the command's output, line by line with the host's name
//! in front (stdout to stdout, stderr to stderr), or with `--group` each host's output together
//! under a heading once it finished; then, on stderr, a table of the hosts' exit codes.

use std::collections::BTreeMap;
use std::process::ExitCode;

use console::{Style, Term};
use hbdeploy_pipeline::{EventSender, ExecLine, ExecRequest, ExecResult};
use hbdeploy_ssh::Stream;

use crate::cli::{Cli, ExecArgs};
use crate::error::{AppError, EXIT_HOST_FAILED};
use crate::hosts::{Overrides, load, parallel};
use crate::summary::table;
use crate::ui::out;

/// `hbdeploy exec`.
pub async fn exec(cli: &Cli, args: &ExecArgs) -> Result<ExitCode, AppError> {
    let (fleet, mut hosts) = load(cli, &args.selection, false, &Overrides::default())?;
    let session = crate::passphrase::unlock(&mut hosts).await?;
    let width = hosts.iter().map(|h| h.name.len()).max().unwrap_or(0);
    let names: Vec<String> = hosts.iter().map(|h| h.name.clone()).collect();
    let request = ExecRequest {
        session: session.clone(),
        parallel: parallel(&fleet, args.parallel),
        hosts,
        command: args.command.join(" "),
    };
    let (tx, mut rx) = EventSender::<ExecLine>::channel();
    let group = args.group;
    let printer = tokio::spawn(async move {
        let mut grouped: BTreeMap<String, Vec<String>> = BTreeMap::new();
        while let Some(line) = rx.recv().await {
            if group {
                grouped.entry(line.host).or_default().push(line.line.text);
            } else {
                let text = format!("{:<width$} | {}\n", line.host, line.line.text);
                match line.line.stream {
                    Stream::Stdout => out(&text),
                    Stream::Stderr => {
                        let _ = Term::stderr().write_str(&text);
                    }
                }
            }
        }
        grouped
    });
    let results = hbdeploy_pipeline::exec(&request, tx).await;
    // The pipeline dropped its senders: the printer drains what is left and ends.
    let mut grouped = printer.await.unwrap_or_default();
    if group {
        for (name, result) in names.iter().zip(&results) {
            out(&format!("=== {name} ({}) ===\n", ended(result)));
            for line in grouped.remove(name).unwrap_or_default() {
                out(&format!("{line}\n"));
            }
        }
    }
    let _ = Term::stderr().write_str(&summary(&results));
    Ok(if results.iter().all(ExecResult::succeeded) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_HOST_FAILED)
    })
}

/// How a host's command ended, in a few words.
fn ended(result: &ExecResult) -> String {
    match &result.outcome {
        Ok(hbdeploy_ssh::Exit::Code(code)) => format!("exit {code}"),
        Ok(hbdeploy_ssh::Exit::Signal(signal)) => format!("killed by {signal}"),
        Ok(hbdeploy_ssh::Exit::Unknown) => "no exit status".to_owned(),
        Err(hbdeploy_pipeline::ExecError::Connect(_)) => "unreachable".to_owned(),
        Err(_) => "connection lost".to_owned(),
    }
}

/// The per-host table and, for hosts that could not run the command, why.
pub fn summary(results: &[ExecResult]) -> String {
    let rows = results
        .iter()
        .map(|r| {
            let result = if r.succeeded() {
                Style::new().for_stderr().green().apply_to("ok").to_string()
            } else {
                Style::new()
                    .for_stderr()
                    .red()
                    .bold()
                    .apply_to("FAILED")
                    .to_string()
            };
            let exit = match &r.outcome {
                Ok(hbdeploy_ssh::Exit::Code(code)) => code.to_string(),
                _ => "-".to_owned(),
            };
            vec![
                r.host.clone(),
                result,
                exit,
                ended(r),
                format!("{:.1}s", r.duration.as_secs_f64()),
            ]
        })
        .collect();
    let mut text = String::from("\n");
    text.push_str(&table(&["HOST", "RESULT", "EXIT", "ENDED", "TIME"], rows));
    for r in results {
        if let Err(error) = &r.outcome {
            text.push('\n');
            text.push_str(&crate::error::host_failure(&r.host, error, &[]));
        }
    }
    let failed = results.iter().filter(|r| !r.succeeded()).count();
    text.push_str(&format!(
        "\n{} host{}: {} succeeded, {failed} failed\n",
        results.len(),
        if results.len() == 1 { "" } else { "s" },
        results.len() - failed
    ));
    text
}
