//! hbdeploy: a push-model NixOS fleet deployer.
//!
//! The binary is the only part that prints: it parses the command line, loads the inventory,
//! runs the pipeline with a UI task listening to its events, prints the per-host results, and
//! turns the outcome into an exit code: 0 every host succeeded, 1 some host failed, 2 usage,
//! configuration or environment error.

mod cli;
mod install;
mod summary;
mod ui;

use std::process::ExitCode;

use clap::Parser;
use console::Term;
use hbdeploy_inventory::{Fleet, InventoryError, SelectError, Selector};
use hbdeploy_nix::Nix;
use hbdeploy_pipeline::{DeployRequest, EventSender, HostPlan, PipelineError, deploy};
use hbdeploy_ssh::Target;

use crate::cli::{ApplyArgs, Cli, Command};

/// Exit code when some host failed.
const EXIT_HOST_FAILED: u8 = 1;
/// Exit code for usage, configuration and environment errors.
const EXIT_USAGE: u8 = 2;

/// Errors that stop the run before or outside the per-host work.
#[derive(Debug)]
enum AppError {
    Inventory(InventoryError),
    Select(SelectError),
    Pipeline(PipelineError),
    Install(hbdeploy_pipeline::install::InstallError),
    Runtime(std::io::Error),
}

impl AppError {
    fn render(&self) -> String {
        let (error, hint): (&dyn std::error::Error, Option<String>) = match self {
            AppError::Inventory(err) => (err, err.hint().map(str::to_owned)),
            AppError::Select(err) => (err, err.hint().map(str::to_owned)),
            AppError::Pipeline(err) => (err, err.hint()),
            AppError::Install(err) => (err, err.hint()),
            AppError::Runtime(err) => (err, None),
        };
        let mut text = format!("error: {error}\n");
        let mut source = error.source();
        while let Some(cause) = source {
            text.push_str(&format!("  caused by: {cause}\n"));
            source = cause.source();
        }
        if let Some(hint) = hint {
            text.push_str(&format!("hint: {hint}\n"));
        }
        text
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty()) {
        console::set_colors_enabled(false);
        console::set_colors_enabled_stderr(false);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => return fail(AppError::Runtime(err)),
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(err) => fail(err),
    }
}

fn fail(err: AppError) -> ExitCode {
    let _ = Term::stderr().write_str(&err.render());
    ExitCode::from(EXIT_USAGE)
}

async fn run(cli: Cli) -> Result<ExitCode, AppError> {
    match cli.command {
        Command::Apply(ref args) => apply(&cli, args).await,
        Command::Install(ref args) => install::run(&cli, args).await,
    }
}

/// The plan for one inventory host.
fn plan(host: &hbdeploy_inventory::Host) -> HostPlan {
    HostPlan {
        name: host.name.to_string(),
        attr: host.attr.clone(),
        target: Target {
            address: host.address.clone(),
            port: host.ssh.port,
            user: host.ssh.user.clone(),
            identity_file: host.ssh.identity_file.clone(),
            known_hosts: host.ssh.known_hosts.clone(),
            connect_timeout: host.ssh.connect_timeout,
        },
    }
}

async fn apply(cli: &Cli, args: &ApplyArgs) -> Result<ExitCode, AppError> {
    let fleet = Fleet::load(&cli.fleet).map_err(AppError::Inventory)?;
    let selectors = Selector::parse_args(args.all, &args.selectors).map_err(AppError::Select)?;
    let hosts = fleet.select(&selectors).map_err(AppError::Select)?;
    let parallel = match args
        .parallel
        .and_then(|n| std::num::NonZeroUsize::new(n.into()))
    {
        Some(n) => n,
        None => fleet.parallel,
    };
    let request = DeployRequest {
        flake: fleet.flake.to_string(),
        hosts: hosts.into_iter().map(plan).collect(),
        goal: args.goal.into(),
        parallel,
    };
    let nix = Nix::detect()
        .await
        .map_err(|err| AppError::Pipeline(err.into()))?;

    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let names = request.hosts.iter().map(|h| h.name.clone()).collect();
    let ui = tokio::spawn(ui::run(rx, ui::Mode::detect(cli.verbose), names));
    let result = deploy(&request, &nix, EventSender::new(tx)).await;
    // The pipeline dropped every sender when it returned: the UI drains what is left and ends.
    let _ = ui.await;
    let report = result.map_err(AppError::Pipeline)?;

    let _ = Term::stdout().write_str(&summary::render(&report));
    Ok(if report.all_succeeded() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_HOST_FAILED)
    })
}
