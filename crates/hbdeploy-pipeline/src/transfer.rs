//! Sending a closure to a host, the one way `apply` and `plan --copy` both use: only what the
//! host lacks, signed when a signing key is set, with the host's own transfer settings
//! (`substitute`, `compress`, `trusted`) and the same trust store as hbdeploy's connection.

use std::path::Path;

use hbdeploy_nix::{CopyOptions, Nix, StorePath};
use hbdeploy_ssh::Connection;

use crate::event::{EventSender, Stage};
use crate::report::CopyStats;
use crate::{HostError, HostPlan, remote, safe, trust};

/// Copies what the host lacks of `closure` (the closure of `path`), signing `path`'s closure
/// first when `signing_key` is set. A host that has every path gets no `nix copy` at all.
pub(crate) async fn copy_missing(
    conn: &Connection,
    nix: &Nix,
    plan: &HostPlan,
    signing_key: Option<&Path>,
    path: &StorePath,
    closure: &[StorePath],
    events: &EventSender,
) -> Result<CopyStats, HostError> {
    let missing = remote::missing_paths(conn, closure).await?;
    let stats = CopyStats {
        sent: missing.len(),
        total: closure.len(),
    };
    if missing.is_empty() {
        return Ok(stats);
    }
    if let Some(key) = signing_key {
        nix.sign(path, key)
            .await
            .map_err(|source| HostError::Sign {
                key: key.to_path_buf(),
                source,
            })?;
    }
    nix_copy(nix, plan, signing_key.is_some(), path, false, events).await?;
    Ok(stats)
}

/// `nix copy` of `path` (or of the derivation `path`) to the host, with its options.
pub(crate) async fn nix_copy(
    nix: &Nix,
    plan: &HostPlan,
    signed: bool,
    path: &StorePath,
    derivation: bool,
    events: &EventSender,
) -> Result<(), HostError> {
    let target = &plan.target;
    let trust = trust::for_copy(target, &safe::new_token())
        .map_err(|(path, source)| HostError::TrustFile { path, source })?;
    let dest = trust::dest(target, &trust);
    let transfer = plan.transfer;
    let options = CopyOptions {
        substitute: transfer.substitute,
        // Signed closures are checked; unsigned ones only skip checks for trusted users.
        no_check_sigs: !signed && transfer.trusted,
        compress: transfer.compress,
        derivation,
    };
    let mut sink = |line: &str| events.output(Some(&plan.name), Stage::Copy, line);
    nix.copy_with(&dest, path, options, &mut sink)
        .await
        .map_err(HostError::Copy)
}
