//! `hbdeploy history [HOST]`: the ledger's records as a table (one row per host of each run) or
//! as JSON; and finding what a recorded deployment gave a host, for `rollback --to-deploy`.

use std::process::ExitCode;

use console::Term;
use hbdeploy_inventory::Fleet;
use hbdeploy_nix::StorePath;
use hbdeploy_pipeline::RollbackTarget;
use serde_json::json;

use crate::cli::{Cli, HistoryArgs};
use crate::error::AppError;
use crate::ledger::{Contents, Ledger, Record};
use crate::summary::table;
use crate::ui::out;

/// `hbdeploy history`.
pub fn history(cli: &Cli, args: &HistoryArgs) -> Result<ExitCode, AppError> {
    let fleet = Fleet::load(&cli.fleet).map_err(AppError::Inventory)?;
    let ledger = Ledger::for_fleet(&fleet.path);
    let contents = read(&ledger)?;
    let mut records: Vec<Record> = contents
        .records
        .into_iter()
        .filter_map(|mut r| {
            if let Some(host) = &args.host {
                r.hosts.retain(|h| &h.host == host);
                if r.hosts.is_empty() {
                    return None;
                }
            }
            Some(r)
        })
        .collect();
    if let Some(limit) = args.limit {
        let skip = records.len().saturating_sub(limit);
        records.drain(..skip);
    }
    if args.json {
        out(&format!("{:#}\n", json!({ "deployments": records })));
    } else if records.is_empty() {
        let _ = Term::stderr().write_line(&format!(
            "no deployments recorded in {}{}",
            ledger.dir().display(),
            args.host
                .as_ref()
                .map(|h| format!(" for {h}"))
                .unwrap_or_default()
        ));
    } else {
        out(&render(&records));
    }
    Ok(ExitCode::SUCCESS)
}

/// Reads the ledger, warning on stderr about files that could not be read.
fn read(ledger: &Ledger) -> Result<Contents, AppError> {
    let contents = ledger.read().map_err(AppError::Ledger)?;
    for path in &contents.unreadable {
        let _ = Term::stderr().write_line(&format!(
            "warning: skipping {}: not a readable deployment record",
            path.display()
        ));
    }
    Ok(contents)
}

/// The table: one row per host of each record, oldest first.
pub fn render(records: &[Record]) -> String {
    let dash = || "-".to_owned();
    let mut rows = Vec::new();
    for record in records {
        let rev = match (&record.flake.rev, record.flake.dirty) {
            (Some(rev), dirty) => format!(
                "{}{}",
                rev.get(..12).unwrap_or(rev),
                if dirty == Some(true) { "+dirty" } else { "" }
            ),
            (None, _) => dash(),
        };
        for host in &record.hosts {
            rows.push(vec![
                record.id.clone(),
                record
                    .time
                    .replace('T', " ")
                    .trim_end_matches('Z')
                    .to_owned(),
                record.user.clone(),
                record.command.clone(),
                rev.clone(),
                host.host.clone(),
                host.outcome.to_string(),
                host.generation.map(|g| g.to_string()).unwrap_or_else(dash),
                host.new_path
                    .as_deref()
                    .and_then(|p| StorePath::new(p).ok())
                    .map(|p| p.short())
                    .unwrap_or_else(dash),
            ]);
        }
    }
    table(
        &[
            "ID",
            "TIME (UTC)",
            "USER",
            "COMMAND",
            "REV",
            "HOST",
            "RESULT",
            "GEN",
            "SYSTEM",
        ],
        rows,
    )
}

/// The rollback target for `host` from the deployment `id`: the system that deployment left on
/// it and the generation it recorded.
pub fn deployed_target(fleet: &Fleet, id: &str, host: &str) -> Result<RollbackTarget, AppError> {
    let ledger = Ledger::for_fleet(&fleet.path);
    let contents = read(&ledger)?;
    let matches: Vec<&Record> = contents
        .records
        .iter()
        .filter(|r| r.id == id || r.id.starts_with(id))
        .collect();
    let usage = |message: String, hint: &str| AppError::Usage(message, Some(hint.to_owned()));
    let record = match matches.as_slice() {
        [one] => *one,
        [] => {
            return Err(usage(
                format!("no deployment `{id}` in {}", ledger.dir().display()),
                "see the recorded deployments with hbdeploy history HOST",
            ));
        }
        _ => {
            return Err(usage(
                format!("`{id}` matches {} deployments", matches.len()),
                "give the whole ID, as hbdeploy history shows it",
            ));
        }
    };
    let Some(entry) = record.host(host) else {
        return Err(usage(
            format!("deployment {} did not include {host}", record.id),
            "see which deployments included it with hbdeploy history HOST",
        ));
    };
    let path = match &entry.new_path {
        Some(path) if entry.outcome.succeeded() => StorePath::new(path.as_str()).ok(),
        _ => None,
    };
    let Some(path) = path else {
        return Err(usage(
            format!(
                "deployment {} did not leave {host} on a new system (it ended `{}`)",
                record.id, entry.outcome
            ),
            "pick a deployment in which this host succeeded: hbdeploy history HOST",
        ));
    };
    Ok(RollbackTarget::Deployed {
        generation: entry.generation,
        path,
    })
}
