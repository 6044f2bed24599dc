//! `hbdeploy install HOST --disk …`: the binary's side of an install. It picks the way (print,
//! on this machine, or pushed to `--target`), asks for the consent to wipe the disks on a
//! terminal, shows the steps on stderr and the report on stdout, and picks the exit code: 0
//! installed, 1 a step failed after the consent, 2 refused or unable to start (nothing changed).

use std::process::ExitCode;
use std::time::Duration;

use console::Term;
use hbdeploy_inventory::{Fleet, Host, SelectError, Selector};
use hbdeploy_nix::{DiskDevice, Nix, NixError, disko_install_argv};
use hbdeploy_pipeline::EventReceiver;
use hbdeploy_pipeline::install::{
    self, InstallError, InstallEvent, InstallEvents, InstallReport, InstallRequest, InstallStep,
    StepError, WipeConsent,
};
use hbdeploy_ssh::Target;
use hbdeploy_ssh::shell_line;
use tokio::task::JoinHandle;

use crate::cli::{Cli, InstallArgs};
use crate::error::{AppError, EXIT_HOST_FAILED};
use crate::secret::interactive;

/// The port of the installer's sshd when `--target` names none.
const INSTALLER_PORT: u16 = 22;

/// Runs `hbdeploy install`.
pub async fn run(cli: &Cli, args: &InstallArgs) -> Result<ExitCode, AppError> {
    // Without a way to ask, refuse before anything else happens.
    if !args.print && !args.yes_wipe_disk && !interactive() {
        let devices = args.disks.iter().map(|d| d.device().to_owned()).collect();
        return Err(refuse(InstallError::NoConsent { devices }));
    }
    let fleet = Fleet::load(&cli.fleet).map_err(AppError::Inventory)?;
    let host = one_host(&fleet, &args.host)?;
    let request = InstallRequest {
        flake: fleet.flake.to_string(),
        host: host.name.to_string(),
        attr: host.attr.clone(),
    };
    let nix = Nix::detect()
        .await
        .map_err(|err| refuse(InstallError::Nix(err)))?;
    if let Some(target) = &args.target {
        // A live installer has a fresh host key of its own, never the installed host's, and is
        // reached as root.
        let mut target = hbdeploy_ssh::Target {
            compress: host.transfer.compress,
            ..crate::hosts::with_settings_of(
                host,
                target.address.clone(),
                target.port.unwrap_or(INSTALLER_PORT),
                target.user.clone().unwrap_or_else(|| host.ssh.user.clone()),
            )
        };
        crate::preflight::check_target(host.name.as_str(), &target).map_err(AppError::File)?;
        let session = crate::passphrase::unlock_target(&mut target).await?;
        return push(cli, args, &nix, request, (&target, &session)).await;
    }
    let (events, ui) = listen(&request.host, cli.verbose);
    let disks = install::resolve_disks(&nix, &request, &args.disks, &events).await;
    finish(events, ui).await;
    let disks = disks.map_err(refuse)?;
    let argv = disko_install_argv(&request.flake, &request.attr, &disks);
    if args.print {
        let _ = Term::stdout().write_line(&shell_line(&argv));
        return Ok(ExitCode::SUCCESS);
    }
    on_this_machine(args, &request, &disks, &argv).await
}

fn refuse(err: InstallError) -> AppError {
    AppError::Install(err)
}

/// The pushed install: evaluate and check (refusals are errors), ask, then install and report.
async fn push(
    cli: &Cli,
    args: &InstallArgs,
    nix: &Nix,
    request: InstallRequest,
    (target, session): (&Target, &hbdeploy_ssh::Session),
) -> Result<ExitCode, AppError> {
    let host = request.host.clone();
    let (events, ui) = listen(&host, cli.verbose);
    let installer = async {
        let disks = install::resolve_disks(nix, &request, &args.disks, &events).await?;
        let plan = install::plan(nix, request, disks, &events).await?;
        install::connect(plan, target, args.force, &events, session).await
    }
    .await;
    // Every progress line is out before the prompt or the error.
    finish(events, ui).await;
    let installer = installer.map_err(refuse)?;

    let wipe: Vec<(String, String)> = installer
        .disks()
        .iter()
        .map(|d| (describe(&d.disk, &d.about), d.disk.device.clone()))
        .collect();
    let consent = match consent(args, &host, &target.display(), wipe).await {
        Ok(consent) => consent,
        Err(err) => {
            installer.close().await;
            return Err(refuse(err));
        }
    };
    let (events, ui) = listen(&host, cli.verbose);
    let report = installer.install(nix, consent, &events).await;
    finish(events, ui).await;
    let _ = Term::stdout().write_str(&render(&report));
    Ok(match report.outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) => ExitCode::from(EXIT_HOST_FAILED),
    })
}

/// The one host `name` selects; a tag is refused, an unknown name gets the usual suggestions.
fn one_host<'a>(fleet: &'a Fleet, name: &str) -> Result<&'a Host, AppError> {
    if let Some(tag) = name.strip_prefix('@') {
        let tag = tag.to_owned();
        return Err(AppError::Install(InstallError::TagNotHost { tag }));
    }
    // A pattern or an exclusion could choose several hosts, or the wrong one: disks are wiped.
    if name.starts_with('!') || name.contains(['*', '?', '[']) {
        return Err(AppError::Usage(
            format!("install takes one host by its name, not the pattern or exclusion `{name}`"),
            Some("name the host: hbdeploy install HOST --disk DEVICE".to_owned()),
        ));
    }
    let selectors = Selector::parse_args(false, &[name.to_owned()]).map_err(AppError::Select)?;
    let hosts = fleet.select(&selectors).map_err(AppError::Select)?;
    hosts
        .into_iter()
        .next()
        .ok_or(AppError::Select(SelectError::Nothing))
}

/// What a disk is, for the prompt: its disko name, and its size and model when known.
fn describe(disk: &DiskDevice, about: &str) -> String {
    match about {
        "" => format!("disko disk {}", disk.name),
        _ => format!("disko disk {}, {about}", disk.name),
    }
}

/// The consent to wipe `disks` (what each is, its device) of `whose`: `--yes-wipe-disk`, or the
/// user typing every device again on the terminal.
async fn consent(
    args: &InstallArgs,
    host: &str,
    whose: &str,
    disks: Vec<(String, String)>,
) -> Result<WipeConsent, InstallError> {
    if args.yes_wipe_disk {
        return Ok(WipeConsent::given());
    }
    if !interactive() {
        let devices = disks.into_iter().map(|(_, device)| device).collect();
        return Err(InstallError::NoConsent { devices });
    }
    let host = host.to_owned();
    let whose = whose.to_owned();
    let first = disks.first().map(|(_, d)| d.clone()).unwrap_or_default();
    // Reading the terminal blocks: off the runtime's threads, which keep the SSH connection
    // alive meanwhile.
    let asked = tokio::task::spawn_blocking(move || {
        let term = Term::stderr();
        let mut text =
            format!("\nInstalling {host} ERASES EVERYTHING on these disks of {whose}:\n");
        for (about, device) in &disks {
            text.push_str(&format!("  {device}  ({about})\n"));
        }
        let _ = term.write_line(&text);
        for (_, device) in &disks {
            let _ = term.write_str(&format!(
                "Type {device} to wipe it, anything else to stop: "
            ));
            let answer = term.read_line().unwrap_or_default();
            if answer.trim() != device {
                return Err(InstallError::Declined {
                    device: device.clone(),
                });
            }
        }
        Ok(WipeConsent::given())
    })
    .await;
    // A prompt that ended abnormally is no consent.
    asked.unwrap_or(Err(InstallError::Declined { device: first }))
}

/// Runs `disko-install` on this machine, after checking it and asking; its output goes straight
/// to the terminal.
async fn on_this_machine(
    args: &InstallArgs,
    request: &InstallRequest,
    disks: &[DiskDevice],
    argv: &[String],
) -> Result<ExitCode, AppError> {
    install::check_this_machine(disks, args.force).map_err(refuse)?;
    let wipe = disks
        .iter()
        .map(|d| (describe(d, ""), d.device.clone()))
        .collect();
    consent(args, &request.host, "this machine", wipe)
        .await
        .map_err(refuse)?;
    let term = Term::stderr();
    let _ = term.write_line(&format!("[{}] running {}", request.host, shell_line(argv)));
    let mut words = argv.iter();
    let program = words.next().map_or("nix", String::as_str);
    let status = tokio::process::Command::new(program)
        .args(words)
        .status()
        .await
        .map_err(|source| {
            refuse(InstallError::Nix(NixError::Spawn {
                command: shell_line(argv),
                source,
            }))
        })?;
    if status.success() {
        let _ = Term::stdout().write_line(&format!(
            "installed {} on this machine; reboot into it",
            request.host
        ));
        return Ok(ExitCode::SUCCESS);
    }
    let error = StepError::DiskoInstall {
        status: status.to_string(),
        devices: disks.iter().map(|d| d.device.clone()).collect(),
    };
    let _ = term.write_str(&failure(&request.host, &error));
    Ok(ExitCode::from(EXIT_HOST_FAILED))
}

/// Starts the task that prints the install's progress on stderr.
fn listen(host: &str, verbose: bool) -> (InstallEvents, JoinHandle<()>) {
    let (events, rx) = InstallEvents::channel();
    let ui = tokio::spawn(show(rx, host.to_owned(), verbose));
    (events, ui)
}

/// Drops the sender and waits until every event sent so far has been printed.
async fn finish(events: InstallEvents, ui: JoinHandle<()>) {
    drop(events);
    let _ = ui.await;
}

async fn show(mut events: EventReceiver<InstallEvent>, host: String, verbose: bool) {
    let term = Term::stderr();
    while let Some(event) = events.recv().await {
        if let Some(line) = plain_line(&host, &event, verbose) {
            let _ = term.write_line(&line);
        }
    }
}

/// The progress line of one event, if it is shown: `[host] step`, and with `-v` every line the
/// steps' commands print.
fn plain_line(host: &str, event: &InstallEvent, verbose: bool) -> Option<String> {
    match event {
        InstallEvent::Step(step) => Some(format!("[{host}] {step}")),
        InstallEvent::Note(text) => Some(format!("[{host}] {text}")),
        InstallEvent::Output { step, line } if verbose => Some(format!("[{host}] {step} | {line}")),
        InstallEvent::Output { .. } => None,
    }
}

/// The report: one row per step after the consent, the failure with its output, and a last line
/// saying what became of the machine.
fn render(report: &InstallReport) -> String {
    let mut rows: Vec<[String; 4]> = vec![["STEP", "RESULT", "TIME", "DETAIL"].map(String::from)];
    for step in InstallStep::AFTER_CONSENT {
        let ran = report.steps.iter().find(|s| s.step == step);
        let detail = match step {
            InstallStep::Build => report.system.short(),
            InstallStep::Copy => report
                .copy
                .map(|c| format!("{} of {} paths", c.sent, c.total))
                .unwrap_or_default(),
            InstallStep::Disko => report
                .disks
                .iter()
                .map(|d| format!("{}={}", d.name, d.device))
                .collect::<Vec<_>>()
                .join(" "),
            _ => format!("--root {}", report.root),
        };
        rows.push(match ran {
            Some(record) => [
                step.to_string(),
                if record.ok { "ok" } else { "FAILED" }.to_owned(),
                seconds(record.duration),
                detail,
            ],
            None => [step.to_string(), "-".into(), "-".into(), String::new()],
        });
    }
    let mut widths = [0; 4];
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut text = String::from("\n");
    for row in &rows {
        let cells: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        text.push_str(cells.join("  ").trim_end());
        text.push('\n');
    }
    match (&report.outcome, report.failed_step()) {
        (Ok(()), _) => text.push_str(&format!(
            "\ninstalled {} on {}: {}; reboot the machine into it\n",
            report.host, report.target, report.system
        )),
        (Err(error), step) => {
            text.push('\n');
            text.push_str(&failure(&report.host, error));
            let at = step.map(|s| s.to_string()).unwrap_or_default();
            text.push_str(&format!(
                "\ninstall of {} on {} FAILED at {at}\n",
                report.host, report.target
            ));
        }
    }
    text
}

/// A failed step: the error, its causes, the command's last lines and the hint.
fn failure(host: &str, error: &StepError) -> String {
    crate::error::host_failure(host, error, &error.tail())
}

fn seconds(duration: Duration) -> String {
    format!("{:.1}s", duration.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_lines_name_host_and_step() {
        let step = InstallEvent::Step(InstallStep::NixosInstall);
        assert_eq!(
            plain_line("desktop", &step, false).as_deref(),
            Some("[desktop] nixos-install")
        );
        let output = InstallEvent::Output {
            step: InstallStep::Disko,
            line: "formatting".into(),
        };
        assert_eq!(plain_line("desktop", &output, false), None);
        assert_eq!(
            plain_line("desktop", &output, true).as_deref(),
            Some("[desktop] disko | formatting")
        );
    }
}
