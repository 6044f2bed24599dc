//! The result of a pushed install: the steps after the consent that ran, and how it ended.

use std::time::Duration;

use hbdeploy_nix::{DiskDevice, StorePath};

use super::{InstallStep, StepError};
use crate::CopyStats;

/// One step that ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepRecord {
    /// The step.
    pub step: InstallStep,
    /// Whether it succeeded.
    pub ok: bool,
    /// How long it took.
    pub duration: Duration,
}

/// The result of a pushed install.
#[derive(Debug)]
pub struct InstallReport {
    /// The host.
    pub host: String,
    /// `user@address:port` of the installer.
    pub target: String,
    /// Each disk and its device.
    pub disks: Vec<DiskDevice>,
    /// The system installed (or to be).
    pub system: StorePath,
    /// Where the disko script mounted the new root.
    pub root: String,
    /// The steps after the consent that ran, in order; the failed one last.
    pub steps: Vec<StepRecord>,
    /// What the copy sent, if it ran.
    pub copy: Option<CopyStats>,
    /// Success, or the step's failure.
    pub outcome: Result<(), StepError>,
}

impl InstallReport {
    /// The step that failed, if one did.
    pub fn failed_step(&self) -> Option<InstallStep> {
        self.steps.iter().find(|s| !s.ok).map(|s| s.step)
    }
}
