//! A pushed install: evaluate, check the target, then (with the user's consent) build, copy, run
//! the disko script and `nixos-install`, over one SSH connection to the live installer (and
//! those `nix copy` opens for itself).
//!
//! Both closures go to the installer's own store (in its RAM on an ISO); `nixos-install` then
//! copies the system onto the new disks. The store paths put into command lines were validated
//! as [`StorePath`]s, the devices when parsed and the mount point here.

use std::time::Instant;

use hbdeploy_nix::{DiskDevice, InstallDrvs, Nix, StorePath};
use hbdeploy_ssh::{Connection, Target};

use super::live::{self, SYSTEM_BIN};
use super::{
    InstallError, InstallEvents, InstallReport, InstallRequest, InstallStep, StepError, StepRecord,
    WipeConsent,
};
use crate::CopyStats;

/// Everything evaluated for a pushed install: the disks and what to build for them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallPlan {
    /// The host and flake.
    pub request: InstallRequest,
    /// Each disk and its device, in declared order.
    pub disks: Vec<DiskDevice>,
    /// The system and disko script, evaluated with those devices.
    pub drvs: InstallDrvs,
}

/// Evaluates the system and the disko script of `disks` (one `nix eval`), so that a
/// configuration that does not evaluate is refused before anyone is asked to wipe a disk.
pub async fn plan(
    nix: &Nix,
    request: InstallRequest,
    disks: Vec<DiskDevice>,
    events: &InstallEvents,
) -> Result<InstallPlan, InstallError> {
    let mut sink = |line: &str| events.output(InstallStep::Evaluate, line);
    let drvs = nix
        .install_drvs(&request.flake, &request.attr, &disks, &mut sink)
        .await?
        .map_err(|lines| InstallError::Eval {
            attr: request.attr.clone(),
            lines,
        })?;
    let root = &drvs.root_mount_point;
    let plain = root.starts_with('/')
        && root
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-".contains(&b));
    if !plain {
        return Err(InstallError::BadRootMountPoint {
            attr: request.attr.clone(),
            root: root.clone(),
        });
    }
    Ok(InstallPlan {
        request,
        disks,
        drvs,
    })
}

/// A disk as the target sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbedDisk {
    /// The disk and its device.
    pub disk: DiskDevice,
    /// Size and model from the target's lsblk; empty when it cannot tell.
    pub about: String,
}

/// A checked target, connected, waiting for the consent to wipe its disks.
#[derive(Debug)]
pub struct Installer {
    plan: InstallPlan,
    conn: Connection,
    disks: Vec<ProbedDisk>,
}

/// Connects to `target` and checks it: a live installer (unless `force`), a root login,
/// `nixos-install`, and every device. Changes nothing.
pub async fn connect(
    plan: InstallPlan,
    target: &Target,
    force: bool,
    events: &InstallEvents,
    session: &hbdeploy_ssh::Session,
) -> Result<Installer, InstallError> {
    events.step(InstallStep::Connect);
    let conn = Connection::connect(target, session)
        .await
        .map_err(|err| InstallError::Connect(Box::new(err)))?;
    match check(&conn, &plan, force, events).await {
        Ok(disks) => Ok(Installer { plan, conn, disks }),
        Err(error) => {
            conn.close().await;
            Err(error)
        }
    }
}

async fn check(
    conn: &Connection,
    plan: &InstallPlan,
    force: bool,
    events: &InstallEvents,
) -> Result<Vec<ProbedDisk>, InstallError> {
    let target = conn.target().display();
    let devices: Vec<&str> = plan.disks.iter().map(|d| d.device.as_str()).collect();
    let output = crate::remote::install_probe(conn, SYSTEM_BIN, &devices)
        .await
        .map_err(|err| InstallError::Channel(Box::new(err)))?;
    if !output.exit.success() {
        return Err(InstallError::Probe {
            target,
            exit: output.exit.clone(),
            tail: output.tail_lines(),
        });
    }
    let probe = live::parse_probe(&output.stdout);
    if let Err(evidence) = live::judge(&probe.os_release) {
        if !force {
            return Err(InstallError::NotLive { target, evidence });
        }
        events.note(format!(
            "not a live installer ({evidence}); going on: --force"
        ));
    }
    if probe.uid != "0" {
        return Err(InstallError::NotRoot {
            target,
            uid: probe.uid,
        });
    }
    if !probe.nixos_install {
        return Err(InstallError::NoNixosInstall { target });
    }
    plan.disks
        .iter()
        .map(
            |disk| match probe.devices.iter().find(|(d, _)| *d == disk.device) {
                Some((_, about)) => Ok(ProbedDisk {
                    disk: disk.clone(),
                    about: about.clone(),
                }),
                None => Err(InstallError::NoDevice {
                    target: target.clone(),
                    device: disk.device.clone(),
                }),
            },
        )
        .collect()
}

impl Installer {
    /// The disks that will be wiped, as the target describes them.
    pub fn disks(&self) -> &[ProbedDisk] {
        &self.disks
    }

    /// The target.
    pub fn target(&self) -> &Target {
        self.conn.target()
    }

    /// Ends the connection without installing.
    pub async fn close(self) {
        self.conn.close().await;
    }

    /// Builds, copies, runs the disko script, then `nixos-install`; stops at the first step
    /// that fails. Every step is in the report, with the failure if there was one.
    pub async fn install(
        self,
        nix: &Nix,
        _consent: WipeConsent,
        events: &InstallEvents,
    ) -> InstallReport {
        let mut report = InstallReport {
            host: self.plan.request.host.clone(),
            target: self.conn.target().display(),
            disks: self.plan.disks.clone(),
            system: self.plan.drvs.system.out_path.clone(),
            root: self.plan.drvs.root_mount_point.clone(),
            steps: Vec::new(),
            copy: None,
            outcome: Ok(()),
        };
        let job = Job {
            installer: &self,
            nix,
            events,
        };
        for step in InstallStep::AFTER_CONSENT {
            events.step(step);
            let began = Instant::now();
            let result = job.run(step, &mut report).await;
            report.steps.push(StepRecord {
                step,
                ok: result.is_ok(),
                duration: began.elapsed(),
            });
            if let Err(error) = result {
                report.outcome = Err(error);
                break;
            }
        }
        self.conn.close().await;
        report
    }
}

/// The steps' shared context.
struct Job<'a> {
    installer: &'a Installer,
    nix: &'a Nix,
    events: &'a InstallEvents,
}

impl Job<'_> {
    async fn run(&self, step: InstallStep, report: &mut InstallReport) -> Result<(), StepError> {
        let drvs = &self.installer.plan.drvs;
        match step {
            InstallStep::Build => self.build().await,
            InstallStep::Copy => {
                report.copy = Some(self.copy().await?);
                Ok(())
            }
            InstallStep::Disko => {
                let script = &drvs.disko_script.out_path;
                let run = crate::remote::store_program(&self.installer.conn, script, |line| {
                    self.events.output(step, &line.text)
                });
                let output = run
                    .await
                    .map_err(|source| StepError::Channel { step, source })?;
                match output.exit.success() {
                    true => Ok(()),
                    false => Err(StepError::Disko {
                        exit: output.exit.clone(),
                        tail: output.tail_lines(),
                        devices: report.disks.iter().map(|d| d.device.clone()).collect(),
                    }),
                }
            }
            InstallStep::NixosInstall => {
                let root = &drvs.root_mount_point;
                let install = (SYSTEM_BIN, root.as_str(), &drvs.system.out_path);
                let run = crate::remote::nixos_install(&self.installer.conn, install, |line| {
                    self.events.output(step, &line.text)
                });
                let output = run
                    .await
                    .map_err(|source| StepError::Channel { step, source })?;
                match output.exit.success() {
                    true => Ok(()),
                    false => Err(StepError::NixosInstall {
                        exit: output.exit.clone(),
                        tail: output.tail_lines(),
                        system: drvs.system.out_path.clone(),
                        root: root.clone(),
                    }),
                }
            }
            InstallStep::Evaluate | InstallStep::Connect => Ok(()),
        }
    }

    /// One `nix build` of the system and the disko script.
    async fn build(&self) -> Result<(), StepError> {
        let drvs = &self.installer.plan.drvs;
        let both = [drvs.system.clone(), drvs.disko_script.clone()];
        let mut sink = |line: &str| self.events.output(InstallStep::Build, line);
        let built = self
            .nix
            .build(&both, None, &mut sink)
            .await
            .map_err(|err| StepError::Build {
                lines: vec![err.to_string()]
                    .into_iter()
                    .chain(err.tail().iter().cloned())
                    .collect(),
            })?;
        let mut lines: Vec<String> = Vec::new();
        for drv in &both {
            match built.get(&drv.drv_path) {
                Some(Ok(())) => {}
                Some(Err(errors)) => lines.extend(errors.iter().cloned()),
                None => lines.push(format!("nix build did not report {}", drv.drv_path)),
            }
        }
        lines.dedup();
        if lines.is_empty() {
            Ok(())
        } else {
            Err(StepError::Build { lines })
        }
    }

    /// Copies what the target lacks of both closures (nothing at all if it has everything).
    async fn copy(&self) -> Result<CopyStats, StepError> {
        let drvs = &self.installer.plan.drvs;
        let roots = [&drvs.system.out_path, &drvs.disko_script.out_path];
        let mut closure: Vec<StorePath> = Vec::new();
        for root in roots {
            let paths = self
                .nix
                .closure(root)
                .await
                .map_err(|source| StepError::Closure {
                    path: root.clone(),
                    source,
                })?;
            closure.extend(paths);
        }
        closure.sort();
        closure.dedup();
        // Its stdout is a list of paths for this code, not progress for the user: not streamed.
        let paths: Vec<&str> = closure.iter().map(StorePath::as_str).collect();
        let output = crate::remote::check_validity(&self.installer.conn, None, &paths)
            .await
            .map_err(|source| StepError::Channel {
                step: InstallStep::Copy,
                source,
            })?;
        if !output.exit.success() {
            return Err(StepError::Check {
                exit: output.exit.clone(),
                tail: output.tail_lines(),
            });
        }
        let missing = output.stdout.lines().filter(|l| !l.is_empty()).count();
        let stats = CopyStats {
            sent: missing,
            total: closure.len(),
        };
        if missing > 0 {
            // As the deploying user is trusted there: unsigned, the target's caches first.
            let options = hbdeploy_nix::CopyOptions {
                substitute: true,
                no_check_sigs: true,
                derivation: false,
            };
            let mut sink = |line: &str| self.events.output(InstallStep::Copy, line);
            for root in roots {
                crate::transfer::over(&self.installer.conn, self.nix, root, options, &mut sink)
                    .await
                    .map_err(|failed| match failed {
                        crate::transfer::CopyFailed::Relay(err) => StepError::Relay(err),
                        crate::transfer::CopyFailed::Nix(err) => StepError::Copy(err),
                    })?;
            }
        }
        self.events
            .note(format!("copied {} of {} paths", stats.sent, stats.total));
        Ok(stats)
    }
}
