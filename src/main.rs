//! hbdeploy: a push-model NixOS fleet deployer.
//!
//! The binary is the only part that prints: it parses the command line, loads the inventory,
//! runs the pipeline with a UI task listening to its events, prints the per-host results, and
//! turns the outcome into an exit code: 0 every host succeeded, 1 some host failed, 2 usage,
//! configuration or environment error.

mod build;
mod change;
mod cli;
mod completions;
mod error;
mod exec;
mod history;
mod hosts;
mod inspect;
mod install;
mod json;
mod keyscan;
mod ledger;
mod passphrase;
mod plan;
mod preflight;
mod provenance;
mod reboot;
mod secret;
mod secrets;
mod shutdown;
mod sudo;
mod summary;
mod systems;
mod ui;

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use console::Term;

use crate::cli::{Cli, ColorChoice, Command};
use crate::error::{AppError, EXIT_INTERRUPTED};
use crate::shutdown::Shutdown;

fn main() -> ExitCode {
    // Run as `ssh` by `nix copy`: relay to this run's connection (hbdeploy_ssh::relay).
    if let Some(stood_in) = hbdeploy_ssh::relay::stand_in() {
        return match stood_in {
            Ok(code) => ExitCode::from(code),
            Err(err) => {
                // One line, as `ssh` says why it failed; nix shows it with its own error.
                let text = format!("hbdeploy (as ssh): {}", hbdeploy_files::chain(&err));
                let _ = Term::stderr().write_line(&text);
                ExitCode::from(255)
            }
        };
    }
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
        .worker_threads(WORKER_THREADS)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => return fail(AppError::Runtime(err)),
    };
    let code = runtime.block_on(async {
        let interrupts = match shutdown::interrupts() {
            Ok(interrupts) => interrupts,
            Err(err) => return fail(AppError::Runtime(err)),
        };
        let shutdown = Shutdown::default();
        let say = |line: &str| {
            let _ = Term::stderr().write_line(line);
        };
        match shutdown
            .supervise(run(&cli, &shutdown), interrupts, say)
            .await
        {
            // Ended by Ctrl-C: the command's future, and all it held, is dropped by now.
            None => ExitCode::from(EXIT_INTERRUPTED),
            Some(Ok(_)) if shutdown.interrupted() => ExitCode::from(EXIT_INTERRUPTED),
            Some(Ok(code)) => code,
            Some(Err(err)) => fail(err),
        }
    });
    // The tasks the command spawned are dropped here, their destructors run; a blocking read
    // still waiting on the terminal (a prompt interrupted by Ctrl-C) is not waited for long.
    runtime.shutdown_timeout(SHUTDOWN_WAIT);
    // A relay still in use by a task that outlived the wait keeps its directory: gone now.
    hbdeploy_ssh::relay::remove_leftovers();
    code
}

/// The runtime's worker threads (besides the main thread, which runs the command's own future,
/// and the blocking pool, which runs prompts and key decryption). One, whatever the core count:
/// hbdeploy waits on hosts and on `nix`, its own CPU work (SSH encryption of the copies) is a
/// small share of a deployment's, and with a second worker a copying host's russh session grew
/// its output buffer far beyond the relay's bound — the relay refilled on one worker while the
/// session, on the other, batched everything queued into one write (about 0.9 MiB per copying
/// host, 24.6 against 16.9 MiB peak RSS at 100 hosts with `--parallel 10`; docs/benchmarks.md,
/// "2026-12-06 (22:00)"). `block_in_place` still works: the runtime stays multi-threaded.
const WORKER_THREADS: usize = 1;

/// How long the end of a run waits for blocking work still running (a prompt's read).
const SHUTDOWN_WAIT: Duration = Duration::from_secs(1);

fn fail(err: AppError) -> ExitCode {
    let _ = Term::stderr().write_str(&err.render());
    ExitCode::from(err.exit_code())
}

async fn run(cli: &Cli, shutdown: &Shutdown) -> Result<ExitCode, AppError> {
    match &cli.command {
        Command::Apply(args) => change::apply(cli, args, shutdown).await,
        Command::Rollback(args) => change::rollback(cli, args).await,
        Command::Generations(args) => inspect::generations(cli, args).await,
        Command::Status(args) => inspect::status(cli, args).await,
        Command::Check(args) => inspect::check(cli, args).await,
        Command::Keyscan(args) => keyscan::run(cli, args).await,
        Command::Install(args) => install::run(cli, args).await,
        Command::Plan(args) => plan::plan(cli, args).await,
        Command::Build(args) => build::build(cli, args, shutdown).await,
        Command::Exec(args) => exec::exec(cli, args).await,
        Command::History(args) => history::history(cli, args),
        Command::Reboot(args) => reboot::reboot(cli, args).await,
        Command::Secrets(args) => secrets::secrets(cli, args).await,
        Command::Completions(args) => Ok(completions::completions(args)),
        Command::Man(args) => completions::man(args),
    }
}
