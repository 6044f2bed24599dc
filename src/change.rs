//! The commands that change hosts: `apply` and `rollback`. Both run with the UI task listening
//! to the pipeline's events, record the run in the ledger, then print the per-host result table
//! (or the JSON document). `apply --ask` shows the plan and asks before it changes anything.

use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use console::Term;
use hbdeploy_inventory::{Fleet, Selector};
use hbdeploy_pipeline::{
    Cancel, CancelHandle, DeployRequest, Event, EventSender, HostPlan, Report, RollbackRequest,
    RollbackTarget, deploy,
};
use tokio::sync::mpsc::UnboundedReceiver;

use crate::cli::{ApplyArgs, Cli, RollbackArgs};
use crate::ledger::{HostRecord, Ledger, Record};
use hbdeploy_pipeline::time;

use crate::{AppError, EXIT_HOST_FAILED, load, nix, out, parallel, passphrase, summary, ui};

/// `hbdeploy apply`.
pub async fn apply(cli: &Cli, args: &ApplyArgs) -> Result<ExitCode, AppError> {
    let started = time::now();
    let (fleet, mut hosts) = load(cli, &args.selection, false)?;
    let keys = passphrase::unlock(&mut hosts, passphrase::Copies::Yes).await?;
    if args.ask {
        ask(cli, args, &fleet, hosts.clone()).await?;
    }
    if args.ask_sudo_password {
        sudo_password(&mut hosts).await?;
    }
    for host in &mut hosts {
        if args.no_magic_rollback {
            host.safety.magic_rollback = false;
        }
        if let Some(secs) = args.confirm_timeout {
            host.safety.confirm_timeout = Duration::from_secs(secs);
        }
        if args.no_substitute {
            host.transfer.substitute = false;
        }
        host.target.set_accept_new(args.accept_new);
        if args.build_on_target {
            host.transfer.build_on_target = true;
        }
    }
    let canary = canaries(&fleet, &hosts, &args.canary)?;
    let (handle, cancel) = Cancel::new();
    let all = parallel(&fleet, args.parallel);
    let request = DeployRequest {
        flake: fleet.flake.to_string(),
        parallel: all,
        parallel_copy: fleet.transfer.parallel_copy.unwrap_or(all),
        parallel_activate: fleet.transfer.parallel_activate.unwrap_or(all),
        builders: args.builders.clone().or(fleet.transfer.builders.clone()),
        signing_key: fleet.transfer.signing_key.clone(),
        hosts,
        goal: args.goal.into(),
        reactivate: args.reactivate,
        auto_rollback: !args.no_auto_rollback,
        canary,
        batch: args.batch.and_then(|n| NonZeroUsize::new(n.into())),
        cancel,
        eval: crate::eval_limits(&fleet, &args.eval),
    };
    let nix = nix().await?;
    let interrupted = on_interrupt(handle, keys.handle_interrupts());
    let names = request.hosts.iter().map(|h| h.name.clone()).collect();
    let report = watched(cli, names, |events| async move {
        deploy(&request, &nix, events).await
    })
    .await
    .map_err(AppError::Pipeline)?;
    let code = conclude(&fleet, started, "apply", &report, args.json).await;
    if args.timings && !args.json {
        out(&summary::timings(&report));
    }
    Ok(if interrupted.load(Ordering::SeqCst) {
        ExitCode::from(EXIT_INTERRUPTED)
    } else {
        code
    })
}

/// Exit code after Ctrl-C, as shells report a death by SIGINT.
pub(crate) const EXIT_INTERRUPTED: u8 = 130;

/// The first Ctrl-C cancels (no new hosts or stages; running activations finish or roll back);
/// the second exits at once, removing `agent_dir` (the run's key agent) first. Activations run
/// detached on the hosts, so even then no host is left with its profile set to a generation
/// whose activation never started.
fn on_interrupt(handle: CancelHandle, agent_dir: Option<PathBuf>) -> Arc<AtomicBool> {
    let interrupted = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&interrupted);
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_err() {
            return;
        }
        flag.store(true, Ordering::SeqCst);
        handle.cancel();
        let _ = Term::stderr().write_line(
            "interrupted: starting nothing new; running activations finish or roll back \
             (Ctrl-C again to exit now)",
        );
        if tokio::signal::ctrl_c().await.is_ok() {
            let _ = Term::stderr().write_line("interrupted again: exiting now");
            if let Some(dir) = &agent_dir {
                let _ = std::fs::remove_dir_all(dir);
            }
            std::process::exit(EXIT_INTERRUPTED.into());
        }
    });
    interrupted
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
    hosts: Vec<HostPlan>,
) -> Result<(), AppError> {
    if !args.yes && !interactive() {
        return Err(AppError::Usage(
            "apply --ask needs a terminal to ask on; nothing was changed".to_owned(),
            Some("run it on a terminal, or add --yes to apply after showing the plan".to_owned()),
        ));
    }
    let changes = crate::plan::make(cli, fleet, hosts, args.parallel, &args.eval, false).await?;
    let shown = crate::plan::render(&changes);
    // With --json, stdout is for the result document only.
    if args.json {
        let _ = Term::stderr().write_str(&shown);
    } else {
        out(&shown);
    }
    if args.yes {
        return Ok(());
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
        Ok(())
    } else {
        Err(AppError::Usage(
            "not confirmed; nothing was changed".to_owned(),
            None,
        ))
    }
}

/// `--ask-sudo-password`: asks once, on the terminal, and hands the password to every host
/// whose login is not root. Refuses, before contacting any host, when there is no terminal.
pub(crate) async fn sudo_password(hosts: &mut [HostPlan]) -> Result<(), AppError> {
    let users: std::collections::BTreeSet<&str> = hosts
        .iter()
        .map(|h| h.target.user.as_str())
        .filter(|user| *user != "root")
        .collect();
    if users.is_empty() {
        return Ok(());
    }
    if !interactive() {
        return Err(AppError::Usage(
            "--ask-sudo-password needs a terminal to ask on; nothing was changed".to_owned(),
            Some(
                "run it on a terminal, or give the login user passwordless sudo (NOPASSWD) on \
                 the hosts"
                    .to_owned(),
            ),
        ));
    }
    let prompt = format!(
        "sudo password for {} on the hosts: ",
        users.into_iter().collect::<Vec<_>>().join(", ")
    );
    let typed = tokio::task::spawn_blocking(move || crate::secret::read_hidden(&prompt))
        .await
        .map_err(|_| AppError::Usage("the password prompt ended abnormally".to_owned(), None))?
        .map_err(|err| {
            AppError::Usage(
                format!("cannot read the sudo password from the terminal: {err}"),
                None,
            )
        })?;
    let crate::secret::Typed::Line(typed) = typed else {
        return Err(AppError::Interrupted(
            "interrupted at the sudo password prompt; nothing was changed".to_owned(),
        ));
    };
    let password = hbdeploy_ssh::Password::new(&typed);
    for host in hosts {
        if let Some(escalation) = host.target.escalation.as_mut() {
            escalation.password = Some(password.clone());
        }
    }
    Ok(())
}

/// Whether the user can be asked: stdin and stderr are a terminal.
fn interactive() -> bool {
    use std::io::IsTerminal;
    std::io::stdin().is_terminal() && Term::stderr().is_term()
}

/// `hbdeploy rollback`.
pub async fn rollback(cli: &Cli, args: &RollbackArgs) -> Result<ExitCode, AppError> {
    let started = time::now();
    let (fleet, mut hosts) = load(cli, &args.selection, false)?;
    let _keys = passphrase::unlock(&mut hosts, passphrase::Copies::No).await?;
    if args.ask_sudo_password {
        sudo_password(&mut hosts).await?;
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
        parallel: parallel(&fleet, args.parallel),
        hosts,
        target,
        goal: args.goal.into(),
    };
    let names = request.hosts.iter().map(|h| h.name.clone()).collect();
    let report = watched(cli, names, |events| async move {
        Ok::<_, AppError>(hbdeploy_pipeline::rollback(&request, events).await)
    })
    .await?;
    Ok(conclude(&fleet, started, "rollback", &report, args.json).await)
}

/// Runs `work` with a UI task listening to its events; returns once the UI has shown them all.
pub async fn watched<F, Fut, T>(cli: &Cli, hosts: Vec<String>, work: F) -> T
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

/// Records the run in the ledger, prints the result table (or JSON) and picks the exit code.
/// A ledger that cannot be written is a warning: the hosts were changed all the same.
async fn conclude(
    fleet: &Fleet,
    started: u64,
    command: &str,
    report: &Report,
    json: bool,
) -> ExitCode {
    let record = Record {
        id: crate::ledger::new_id(started),
        time: time::iso(started),
        user: crate::provenance::user(),
        machine: crate::provenance::machine(),
        command: crate::provenance::command_line(std::env::args()),
        flake: crate::provenance::flake_info(&fleet.flake.to_string()).await,
        hosts: report.hosts.iter().map(host_record).collect(),
    };
    let recorded = match Ledger::for_fleet(&fleet.path).append(&record) {
        Ok(_) => Some(record.id.as_str()),
        Err(err) => {
            let _ = Term::stderr().write_line(&format!(
                "warning: the deployment was not recorded in the history: {}",
                crate::summary::chain(&err)
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
        outcome: crate::json::outcome(&host.outcome).to_owned(),
        stage: host.stage.as_str().to_owned(),
        old_path: host.old_path.as_ref().map(|p| p.to_string()),
        new_path: host.new_path.as_ref().map(|p| p.to_string()),
        generation: host.generation,
        error: match &host.outcome {
            hbdeploy_pipeline::Outcome::Failed(error) => Some(summary::error_chain(error)),
            _ => None,
        },
    }
}
