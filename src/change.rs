//! The commands that change hosts: `apply` and `rollback`. Both run with the UI task listening
//! to the pipeline's events, then print the per-host result table.

use std::process::ExitCode;

use hbdeploy_pipeline::{
    DeployRequest, Event, EventSender, Report, RollbackRequest, RollbackTarget, deploy,
};
use tokio::sync::mpsc::UnboundedReceiver;

use crate::cli::{ApplyArgs, Cli, RollbackArgs};
use crate::{AppError, EXIT_HOST_FAILED, load, nix, out, parallel, summary, ui};

/// `hbdeploy apply`.
pub async fn apply(cli: &Cli, args: &ApplyArgs) -> Result<ExitCode, AppError> {
    let (fleet, hosts) = load(cli, &args.selection, false)?;
    let request = DeployRequest {
        flake: fleet.flake.to_string(),
        parallel: parallel(&fleet, args.parallel),
        hosts,
        goal: args.goal.into(),
        reactivate: args.reactivate,
    };
    let nix = nix().await?;
    let names = request.hosts.iter().map(|h| h.name.clone()).collect();
    let report = watched(cli, names, |events| async move {
        deploy(&request, &nix, events).await
    })
    .await
    .map_err(AppError::Pipeline)?;
    let code = finish(&report);
    if args.timings {
        out(&summary::timings(&report));
    }
    Ok(code)
}

/// `hbdeploy rollback`.
pub async fn rollback(cli: &Cli, args: &RollbackArgs) -> Result<ExitCode, AppError> {
    let (fleet, hosts) = load(cli, &args.selection, false)?;
    let request = RollbackRequest {
        parallel: parallel(&fleet, args.parallel),
        hosts,
        target: match args.to {
            Some(number) => RollbackTarget::Generation(number),
            None => RollbackTarget::Previous,
        },
        goal: args.goal.into(),
    };
    let names = request.hosts.iter().map(|h| h.name.clone()).collect();
    let report = watched(cli, names, |events| async move {
        Ok::<_, AppError>(hbdeploy_pipeline::rollback(&request, events).await)
    })
    .await?;
    Ok(finish(&report))
}

/// Runs `work` with a UI task listening to its events; returns once the UI has shown them all.
async fn watched<F, Fut, T>(cli: &Cli, hosts: Vec<String>, work: F) -> T
where
    F: FnOnce(EventSender) -> Fut,
    Fut: std::future::Future<Output = T>,
{
    let (tx, rx): (_, UnboundedReceiver<Event>) = tokio::sync::mpsc::unbounded_channel();
    let ui = tokio::spawn(ui::run(rx, ui::Mode::detect(cli.verbose), hosts));
    let result = work(EventSender::new(tx)).await;
    // Every sender is gone once `work` returned: the UI drains what is left and ends.
    let _ = ui.await;
    result
}

/// Prints the result table and picks the exit code.
fn finish(report: &Report) -> ExitCode {
    out(&summary::render(report));
    if report.all_succeeded() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_HOST_FAILED)
    }
}
