//! `hbdeploy reboot`, and what `apply --reboot` accepts: reboots that are checked (see the
//! pipeline's `reboot`), recorded in the ledger and reported like `apply` and `rollback`.

use std::process::ExitCode;

use hbdeploy_pipeline::{RebootRequest, time};

use crate::cli::{Cli, RebootArgs};
use crate::error::AppError;
use crate::hosts::{Overrides, load, parallel};
use crate::ui::watched;

/// `hbdeploy reboot`.
pub async fn reboot(cli: &Cli, args: &RebootArgs) -> Result<ExitCode, AppError> {
    let started = time::now();
    let overrides = Overrides {
        reboot_timeout: args.reboot_timeout,
        ..Overrides::default()
    };
    let (fleet, mut hosts) = load(cli, &args.selection, false, &overrides)?;
    crate::hosts::refuse_local_reboot(&hosts)?;
    let mut session = crate::passphrase::unlock(&mut hosts).await?;
    if args.ask_sudo_password {
        crate::sudo::ask(&hosts, &mut session).await?;
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
