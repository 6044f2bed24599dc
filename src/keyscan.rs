//! `hbdeploy keyscan`: fetch the selected hosts' SSH host keys (trusting nothing), print them as
//! known_hosts lines for review, and with `--pin` write them into fleet.toml as `host-key`.

use std::process::ExitCode;

use hbdeploy_pipeline::HostPlan;
use hbdeploy_ssh::key_text;

use crate::cli::{Cli, KeyscanArgs};
use crate::error::{AppError, EXIT_HOST_FAILED};
use crate::hosts::{Overrides, load};
use crate::ui::out;

/// Runs `keyscan`.
pub async fn run(cli: &Cli, args: &KeyscanArgs) -> Result<ExitCode, AppError> {
    let (fleet, plans) = load(cli, &args.selection, true, &Overrides::default())?;
    let mut scans = Vec::new();
    let mut text = String::new();
    for plan in &plans {
        let target = &plan.target;
        if target.is_local() {
            // Reached without SSH: there is no host key to trust.
            text.push_str(&format!(
                "# {}: the machine hbdeploy runs on (address = \"local\"): no host key\n",
                plan.name
            ));
            continue;
        }
        let keys = hbdeploy_ssh::scan(&target.address, target.port, target.connect_timeout).await;
        scans.push((plan, keys));
    }
    let mut failed = false;
    for (plan, keys) in &scans {
        match keys {
            Ok(keys) => {
                for key in keys {
                    text.push_str(&format!(
                        "{} {}\n",
                        hbdeploy_ssh::host_pattern(&plan.target.address, plan.target.port),
                        key_text(key)
                    ));
                }
            }
            Err(error) => {
                failed = true;
                text.push_str(&format!("# {}: {error}\n", plan.name));
            }
        }
    }
    out(&text);
    if args.pin && !failed {
        let pinned: Vec<(&HostPlan, Vec<String>)> = scans
            .iter()
            .filter_map(|(plan, keys)| {
                keys.as_ref()
                    .ok()
                    .map(|keys| (*plan, keys.iter().map(key_text).collect()))
            })
            .collect();
        pin(&fleet.path, &pinned)?;
        out(&format!(
            "# pinned in {}: review the fingerprints before you deploy\n",
            fleet.path.display()
        ));
    }
    Ok(if failed {
        ExitCode::from(EXIT_HOST_FAILED)
    } else {
        ExitCode::SUCCESS
    })
}

/// Adds `host-key = [...]` under each host's `[hosts.NAME]` header. Refuses (changing nothing)
/// when a host is not written as its own table, or already has a `host-key`.
fn pin(path: &std::path::Path, hosts: &[(&HostPlan, Vec<String>)]) -> Result<(), AppError> {
    let text = hbdeploy_files::read_to_string(path, hbdeploy_inventory::MAX_FLEET_BYTES)
        .map_err(|err| AppError::Usage(err.to_string(), None))?;
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    for (plan, keys) in hosts {
        let header = format!("[hosts.{}]", plan.name);
        let Some(at) = lines.iter().position(|l| l.trim() == header) else {
            return Err(AppError::Usage(
                format!(
                    "cannot pin {}: fleet.toml has no `{header}` line",
                    plan.name
                ),
                Some("add host-key = \"…\" to the host by hand".to_owned()),
            ));
        };
        let table_end = lines[at + 1..]
            .iter()
            .position(|l| l.trim_start().starts_with('['))
            .map_or(lines.len(), |i| at + 1 + i);
        if lines[at + 1..table_end]
            .iter()
            .any(|l| l.trim_start().starts_with("host-key"))
        {
            return Err(AppError::Usage(
                format!("{} already has a host-key in {}", plan.name, path.display()),
                Some("remove it first if the host's key really changed".to_owned()),
            ));
        }
        let quoted: Vec<String> = keys.iter().map(|k| format!("\"{k}\"")).collect();
        lines.insert(at + 1, format!("host-key = [{}]", quoted.join(", ")));
    }
    let mut new = lines.join("\n");
    new.push('\n');
    std::fs::write(path, new)
        .map_err(|err| AppError::Usage(format!("cannot write {}: {err}", path.display()), None))
}
