//! The commands that only look: `status` and `generations`. Tables on stdout, or JSON with
//! `--json` (shapes documented in docs/json.md); progress, if any, on stderr.

use std::process::ExitCode;

use hbdeploy_pipeline::{
    EventSender, FlakeMatch, HostState, HostStatus, StatusRequest, host_state,
};
use serde_json::{Value, json};

use crate::cli::{CheckArgs, Cli, GenerationsArgs, Selection, StatusArgs};
use crate::summary::table;
use hbdeploy_pipeline::time;

use crate::error::{AppError, EXIT_HOST_FAILED};
use crate::hosts::{Overrides, load, nix, parallel};
use crate::ui::out;

/// `hbdeploy generations HOST`.
pub async fn generations(cli: &Cli, args: &GenerationsArgs) -> Result<ExitCode, AppError> {
    let selection = Selection {
        all: false,
        selectors: vec![args.host.clone()],
    };
    let (_, mut plans) = load(cli, &selection, false, &Overrides::default())?;
    // A selection of several hosts is refused below, before any passphrase is asked.
    let session = if plans.len() == 1 {
        crate::passphrase::unlock(&mut plans).await?
    } else {
        hbdeploy_ssh::Session::default()
    };
    let [plan] = plans.as_slice() else {
        return Err(AppError::Usage(
            format!(
                "`{}` selects {} hosts; generations lists one",
                args.host,
                plans.len()
            ),
            Some("name a single host: hbdeploy generations HOST".to_owned()),
        ));
    };
    let state = match host_state(plan, &session).await {
        Ok(state) => state,
        Err(error) => {
            out(&crate::error::host_failure(
                &plan.name,
                &error,
                &error.tail(),
            ));
            return Ok(ExitCode::from(EXIT_HOST_FAILED));
        }
    };
    if args.json {
        out(&format!("{:#}\n", generations_json(&plan.name, &state)));
    } else {
        out(&generations_table(&state));
    }
    Ok(ExitCode::SUCCESS)
}

fn generations_json(host: &str, state: &HostState) -> Value {
    let generations: Vec<Value> = state
        .generations
        .iter()
        .map(|g| {
            json!({
                "number": g.number,
                "created": format!("{}Z", time::utc(g.created).replace(' ', "T")),
                "path": g.path.as_str(),
                "current": state.profile_generation == Some(g.number),
                "running": state.current.as_ref() == Some(&g.path),
                "booted": state.booted.as_ref() == Some(&g.path),
            })
        })
        .collect();
    json!({ "host": host, "generations": generations })
}

fn generations_table(state: &HostState) -> String {
    if state.generations.is_empty() {
        return "the host has no system generations\n".to_owned();
    }
    let rows = state
        .generations
        .iter()
        .map(|g| {
            let mut flags = Vec::new();
            if state.profile_generation == Some(g.number) {
                flags.push("current");
            }
            if state.current.as_ref() == Some(&g.path) {
                flags.push("running");
            }
            if state.booted.as_ref() == Some(&g.path) {
                flags.push("booted");
            }
            vec![
                g.number.to_string(),
                time::utc(g.created),
                g.path.to_string(),
                flags.join(", "),
            ]
        })
        .collect();
    table(&["GEN", "CREATED (UTC)", "SYSTEM", ""], rows)
}

/// `hbdeploy check`: every selected host's health checks, now.
pub async fn check(cli: &Cli, args: &CheckArgs) -> Result<ExitCode, AppError> {
    let (fleet, mut hosts) = load(cli, &args.selection, true, &Overrides::default())?;
    let session = crate::passphrase::unlock(&mut hosts).await?;
    let parallel = parallel(&fleet, args.parallel);
    let results = hbdeploy_pipeline::check_hosts(hosts, parallel, &session).await;
    let mut rows = Vec::new();
    let mut notes = String::new();
    let mut healthy = true;
    for host in &results {
        match &host.results {
            Err(error) => {
                healthy = false;
                rows.push(vec![
                    host.host.clone(),
                    "-".to_owned(),
                    "unreachable".to_owned(),
                ]);
                notes.push('\n');
                notes.push_str(&crate::error::host_failure(
                    &host.host,
                    error,
                    &error.tail(),
                ));
            }
            Ok(checks) if checks.is_empty() => {
                rows.push(vec![
                    host.host.clone(),
                    "(no checks)".to_owned(),
                    "-".to_owned(),
                ]);
            }
            Ok(checks) => {
                for (name, result) in checks {
                    let verdict = match result {
                        Ok(()) => "ok".to_owned(),
                        Err(failure) => {
                            healthy = false;
                            let plural = if failure.attempts == 1 { "" } else { "s" };
                            notes.push_str(&format!(
                                "\n{}: {} failed after {} attempt{plural}: {}\n",
                                host.host, failure.check, failure.attempts, failure.detail
                            ));
                            for line in &failure.output {
                                notes.push_str(&format!("  | {line}\n"));
                            }
                            "FAILED".to_owned()
                        }
                    };
                    rows.push(vec![host.host.clone(), name.clone(), verdict]);
                }
            }
        }
    }
    out(&table(&["HOST", "CHECK", "RESULT"], rows));
    out(&notes);
    Ok(if healthy {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_HOST_FAILED)
    })
}

/// `hbdeploy status`.
pub async fn status(cli: &Cli, args: &StatusArgs) -> Result<ExitCode, AppError> {
    let (fleet, mut hosts) = load(cli, &args.selection, true, &Overrides::default())?;
    let session = crate::passphrase::unlock(&mut hosts).await?;
    let request = StatusRequest {
        session: session.clone(),
        flake: fleet.flake.to_string(),
        parallel: parallel(&fleet, args.parallel),
        hosts,
        build: args.build,
        eval: crate::hosts::eval_limits(&fleet, &args.eval),
    };
    let nix = nix().await?;
    let statuses = hbdeploy_pipeline::status(&request, &nix, EventSender::none())
        .await
        .map_err(AppError::Pipeline)?;
    if args.json {
        let hosts: Vec<Value> = statuses.iter().map(status_json).collect();
        out(&format!("{:#}\n", json!({ "hosts": hosts })));
    } else {
        out(&status_table(&statuses));
    }
    Ok(if statuses.iter().all(|s| s.state.is_ok()) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_HOST_FAILED)
    })
}

fn status_json(status: &HostStatus) -> Value {
    let (flake_system, flake_detail) = match &status.flake {
        FlakeMatch::UpToDate => (None, None),
        FlakeMatch::Differs(path) => (Some(path.to_string()), None),
        FlakeMatch::Unknown(why) => (None, Some(why.clone())),
    };
    let flake = status.flake.label().replace(' ', "-");
    match &status.state {
        Ok(state) => json!({
            "host": status.host,
            "reachable": true,
            "error": null,
            "current_system": state.current.as_ref().map(|p| p.as_str()),
            "generation": state.current_generation(),
            "profile_generation": state.profile_generation,
            "booted_system": state.booted.as_ref().map(|p| p.as_str()),
            "reboot_needed": state.reboot_needed,
            "unconfirmed": state.pending,
            "flake": flake,
            "flake_system": flake_system,
            "flake_detail": flake_detail,
        }),
        Err(error) => json!({
            "host": status.host,
            "reachable": false,
            "error": hbdeploy_files::chain(error),
            "current_system": null,
            "generation": null,
            "profile_generation": null,
            "booted_system": null,
            "reboot_needed": null,
            "unconfirmed": null,
            "flake": flake,
            "flake_system": flake_system,
            "flake_detail": flake_detail,
        }),
    }
}

fn status_table(statuses: &[HostStatus]) -> String {
    let dash = || "-".to_owned();
    let rows = statuses
        .iter()
        .map(|s| match &s.state {
            Ok(state) => vec![
                s.host.clone(),
                "yes".to_owned(),
                state
                    .current
                    .as_ref()
                    .map(|p| p.short())
                    .unwrap_or_else(dash),
                state
                    .current_generation()
                    .map(|n| n.to_string())
                    .unwrap_or_else(dash),
                state
                    .booted
                    .as_ref()
                    .map(|p| p.short())
                    .unwrap_or_else(dash),
                if state.reboot_needed { "yes" } else { "no" }.to_owned(),
                s.flake.label().to_owned(),
            ],
            Err(_) => vec![
                s.host.clone(),
                "no".to_owned(),
                dash(),
                dash(),
                dash(),
                dash(),
                s.flake.label().to_owned(),
            ],
        })
        .collect();
    let mut text = table(
        &[
            "HOST",
            "REACHABLE",
            "CURRENT SYSTEM",
            "GEN",
            "BOOTED SYSTEM",
            "REBOOT",
            "FLAKE",
        ],
        rows,
    );
    for s in statuses {
        match &s.state {
            Ok(state) if !state.pending.is_empty() => text.push_str(&format!(
                "\n{}: unconfirmed deployment ({}) under magic rollback: being confirmed now, or \
                 left by a deployer that died or a reboot; the next apply or rollback of the host \
                 settles it\n",
                s.host,
                state.pending.join(", ")
            )),
            Ok(_) => {}
            Err(error) => {
                text.push('\n');
                text.push_str(&crate::error::host_failure(&s.host, error, &error.tail()));
            }
        }
    }
    text
}
