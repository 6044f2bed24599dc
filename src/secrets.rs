//! Secrets (issue 19): reading the selected hosts' secrets before any host is contacted (for
//! `apply`, `plan` and `secrets upload`), and `hbdeploy secrets upload`, which writes them
//! without deploying.
//!
//! A secret's content is read once per run however many hosts get it (a fleet-wide secret from
//! `pass` asks for the passphrase once), and it is never printed: the table shows names and
//! the first characters of each SHA-256.

use std::collections::BTreeMap;
use std::process::ExitCode;

use hbdeploy_inventory::{Fleet, Upload};
use hbdeploy_pipeline::{
    HostPlan, Secret, SecretContent, SecretSource, SecretUpload, SecretsRequest, SecretsResult,
};

use crate::cli::{Cli, SecretsArgs, SecretsCommand};
use crate::error::{AppError, EXIT_HOST_FAILED};
use crate::hosts::{Overrides, load, parallel};
use crate::summary::table;

/// Reads the secrets of every host in `plans` from fleet.toml's sources into the plans. The
/// first that cannot be read stops the run (exit 2) before any host is contacted.
pub(crate) async fn read(fleet: &Fleet, plans: &mut [HostPlan]) -> Result<(), AppError> {
    let mut read: BTreeMap<SecretSource, SecretContent> = BTreeMap::new();
    for plan in plans.iter_mut() {
        let Some(host) = fleet.host(&plan.name) else {
            continue;
        };
        for secret in &host.secrets {
            let source = match &secret.source {
                hbdeploy_inventory::SecretSource::File(path) => SecretSource::File(path.clone()),
                hbdeploy_inventory::SecretSource::Command(argv) => {
                    SecretSource::Command(argv.clone())
                }
            };
            let content = match read.get(&source) {
                Some(content) => content.clone(),
                None => {
                    let content = hbdeploy_pipeline::load(&secret.name, &source)
                        .await
                        .map_err(AppError::Secret)?;
                    read.insert(source, content.clone());
                    content
                }
            };
            plan.secrets.push(Secret {
                name: secret.name.clone(),
                dest: secret.dest.clone(),
                owner: secret.owner.clone(),
                group: secret.group.clone(),
                mode: secret.mode,
                upload: match secret.upload {
                    Upload::PreActivation => SecretUpload::PreActivation,
                    Upload::PostActivation => SecretUpload::PostActivation,
                },
                content,
            });
        }
    }
    Ok(())
}

/// `hbdeploy secrets …`.
pub(crate) async fn secrets(cli: &Cli, args: &SecretsArgs) -> Result<ExitCode, AppError> {
    match &args.command {
        SecretsCommand::Upload(args) => upload(cli, args).await,
    }
}

/// `hbdeploy secrets upload`: every secret of the selected hosts, both kinds, without deploying.
async fn upload(cli: &Cli, args: &crate::cli::SecretsUploadArgs) -> Result<ExitCode, AppError> {
    let (fleet, mut hosts) = load(cli, &args.selection, false, &Overrides::default())?;
    hosts.retain(|plan| {
        fleet
            .host(&plan.name)
            .is_some_and(|h| !h.secrets.is_empty())
    });
    if hosts.is_empty() {
        return Err(AppError::Usage(
            "none of the selected hosts has secrets; nothing was uploaded".to_owned(),
            Some(
                "add [secrets.NAME] (every host) or [hosts.HOST.secrets.NAME] to fleet.toml; \
                 see docs/fleet.md"
                    .to_owned(),
            ),
        ));
    }
    read(&fleet, &mut hosts).await?;
    let mut session = crate::passphrase::unlock(&mut hosts).await?;
    if args.ask_sudo_password {
        crate::sudo::ask(&hosts, &mut session).await?;
    }
    let request = SecretsRequest {
        parallel: parallel(&fleet, args.parallel),
        hosts,
        session,
    };
    let results = hbdeploy_pipeline::upload_secrets(&request).await;
    if args.json {
        crate::ui::out(&format!("{:#}\n", to_json(&results)));
    } else {
        crate::ui::out(&render(&results));
    }
    Ok(if results.iter().all(|r| r.error.is_none()) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_HOST_FAILED)
    })
}

/// The first characters of a hash, enough to tell two apart.
pub(crate) fn short_hash(sha256: &str) -> &str {
    sha256.get(..12).unwrap_or(sha256)
}

/// The per-host table, then each failure.
fn render(results: &[SecretsResult]) -> String {
    let rows: Vec<Vec<String>> = results
        .iter()
        .map(|r| {
            let written = r
                .written
                .iter()
                .map(|s| format!("{} ({})", s.name, short_hash(&s.sha256)))
                .collect::<Vec<_>>()
                .join(", ");
            vec![
                r.host.clone(),
                if r.error.is_none() { "ok" } else { "FAILED" }.to_owned(),
                if written.is_empty() {
                    "-".to_owned()
                } else {
                    written
                },
            ]
        })
        .collect();
    let mut text = table(&["HOST", "RESULT", "WRITTEN (SHA-256)"], rows);
    for result in results {
        if let Some(error) = &result.error {
            text.push_str(&crate::error::host_failure(
                &result.host,
                error,
                &error.tail(),
            ));
        }
    }
    text
}

fn to_json(results: &[SecretsResult]) -> serde_json::Value {
    use hbdeploy_files::Hint as _;
    let hosts: Vec<serde_json::Value> = results
        .iter()
        .map(|r| {
            serde_json::json!({
                "host": r.host,
                "outcome": if r.error.is_none() { "succeeded" } else { "failed" },
                "secrets": r.written.iter().map(|s| serde_json::json!({
                    "name": s.name,
                    "sha256": s.sha256,
                })).collect::<Vec<_>>(),
                "error": r.error.as_ref().map(|e| hbdeploy_files::chain(e)),
                "hint": r.error.as_ref().and_then(|e| e.hint()),
                "duration_secs": crate::json::seconds(r.duration),
            })
        })
        .collect();
    serde_json::json!({
        "command": "secrets upload",
        "succeeded": results.iter().all(|r| r.error.is_none()),
        "hosts": hosts,
    })
}
