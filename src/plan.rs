//! `hbdeploy plan` and the plan `apply --ask` shows: per host, running system → new system,
//! the closure's size and the package changes, and `dry-activate`'s answer when it ran. Nothing
//! on a host changes (with `--copy`, the new closure is added to its store, nothing more).

use std::process::ExitCode;

use console::Style;
use hbdeploy_files::Hint;
use hbdeploy_inventory::Fleet;
use hbdeploy_nix::StorePath;
use hbdeploy_pipeline::closure_diff::{ClosureDiff, Package};
use hbdeploy_pipeline::{
    HostChanges, HostPlan, PlanOutcome, PlanRequest, SecretChange, SecretOnHost,
};
use serde_json::{Value, json};

use crate::cli::{Cli, PlanArgs};
use crate::error::{AppError, EXIT_HOST_FAILED};
use crate::hosts::{Overrides, load, nix, parallel};
use crate::ui::{out, watched};

/// `hbdeploy plan`.
pub async fn plan(cli: &Cli, args: &PlanArgs) -> Result<ExitCode, AppError> {
    let (fleet, mut hosts) = load(cli, &args.selection, false, &Overrides::default())?;
    crate::secrets::read(&fleet, &mut hosts).await?;
    let mut session = crate::passphrase::unlock(&mut hosts).await?;
    if args.ask_sudo_password {
        crate::sudo::ask(&hosts, &mut session).await?;
    }
    let changes = make(
        cli,
        &fleet,
        (hosts, &session),
        args.parallel,
        &args.eval,
        args.copy,
    )
    .await?;
    if args.json {
        out(&format!("{:#}\n", to_json(&changes)));
    } else {
        out(&render(&changes));
    }
    Ok(if changes.iter().all(HostChanges::succeeded) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_HOST_FAILED)
    })
}

/// Builds and reads `hosts` (with the run's unlocked credentials), with progress on stderr.
pub async fn make(
    cli: &Cli,
    fleet: &Fleet,
    (hosts, session): (Vec<HostPlan>, &hbdeploy_ssh::Session),
    parallel_flag: Option<u16>,
    eval: &crate::cli::EvalArgs,
    copy: bool,
) -> Result<Vec<HostChanges>, AppError> {
    let request = PlanRequest {
        session: session.clone(),
        flake: fleet.flake.to_string(),
        parallel: parallel(fleet, parallel_flag),
        hosts,
        copy,
        signing_key: fleet.transfer.signing_key.clone(),
        eval: crate::hosts::eval_limits(fleet, eval),
    };
    let nix = nix().await?;
    let names = request.hosts.iter().map(|h| h.name.clone()).collect();
    watched(cli.verbose, names, |events| async move {
        hbdeploy_pipeline::plan(&request, &nix, events).await
    })
    .await
    .map_err(AppError::Pipeline)
}

/// Bytes for people: `512 B`, `4.0 KiB`, `1.2 GiB`.
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// A size change with its sign: `+1.2 MiB`, `-300 B`, `±0 B`.
fn delta(old: u64, new: u64) -> String {
    match new.cmp(&old) {
        std::cmp::Ordering::Greater => format!("+{}", human(new - old)),
        std::cmp::Ordering::Less => format!("-{}", human(old - new)),
        std::cmp::Ordering::Equal => "±0 B".to_owned(),
    }
}

fn versions(list: &[String]) -> String {
    let shown: Vec<&str> = list
        .iter()
        .map(|v| if v.is_empty() { "(no version)" } else { v })
        .collect();
    shown.join(", ")
}

fn short(path: Option<&StorePath>) -> String {
    path.map(StorePath::short)
        .unwrap_or_else(|| "(nothing)".to_owned())
}

/// The plan as text, one block per host, then a count.
pub fn render(changes: &[HostChanges]) -> String {
    let mut text = String::from("\n");
    for host in changes {
        text.push_str(&block(host));
        text.push('\n');
    }
    let count = |f: fn(&PlanOutcome) -> bool| changes.iter().filter(|h| f(&h.outcome)).count();
    text.push_str(&format!(
        "{} hosts: {} would change, {} unchanged, {} failed\n",
        changes.len(),
        count(|o| matches!(o, PlanOutcome::Changes)),
        count(|o| matches!(o, PlanOutcome::Unchanged)),
        count(|o| matches!(o, PlanOutcome::Failed(_))),
    ));
    text
}

fn block(host: &HostChanges) -> String {
    let name = Style::new().bold().apply_to(&host.host);
    let error = match &host.outcome {
        PlanOutcome::Failed(error) => error,
        PlanOutcome::Unchanged => {
            return format!(
                "{name}: unchanged (runs {})\n",
                short(host.new_path.as_ref())
            );
        }
        PlanOutcome::Changes => return changed_block(host),
    };
    let failed = Style::new()
        .red()
        .bold()
        .apply_to(format!("FAILED at {}", host.stage));
    let detail = crate::error::host_failure(&host.host, error, &error.tail());
    format!("{name}: {failed}\n{}", indent(&detail))
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("  {l}\n")).collect()
}

fn changed_block(host: &HostChanges) -> String {
    let name = Style::new().bold().apply_to(&host.host);
    let mut text = format!(
        "{name}: {} → {}\n",
        short(host.old_path.as_ref()),
        short(host.new_path.as_ref())
    );
    let system_there = host.old_path == host.new_path && host.profile_path == host.new_path;
    if host.old_path == host.new_path && !system_there {
        text.push_str("  runs the new system already; its boot default would change\n");
    }
    if system_there {
        text.push_str("  runs the new system already; only secrets would change\n");
    } else if let Some(diff) = &host.diff {
        text.push_str(&packages(diff, host.old_path.is_none()));
    }
    text.push_str(&secrets(&host.secrets));
    if let Some(dry) = &host.dry_activate {
        text.push_str("  dry-activate:\n");
        for line in &dry.lines {
            text.push_str(&format!("    | {line}\n"));
        }
    }
    text
}

/// One line per secret: whether uploading it would change the host's file, by hash (never the
/// content), owner, group and mode.
fn secrets(secrets: &[SecretChange]) -> String {
    let mut text = String::new();
    for secret in secrets {
        let new = crate::secrets::short_hash(&secret.sha256);
        let what = match &secret.on_host {
            SecretOnHost::Absent => format!("new (sha256 {new})"),
            SecretOnHost::Unreadable => {
                format!("replaces something that is not a readable file (sha256 {new})")
            }
            SecretOnHost::File { .. } if !secret.changes => "unchanged".to_owned(),
            SecretOnHost::File {
                sha256,
                owner,
                group,
                mode,
            } => {
                let mut parts = Vec::new();
                if *sha256 != secret.sha256 {
                    let old = crate::secrets::short_hash(sha256);
                    parts.push(format!("content (sha256 {old} → {new})"));
                }
                if *owner != secret.owner || *group != secret.group {
                    parts.push(format!(
                        "owner {owner}:{group} → {}:{}",
                        secret.owner, secret.group
                    ));
                }
                if *mode != secret.mode {
                    parts.push(format!("mode {mode:04o} → {:04o}", secret.mode));
                }
                format!("changes: {}", parts.join(", "))
            }
        };
        text.push_str(&format!(
            "  {:<10} {} → {}: {what}\n",
            "secret", secret.name, secret.dest
        ));
    }
    text
}

fn packages(diff: &ClosureDiff, fresh: bool) -> String {
    let mut text = format!(
        "  closure: {} → {} ({}), {} → {} paths\n",
        human(diff.old_size),
        human(diff.new_size),
        delta(diff.old_size, diff.new_size),
        diff.old_paths,
        diff.new_paths,
    );
    if fresh {
        text.push_str(&format!(
            "  a first deployment: all {} packages are new\n",
            diff.added.len()
        ));
        return text;
    }
    if diff.added.is_empty() && diff.removed.is_empty() && diff.changed.is_empty() {
        text.push_str("  no package versions change\n");
    }
    for change in &diff.changed {
        text.push_str(&format!(
            "  {:<10} {}: {} → {}\n",
            change.kind(),
            change.name,
            versions(&change.old),
            versions(&change.new)
        ));
    }
    let list = |word: &str, style: Style, list: &[Package]| -> String {
        list.iter()
            .map(|p| {
                format!(
                    "  {} {}: {}\n",
                    style.apply_to(format!("{word:<10}")),
                    p.name,
                    versions(&p.versions)
                )
            })
            .collect()
    };
    text.push_str(&list("added", Style::new().green(), &diff.added));
    text.push_str(&list("removed", Style::new().red(), &diff.removed));
    text
}

fn packages_json(list: &[Package]) -> Vec<Value> {
    list.iter()
        .map(|p| json!({ "name": p.name, "versions": p.versions }))
        .collect()
}

/// One secret of a plan, by hash: what would be written and what the host has.
fn secret_json(secret: &SecretChange) -> Value {
    let on_host = match &secret.on_host {
        SecretOnHost::Absent => Value::Null,
        SecretOnHost::Unreadable => json!("unreadable"),
        SecretOnHost::File {
            sha256,
            owner,
            group,
            mode,
        } => json!({
            "sha256": sha256,
            "owner": owner,
            "group": group,
            "mode": format!("{mode:04o}"),
        }),
    };
    json!({
        "name": secret.name,
        "dest": secret.dest,
        "sha256": secret.sha256,
        "owner": secret.owner,
        "group": secret.group,
        "mode": format!("{:04o}", secret.mode),
        "on_host": on_host,
        "changes": secret.changes,
    })
}

/// The plan as JSON (docs/json.md).
pub fn to_json(changes: &[HostChanges]) -> Value {
    let hosts: Vec<Value> = changes.iter().map(host_json).collect();
    json!({
        "succeeded": changes.iter().all(HostChanges::succeeded),
        "hosts": hosts,
    })
}

fn host_json(host: &HostChanges) -> Value {
    let (outcome, error, hint, tail) = match &host.outcome {
        PlanOutcome::Changes => ("changes", None, None, Vec::new()),
        PlanOutcome::Unchanged => ("unchanged", None, None, Vec::new()),
        PlanOutcome::Failed(error) => (
            "failed",
            Some(hbdeploy_files::chain(error)),
            error.hint(),
            error.tail(),
        ),
    };
    let diff = host.diff.as_ref().map(|d| {
        json!({
            "old_size": d.old_size,
            "new_size": d.new_size,
            "old_paths": d.old_paths,
            "new_paths": d.new_paths,
            "added": packages_json(&d.added),
            "removed": packages_json(&d.removed),
            "changed": d.changed.iter().map(|c| json!({
                "name": c.name,
                "kind": c.kind(),
                "old": c.old,
                "new": c.new,
            })).collect::<Vec<_>>(),
        })
    });
    json!({
        "host": host.host,
        "outcome": outcome,
        "stage": host.stage.as_str(),
        "old_path": host.old_path.as_ref().map(|p| p.as_str()),
        "new_path": host.new_path.as_ref().map(|p| p.as_str()),
        "profile_path": host.profile_path.as_ref().map(|p| p.as_str()),
        "closure": diff,
        "dry_activate": host.dry_activate.as_ref().map(|d| d.lines.clone()),
        "secrets": host.secrets.iter().map(secret_json).collect::<Vec<_>>(),
        "duration_secs": crate::json::seconds(host.duration),
        "error": error,
        "hint": hint,
        "output_tail": tail,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_for_people() {
        assert_eq!(human(0), "0 B");
        assert_eq!(human(1023), "1023 B");
        assert_eq!(human(4096), "4.0 KiB");
        assert_eq!(human(10_485_872), "10.0 MiB");
        assert_eq!(delta(10, 5), "-5 B");
        assert_eq!(delta(0, 2048), "+2.0 KiB");
        assert_eq!(delta(7, 7), "±0 B");
    }
}
