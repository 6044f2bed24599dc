//! hbdeploy: a push-model NixOS fleet deployer.
//!
//! The binary is the only part that prints: it parses the command line, loads the inventory,
//! runs the pipeline with a UI task listening to its events, prints the per-host results, and
//! turns the outcome into an exit code: 0 every host succeeded, 1 some host failed, 2 usage,
//! configuration or environment error.

mod change;
mod cli;
mod completions;
mod exec;
mod history;
mod inspect;
mod install;
mod json;
mod keyscan;
mod ledger;
mod passphrase;
mod plan;
mod preflight;
mod provenance;
mod secret;
mod summary;
mod ui;

use std::num::NonZeroUsize;
use std::process::ExitCode;

use clap::Parser;
use console::Term;
use hbdeploy_inventory::{Fleet, InventoryError, SelectError, Selector};
use hbdeploy_nix::Nix;
use hbdeploy_pipeline::{Check, CheckProbe, HostPlan, HostSafety, HostTransfer, PipelineError};
use hbdeploy_ssh::{Escalation, Target};

use crate::cli::{Cli, ColorChoice, Command, Selection};

/// Exit code when some host failed.
pub(crate) const EXIT_HOST_FAILED: u8 = 1;
/// Exit code for usage, configuration and environment errors.
const EXIT_USAGE: u8 = 2;

/// Errors that stop the run before or outside the per-host work.
#[derive(Debug)]
pub(crate) enum AppError {
    /// fleet.toml could not be used.
    Inventory(InventoryError),
    /// The command line selected no known host.
    Select(SelectError),
    /// nix could not run.
    Pipeline(PipelineError),
    /// `install` refused or could not start.
    Install(hbdeploy_pipeline::install::InstallError),
    /// The async runtime could not start, or a file could not be written.
    Runtime(std::io::Error),
    /// The deployment ledger could not be read.
    Ledger(ledger::LedgerError),
    /// A command's own usage error, with a hint.
    Usage(String, Option<String>),
    /// An encrypted identity file could not be unlocked.
    Passphrase(passphrase::PassphraseError),
    /// The user pressed Ctrl-C at a prompt, before anything was changed.
    Interrupted(String),
    /// A file named in fleet.toml is not a regular file, or is too large.
    File(preflight::Refused),
}

impl From<passphrase::PassphraseError> for AppError {
    fn from(err: passphrase::PassphraseError) -> AppError {
        AppError::Passphrase(err)
    }
}

impl AppError {
    fn render(&self) -> String {
        let (error, hint): (&dyn std::error::Error, Option<String>) = match self {
            AppError::Inventory(err) => (err, err.hint().map(str::to_owned)),
            AppError::Select(err) => (err, err.hint().map(str::to_owned)),
            AppError::Pipeline(err) => (err, err.hint()),
            AppError::Install(err) => (err, err.hint()),
            AppError::Runtime(err) => (err, None),
            AppError::Passphrase(err) => (err, err.hint()),
            AppError::Ledger(err) => (err, Some(err.hint())),
            AppError::File(err) => (err, Some(err.hint())),
            AppError::Interrupted(message) => return format!("error: {message}\n"),
            AppError::Usage(message, hint) => {
                let mut text = format!("error: {message}\n");
                if let Some(hint) = hint {
                    text.push_str(&format!("hint: {hint}\n"));
                }
                return text;
            }
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
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    match cli.color {
        ColorChoice::Always => {
            console::set_colors_enabled(true);
            console::set_colors_enabled_stderr(true);
        }
        ColorChoice::Never => {
            console::set_colors_enabled(false);
            console::set_colors_enabled_stderr(false);
        }
        // console decides per stream: colour only on a terminal.
        ColorChoice::Auto if no_color => {
            console::set_colors_enabled(false);
            console::set_colors_enabled_stderr(false);
        }
        ColorChoice::Auto => {}
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
    match err {
        AppError::Passphrase(passphrase::PassphraseError::Interrupted { .. })
        | AppError::Interrupted(_) => ExitCode::from(change::EXIT_INTERRUPTED),
        _ => ExitCode::from(EXIT_USAGE),
    }
}

async fn run(cli: Cli) -> Result<ExitCode, AppError> {
    match &cli.command {
        Command::Apply(args) => change::apply(&cli, args).await,
        Command::Rollback(args) => change::rollback(&cli, args).await,
        Command::Generations(args) => inspect::generations(&cli, args).await,
        Command::Status(args) => inspect::status(&cli, args).await,
        Command::Check(args) => inspect::check(&cli, args).await,
        Command::Keyscan(args) => keyscan::run(&cli, args).await,
        Command::Install(args) => install::run(&cli, args).await,
        Command::Plan(args) => plan::plan(&cli, args).await,
        Command::Exec(args) => exec::exec(&cli, args).await,
        Command::History(args) => history::history(&cli, args),
        Command::Completions(args) => Ok(completions::completions(args)),
        Command::Man(args) => completions::man(args),
    }
}

/// The plan for one inventory host.
fn plan(fleet: &Fleet, host: &hbdeploy_inventory::Host) -> HostPlan {
    HostPlan {
        name: host.name.to_string(),
        attr: host.attr.clone(),
        target: target(fleet, host, 0),
        safety: HostSafety {
            magic_rollback: host.safety.magic_rollback,
            confirm_timeout: host.safety.confirm_timeout,
        },
        wave: host.wave,
        health: host.health.iter().map(check).collect(),
        transfer: HostTransfer {
            substitute: host.transfer.substitute,
            compress: host.transfer.compress,
            build_on_target: host.transfer.build_on == hbdeploy_inventory::BuildOn::Target,
            // Assumed trusted unless fleet.toml says otherwise: a nix that does not trust the
            // user ignores `--no-check-sigs`, and the copy's error then says what to do.
            trusted: host.transfer.trusted.unwrap_or(true),
        },
    }
}

/// How to reach `host`, through its `proxy-jump` host when it has one. `depth` bounds chains of
/// jump hosts that name each other.
fn target(fleet: &Fleet, host: &hbdeploy_inventory::Host, depth: usize) -> Target {
    let jump = host
        .proxy_jump
        .as_deref()
        .and_then(|jump| match fleet.host(jump) {
            Some(via) if depth < 8 => Some(Box::new(target(fleet, via, depth + 1))),
            Some(_) => None,
            None => Some(Box::new(jump_target(host, jump))),
        });
    Target {
        address: host.address.clone(),
        port: host.ssh.port,
        user: host.ssh.user.clone(),
        identity_file: host.ssh.identity_file.clone(),
        identities: hbdeploy_ssh::Identities::default(),
        known_hosts: host.ssh.known_hosts.clone(),
        pinned_keys: host.host_keys.clone(),
        accept_new: false,
        jump,
        connect_timeout: host.ssh.connect_timeout,
        escalation: Some(Escalation {
            command: host.ssh.privilege_escalation.clone(),
            password: None,
        }),
        keepalive: host.ssh.keepalive,
    }
}

/// A jump host given as `[user@]address[:port]`, with `host`'s key, known_hosts and timeout.
fn jump_target(host: &hbdeploy_inventory::Host, spec: &str) -> Target {
    let (user, rest) = match spec.split_once('@') {
        Some((user, rest)) => (user.to_owned(), rest),
        None => (host.ssh.user.clone(), spec),
    };
    let (address, port) = match rest.rsplit_once(':') {
        Some((address, port)) if port.parse::<u16>().is_ok() => {
            (address.to_owned(), port.parse().unwrap_or(22))
        }
        _ => (rest.to_owned(), 22),
    };
    Target {
        address,
        port,
        user,
        identity_file: host.ssh.identity_file.clone(),
        identities: hbdeploy_ssh::Identities::default(),
        known_hosts: host.ssh.known_hosts.clone(),
        pinned_keys: Vec::new(),
        accept_new: false,
        jump: None,
        connect_timeout: host.ssh.connect_timeout,
        // Nothing runs on a jump host but the forwarding of the connection.
        escalation: None,
        keepalive: host.ssh.keepalive,
    }
}

/// The pipeline's form of a fleet.toml health check.
fn check(check: &hbdeploy_inventory::HealthCheck) -> Check {
    use hbdeploy_inventory::Probe;
    Check {
        probe: match &check.probe {
            Probe::Command(command) => CheckProbe::Command(command.clone()),
            Probe::Tcp(address) => CheckProbe::Tcp(address.clone()),
            Probe::Http { url, status } => CheckProbe::Http {
                url: url.clone(),
                status: *status,
            },
        },
        timeout: check.timeout,
        retries: check.retries,
    }
}

/// The fleet and the plans of the hosts `selection` names; with `default_all`, no selection
/// means every host.
fn load(
    cli: &Cli,
    selection: &Selection,
    default_all: bool,
) -> Result<(Fleet, Vec<HostPlan>), AppError> {
    let fleet = Fleet::load(&cli.fleet).map_err(AppError::Inventory)?;
    let all = selection.all || (default_all && selection.selectors.is_empty());
    let selectors = Selector::parse_args(all, &selection.selectors).map_err(AppError::Select)?;
    let plans = fleet
        .select(&selectors)
        .map_err(AppError::Select)?
        .into_iter()
        .map(|host| plan(&fleet, host))
        .collect::<Vec<_>>();
    preflight::check(&plans, fleet.transfer.signing_key.as_deref()).map_err(AppError::File)?;
    Ok((fleet, plans))
}

/// `--parallel` when given, else the fleet's setting.
fn parallel(fleet: &Fleet, flag: Option<u16>) -> NonZeroUsize {
    flag.and_then(|n| NonZeroUsize::new(n.into()))
        .unwrap_or(fleet.parallel)
}

/// The evaluation limits: the flags, else fleet.toml, else the machine's.
fn eval_limits(fleet: &Fleet, flags: &cli::EvalArgs) -> hbdeploy_pipeline::EvalLimits {
    let workers = flags
        .eval_workers
        .and_then(|n| NonZeroUsize::new(n.into()))
        .or(fleet.eval.workers);
    let mut limits =
        hbdeploy_pipeline::EvalLimits::detect(workers, flags.eval_memory.or(fleet.eval.memory));
    limits.chunk = flags.eval_chunk.and_then(|n| NonZeroUsize::new(n.into()));
    limits
}

/// Finds nix, or says how to install it.
async fn nix() -> Result<Nix, AppError> {
    Nix::detect()
        .await
        .map_err(|err| AppError::Pipeline(err.into()))
}

/// Prints `text` on stdout. A closed stdout (e.g. `| head`) is not an error worth reporting.
fn out(text: &str) {
    let _ = Term::stdout().write_str(text);
}
