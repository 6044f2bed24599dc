//! `hbdeploy reboot`, and what `apply --reboot` accepts: reboots that are checked (see the
//! pipeline's `reboot`), recorded in the ledger and reported like `apply` and `rollback`.

use std::process::ExitCode;
use std::time::Duration;

use hbdeploy_pipeline::{Goal, RebootRequest, time};

use crate::cli::{ApplyArgs, Cli, RebootArgs};
use crate::error::AppError;
use crate::hosts::{load, parallel};
use crate::ui::watched;

/// `--reboot` goes with the goals that make the new system the boot default: `boot` (its
/// purpose: the new system runs from the reboot on) and `switch` (a reboot proves the new
/// system also boots). With `test`, `dry-activate`, `build` or `push` the reboot would boot the
/// old system, so it is refused before anything is built.
pub fn check_goal(args: &ApplyArgs) -> Result<(), AppError> {
    if !args.reboot || args.goal.sets_profile() {
        return Ok(());
    }
    Err(AppError::Usage(
        format!(
            "--reboot needs a goal that makes the new system the boot default, not --goal {}; \
             nothing was changed",
            args.goal
        ),
        Some(format!(
            "use --goal {} --reboot, or reboot later with hbdeploy reboot HOST",
            Goal::Boot
        )),
    ))
}

/// `hbdeploy reboot`.
pub async fn reboot(cli: &Cli, args: &RebootArgs) -> Result<ExitCode, AppError> {
    let started = time::now();
    let (fleet, mut hosts) = load(cli, &args.selection, false)?;
    let mut session = crate::passphrase::unlock(&mut hosts).await?;
    if args.ask_sudo_password {
        crate::sudo::ask(&hosts, &mut session).await?;
    }
    if let Some(secs) = args.reboot_timeout {
        for host in &mut hosts {
            host.safety.reboot_timeout = Duration::from_secs(secs);
        }
    }
    let request = RebootRequest {
        parallel: parallel(&fleet, args.parallel),
        hosts,
        session,
    };
    let begun = crate::change::begin(&fleet, started, &request.hosts).await;
    let names = request.hosts.iter().map(|h| h.name.clone()).collect();
    let report = watched(cli.verbose, names, |events| async move {
        Ok::<_, AppError>(hbdeploy_pipeline::reboot(&request, events).await)
    })
    .await?;
    Ok(crate::change::conclude(&fleet, begun, "reboot", &report, args.json).await)
}
