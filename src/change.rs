//! The commands that change hosts: `apply` and `rollback`. Both run with the UI task listening
//! to the pipeline's events, record the run in the ledger, then print the per-host result table
//! (or the JSON document). `apply --ask` shows the plan and asks before it changes anything.

use std::num::NonZeroUsize;
use std::process::ExitCode;

use console::Term;
use hbdeploy_inventory::{Fleet, Selector};
use hbdeploy_pipeline::{
    Cancel, DeployRequest, Goal, HostPlan, OutcomeKind, Report, RollbackRequest, RollbackTarget,
    deploy, time,
};

use crate::cli::{ApplyArgs, Cli, RollbackArgs};
use crate::error::{AppError, EXIT_HOST_FAILED};
use crate::hosts::{Overrides, load, nix, parallel};
use crate::ledger::{HostRecord, Ledger, Record};
use crate::shutdown::Shutdown;
use crate::ui::{out, watched};
use crate::{passphrase, summary};

/// `hbdeploy apply`.
pub async fn apply(cli: &Cli, args: &ApplyArgs, shutdown: &Shutdown) -> Result<ExitCode, AppError> {
    let started_millis = time::now_millis();
    check_goal(args)?;
    let overrides = Overrides {
        no_magic_rollback: args.no_magic_rollback,
        confirm_timeout: args.confirm_timeout,
        activation_timeout: args.activation_timeout,
        reboot_timeout: args.reboot_timeout,
        no_substitute: args.no_substitute,
        accept_new: args.accept_new,
        build_on_target: args.build_on_target.then_some(true),
    };
    let (fleet, mut hosts) = load(cli, &args.selection, false, &overrides)?;
    if args.reboot {
        crate::hosts::refuse_local_reboot(&hosts)?;
    }
    if matches!(args.goal, Goal::Switch | Goal::Boot | Goal::Test) {
        crate::secrets::read(&fleet, &mut hosts).await?;
    }
    if let Some(file) = &args.systems {
        // Before anything starts: a bad file, or a selected host it lacks, stops the run.
        let systems = crate::systems::read(file)?;
        crate::systems::assign(&fleet, &mut hosts, &systems, file)?;
    }
    let mut session = passphrase::unlock(&mut hosts).await?;
    if args.ask {
        // What was shown is what is deployed: each host's system as the plan built it, not
        // evaluated and built again (the flake may have changed meanwhile).
        let shown = ask(cli, args, &fleet, (hosts.clone(), &session)).await?;
        for host in &mut hosts {
            host.system = shown
                .iter()
                .find(|c| c.host == host.name)
                .and_then(|c| c.new_path.clone());
        }
    }
    if args.ask_sudo_password {
        crate::sudo::ask(&hosts, &mut session).await?;
    }
    let canary = canaries(&fleet, &hosts, &args.canary)?;
    let (handle, cancel) = Cancel::new();
    let all = parallel(&fleet, args.parallel);
    let request = DeployRequest {
        session: session.clone(),
        flake: fleet.flake.to_string(),
        parallel: all,
        parallel_copy: fleet.transfer.parallel_copy.unwrap_or(all),
        parallel_activate: fleet.transfer.parallel_activate.unwrap_or(all),
        builders: args.builders.clone().or(fleet.transfer.builders.clone()),
        signing_key: fleet.transfer.signing_key.clone(),
        hosts,
        goal: args.goal,
        reactivate: args.reactivate,
        auto_rollback: !args.no_auto_rollback,
        canary,
        batch: args.batch.and_then(|n| NonZeroUsize::new(n.into())),
        cancel,
        eval: crate::hosts::eval_limits(&fleet, &args.eval),
        reboot: args.reboot,
        from: args.from.clone(),
    };
    let nix = nix().await?;
    let begun = begin(&fleet, started_millis, &request.hosts).await;
    // The first Ctrl-C cancels (no new hosts or stages; running activations finish or roll
    // back); the second ends the run (`shutdown.rs`), whose destructors remove the relays of
    // `nix copy`. Activations run detached on the hosts, so even then no host is left with its
    // profile set to a generation whose activation never started.
    shutdown.on_first_interrupt(
        "interrupted: starting nothing new; running activations finish or roll back \
         (Ctrl-C again to exit now)",
        move || handle.cancel(),
    );
    let names = request.hosts.iter().map(|h| h.name.clone()).collect();
    let report = watched(cli.verbose, names, |events| async move {
        deploy(&request, &nix, events).await
    })
    .await
    .map_err(AppError::Pipeline)?;
    let code = conclude(&fleet, begun, "apply", &report, args.json).await;
    if args.timings && !args.json {
        out(&summary::timings(&report));
    }
    Ok(code)
}

/// The canary hosts named by `--canary` (names or @tags), which must be among the selected ones.
fn canaries(fleet: &Fleet, hosts: &[HostPlan], args: &[String]) -> Result<Vec<String>, AppError> {
    if args.is_empty() {
        return Ok(Vec::new());
    }
    let selectors = Selector::parse_args(false, args).map_err(AppError::Select)?;
    let chosen = fleet.select(&selectors).map_err(AppError::Select)?;
    let mut names = Vec::new();
    for host in chosen {
        let name = host.name.to_string();
        if !hosts.iter().any(|h| h.name == name) {
            return Err(AppError::Usage(
                format!("canary host `{name}` is not among the hosts being deployed"),
                Some("select it too, e.g. hbdeploy apply --all --canary HOST".to_owned()),
            ));
        }
        names.push(name);
    }
    Ok(names)
}

/// `apply --ask`: shows the plan of `hosts`, then asks on the terminal (unless `--yes`).
/// Refuses, before building anything, when there is no terminal to ask on.
async fn ask(
    cli: &Cli,
    args: &ApplyArgs,
    fleet: &Fleet,
    (hosts, session): (Vec<HostPlan>, &hbdeploy_ssh::Session),
) -> Result<Vec<hbdeploy_pipeline::HostChanges>, AppError> {
    if !args.yes && !crate::secret::interactive() {
        return Err(AppError::Usage(
            "apply --ask needs a terminal to ask on; nothing was changed".to_owned(),
            Some("run it on a terminal, or add --yes to apply after showing the plan".to_owned()),
        ));
    }
    let changes = crate::plan::make(
        cli,
        fleet,
        (hosts, session),
        args.parallel,
        &args.eval,
        false,
    )
    .await?;
    let shown = crate::plan::render(&changes);
    // With --json, stdout is for the result document only.
    if args.json {
        let _ = Term::stderr().write_str(&shown);
    } else {
        out(&shown);
    }
    if args.yes {
        return Ok(changes);
    }
    let count = changes.len();
    let asked = tokio::task::spawn_blocking(move || {
        let term = Term::stderr();
        let _ = term.write_str(&format!(
            "Apply to {count} host{}? [y/N] ",
            if count == 1 { "" } else { "s" }
        ));
        term.read_line().unwrap_or_default()
    })
    .await
    .unwrap_or_default();
    if matches!(asked.trim(), "y" | "Y" | "yes" | "YES" | "Yes") {
        Ok(changes)
    } else {
        Err(AppError::Usage(
            "not confirmed; nothing was changed".to_owned(),
            None,
        ))
    }
}

/// `hbdeploy rollback`.
pub async fn rollback(cli: &Cli, args: &RollbackArgs) -> Result<ExitCode, AppError> {
    let started_millis = time::now_millis();
    let (fleet, mut hosts) = load(cli, &args.selection, false, &Overrides::default())?;
    let mut session = passphrase::unlock(&mut hosts).await?;
    if args.ask_sudo_password {
        crate::sudo::ask(&hosts, &mut session).await?;
    }
    let target = match (&args.to_deploy, args.to) {
        (Some(id), _) => {
            let [host] = hosts.as_slice() else {
                return Err(AppError::Usage(
                    format!("--to-deploy puts one host back, not {}", hosts.len()),
                    Some("name a single host: hbdeploy rollback HOST --to-deploy ID".to_owned()),
                ));
            };
            crate::history::deployed_target(&fleet, id, &host.name)?
        }
        (None, Some(number)) => RollbackTarget::Generation(number),
        (None, None) => RollbackTarget::Previous,
    };
    let request = RollbackRequest {
        session: session.clone(),
        parallel: parallel(&fleet, args.parallel),
        hosts,
        target,
        goal: args.goal,
    };
    let begun = begin(&fleet, started_millis, &request.hosts).await;
    let names = request.hosts.iter().map(|h| h.name.clone()).collect();
    let report = watched(cli.verbose, names, |events| async move {
        Ok::<_, AppError>(hbdeploy_pipeline::rollback(&request, events).await)
    })
    .await?;
    Ok(conclude(&fleet, begun, "rollback", &report, args.json).await)
}

/// The run's record as it begins, written to the ledger at once with every host `unfinished`:
/// a run killed before it ends (which may have changed hosts) still leaves a record saying so.
/// [`conclude`] writes the final one over it.
pub(crate) async fn begin(fleet: &Fleet, started_millis: u64, hosts: &[HostPlan]) -> Record {
    let record = Record {
        id: crate::ledger::new_id(started_millis),
        time: time::iso(started_millis / 1000),
        user: crate::provenance::user(),
        machine: crate::provenance::machine(),
        command: crate::provenance::command_line(std::env::args()),
        flake: crate::provenance::flake_info(&fleet.flake.to_string()).await,
        hosts: hosts
            .iter()
            .map(|host| HostRecord {
                host: host.name.clone(),
                outcome: OutcomeKind::Unfinished,
                stage: "-".to_owned(),
                old_path: None,
                new_path: None,
                generation: None,
                settled: Vec::new(),
                secrets: Vec::new(),
                error: Some(
                    "the run ended before it recorded this host's result (it was killed?): \
                     see hbdeploy status HOST"
                        .to_owned(),
                ),
            })
            .collect(),
    };
    // A failure shows when the final record is written.
    let _ = Ledger::for_fleet(&fleet.path).append(&record);
    record
}

/// Records the run in the ledger, prints the result table (or JSON) and picks the exit code.
/// A ledger that cannot be written is a warning: the hosts were changed all the same.
pub(crate) async fn conclude(
    fleet: &Fleet,
    begun: Record,
    command: &str,
    report: &Report,
    json: bool,
) -> ExitCode {
    let record = Record {
        hosts: report.hosts.iter().map(host_record).collect(),
        ..begun
    };
    let recorded = match Ledger::for_fleet(&fleet.path).append(&record) {
        Ok(_) => Some(record.id.as_str()),
        Err(err) => {
            let _ = Term::stderr().write_line(&format!(
                "warning: the deployment was not recorded in the history: {}",
                hbdeploy_files::chain(&err)
            ));
            None
        }
    };
    if json {
        out(&format!(
            "{:#}\n",
            crate::json::report(command, recorded, report)
        ));
    } else {
        out(&summary::render(report));
        if let Some(id) = recorded {
            let _ = Term::stderr().write_line(&format!("recorded as deployment {id}"));
        }
    }
    if report.all_succeeded() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_HOST_FAILED)
    }
}

fn host_record(host: &hbdeploy_pipeline::HostReport) -> HostRecord {
    HostRecord {
        host: host.host.clone(),
        outcome: host.outcome.kind(),
        stage: host.stage.as_str().to_owned(),
        old_path: host.old_path.as_ref().map(|p| p.to_string()),
        new_path: host.new_path.as_ref().map(|p| p.to_string()),
        generation: host.generation,
        settled: host.settled.clone(),
        secrets: host
            .secrets
            .iter()
            .map(|s| crate::ledger::SecretEntry {
                name: s.name.clone(),
                sha256: s.sha256.clone(),
            })
            .collect(),
        error: match &host.outcome {
            hbdeploy_pipeline::Outcome::Failed(error) => Some(hbdeploy_files::chain(error)),
            _ => None,
        },
    }
}

/// `--reboot` goes with the goals that make the new system the boot default: `boot` (its
/// purpose: the new system runs from the reboot on) and `switch` (a reboot proves the new
/// system also boots). With `test`, `dry-activate`, `build` or `push` the reboot would boot the
/// old system, so it is refused before anything is built.
fn check_goal(args: &ApplyArgs) -> Result<(), AppError> {
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
