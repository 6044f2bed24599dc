//! Sending a closure to a host, the one way `apply`, `plan --copy` and `install` use: only what
//! the host lacks, signed when a signing key is set, with the host's own transfer settings
//! (`substitute`, `trusted`), over the host's one SSH connection.
//!
//! `nix copy --to ssh-ng://…` runs `ssh` from `PATH`; here that `ssh` is hbdeploy itself standing
//! in ([`hbdeploy_ssh::relay`]), which runs `nix-daemon --stdio` on a new channel of the
//! connection already made. So a copy makes no SSH handshake of its own, and needs no host key,
//! identity, agent or jump host of its own: it goes wherever the connection goes, as whoever it
//! logged in as. nix 2.8 and later all ask `ssh` for exactly that command, as one word (up to
//! 2.18) or as words after `--`; the stand-in joins them as `ssh` does.

use std::path::Path;

use hbdeploy_nix::{CopyOptions, Nix, NixError, SshDest, StorePath};
use hbdeploy_ssh::relay::{Relay, RelayError};
use hbdeploy_ssh::{Connection, SshError, Target};

use crate::event::{EventSender, Stage};
use crate::port::Lock;
use crate::port::{Dial, Link, Reach, Transport};
use crate::report::CopyStats;
use crate::{HostError, HostPlan, remote};

/// The command nix runs on the host for an `ssh-ng://` store (its `remote-program` is left at
/// its default, and no `remote-store` is set).
const NIX_DAEMON: &str = "nix-daemon --stdio";

/// Why a copy over the connection failed.
#[derive(Debug)]
pub(crate) enum CopyFailed {
    /// The relay for nix's `ssh` could not be set up; nothing was sent.
    Relay(RelayError),
    /// `nix copy` failed.
    Nix(NixError),
}

/// Copies the closure of `path` to the host `conn` reaches, with `options`; every line nix (or
/// the host's `nix-daemon`, on stderr) prints goes to `on_line`.
pub(crate) async fn over(
    conn: &Connection,
    nix: &Nix,
    path: &StorePath,
    options: CopyOptions,
    on_line: &mut (dyn FnMut(&str) + Send),
) -> Result<(), CopyFailed> {
    let relay = Relay::open(NIX_DAEMON).map_err(CopyFailed::Relay)?;
    let target = conn.target();
    let (name, value) = relay.env();
    let dest = SshDest {
        user: target.user.clone(),
        address: target.address.clone(),
        ssh_dir: relay.bin_dir().to_path_buf(),
        env: vec![(name.to_owned(), value)],
    };
    // nix's lines and the host's stderr lines both go to `on_line`, one at a time.
    let sink = std::sync::Mutex::new(on_line);
    let say = |line: &str| {
        if let Ok(mut sink) = sink.lock() {
            (*sink)(line);
        }
    };
    let mut from_host = say;
    let mut from_nix = say;
    relay
        .serve(
            conn,
            &mut from_host,
            nix.copy_with(&dest, path, options, &mut from_nix),
        )
        .await
        .map_err(CopyFailed::Nix)
}

/// Copies what the host lacks of `closure` (the closure of `path`), signing `path`'s closure
/// first when `signing_key` is set. A host that has every path gets no `nix copy` at all, and
/// the machine hbdeploy runs on has every path: its store is the one `path` is in.
pub(crate) async fn copy_missing(
    (conn, lock): (&Link, Option<&Lock<Link>>),
    nix: &Nix,
    plan: &HostPlan,
    signing_key: Option<&Path>,
    path: &StorePath,
    closure: &[StorePath],
    events: &EventSender,
) -> Result<CopyStats, HostError> {
    let ssh = match conn {
        Link::Ssh(ssh) => ssh,
        Link::Local(_) => {
            return Ok(CopyStats {
                sent: 0,
                total: closure.len(),
            });
        }
    };
    // The top first: in a cold deployment it is the path surely new, and then the host counts
    // the rest without starting nix-store (`missing_paths`).
    let ordered: Vec<StorePath> = std::iter::once(path)
        .chain(closure.iter().filter(|p| *p != path))
        .cloned()
        .collect();
    let missing = remote::missing_paths(conn, lock, &ordered).await?;
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
    nix_copy(ssh, nix, plan, signing_key.is_some(), path, false, events).await?;
    Ok(stats)
}

/// `nix copy` of `path` (or of the derivation `path`) to the host, with its options.
pub(crate) async fn nix_copy(
    conn: &Connection,
    nix: &Nix,
    plan: &HostPlan,
    signed: bool,
    path: &StorePath,
    derivation: bool,
    events: &EventSender,
) -> Result<(), HostError> {
    let transfer = plan.transfer;
    let options = CopyOptions {
        substitute: transfer.substitute,
        // Signed closures are checked; unsigned ones only skip checks for trusted users.
        no_check_sigs: !signed && transfer.trusted,
        derivation,
    };
    let mut sink = |line: &str| events.output(Some(&plan.name), Stage::Copy, line);
    over(conn, nix, path, options, &mut sink)
        .await
        .map_err(|failed| match failed {
            CopyFailed::Relay(err) => HostError::Relay(err),
            CopyFailed::Nix(err) => HostError::Copy(err),
        })
}

/// Sessions with hosts ([`Reach`]), and closures sent by the workstation's `nix copy` over
/// them; nothing is sent to the workstation itself (`address = "local"`).
#[derive(Debug, Clone)]
pub struct SshCopy {
    /// The workstation's nix.
    pub nix: Nix,
    /// How connections are made.
    pub ssh: Reach,
}

impl Dial for SshCopy {
    type Host = Link;

    fn connect(&self, target: &Target) -> impl Future<Output = Result<Link, SshError>> + Send {
        self.ssh.connect(target)
    }
}

impl Transport for SshCopy {
    fn is_system(&self, path: &StorePath) -> bool {
        Path::new(path.as_str())
            .join("bin/switch-to-configuration")
            .exists()
    }

    async fn copy_closure(
        &self,
        host: &Link,
        lock: Option<&Lock<Link>>,
        plan: &HostPlan,
        path: &StorePath,
        signing_key: Option<&Path>,
        events: &EventSender,
    ) -> Result<CopyStats, HostError> {
        let closure = self
            .nix
            .closure(path)
            .await
            .map_err(|source| HostError::Closure {
                path: path.clone(),
                source,
            })?;
        copy_missing(
            (host, lock),
            &self.nix,
            plan,
            signing_key,
            path,
            &closure,
            events,
        )
        .await
    }

    async fn copy_derivation(
        &self,
        host: &Link,
        plan: &HostPlan,
        drv: &StorePath,
        events: &EventSender,
    ) -> Result<(), HostError> {
        match host {
            Link::Ssh(conn) => nix_copy(conn, &self.nix, plan, false, drv, true, events).await,
            // The derivation is in this machine's store already.
            Link::Local(_) => Ok(()),
        }
    }
}
