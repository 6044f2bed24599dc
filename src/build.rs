//! `hbdeploy build`: the selected hosts' systems evaluated and built here, no host contacted;
//! with `--systems-out`, written into a systems file (`systems.rs`) for `apply --systems`.

use std::process::ExitCode;

use hbdeploy_pipeline::{Cancel, DeployRequest, Goal, deploy};

use crate::cli::{BuildArgs, Cli};
use crate::error::{AppError, EXIT_HOST_FAILED};
use crate::hosts::{Overrides, load, nix, parallel};
use crate::shutdown::Shutdown;
use crate::ui::{out, watched};

/// `hbdeploy build`: evaluates and builds the selected hosts' systems here, contacting no host;
/// with `--systems-out`, writes them into a systems file.
pub async fn build(cli: &Cli, args: &BuildArgs, shutdown: &Shutdown) -> Result<ExitCode, AppError> {
    // Built here, whatever fleet.toml says: the point is a system another machine deploys.
    let overrides = Overrides {
        build_on_target: Some(false),
        ..Overrides::default()
    };
    let (fleet, hosts) = load(cli, &args.selection, false, &overrides)?;
    let (handle, cancel) = Cancel::new();
    let all = parallel(&fleet, None);
    let request = DeployRequest {
        flake: fleet.flake.to_string(),
        parallel: all,
        parallel_copy: all,
        parallel_activate: all,
        builders: args.builders.clone().or(fleet.transfer.builders.clone()),
        signing_key: None,
        hosts,
        goal: Goal::Build,
        reactivate: false,
        auto_rollback: true,
        canary: Vec::new(),
        batch: None,
        cancel,
        eval: crate::hosts::eval_limits(&fleet, &args.eval),
        from: None,
        reboot: false,
        // Nothing is contacted: `--goal build` stops before any host.
        session: hbdeploy_ssh::Session::default(),
    };
    let nix = nix().await?;
    shutdown.on_first_interrupt("interrupted: stopping the builds", move || handle.cancel());
    let names = request.hosts.iter().map(|h| h.name.clone()).collect();
    let report = watched(cli.verbose, names, |events| async move {
        deploy(&request, &nix, events).await
    })
    .await
    .map_err(AppError::Pipeline)?;
    out(&crate::summary::render(&report));
    if let Some(path) = &args.systems_out {
        let count = crate::systems::write(&report, path)?;
        let total = report.hosts.len();
        let note = if count == total {
            format!("wrote the systems of {count} hosts to {}", path.display())
        } else {
            format!(
                "wrote the systems of {count} of {total} hosts to {} (failed hosts are not in it)",
                path.display()
            )
        };
        let _ = console::Term::stderr().write_line(&note);
    }
    Ok(if report.all_succeeded() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_HOST_FAILED)
    })
}
