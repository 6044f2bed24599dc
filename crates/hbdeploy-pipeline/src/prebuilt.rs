//! Systems given instead of built (`apply --systems FILE`, and what `apply --ask` showed):
//! deployed as they are, never evaluated or built. Each must be obtained somewhere:
//!
//! 1. the local store (as for a system built here);
//! 2. else the store named by `--from URL`, fetched into the local store first with
//!    `nix copy --from`; from then on the path is like one built here: its closure is known,
//!    it is checked to be a NixOS system before anything is sent, `signing-key` signs it, and a
//!    host lacking part of it gets it with the host's own `--substitute-on-destination`;
//! 3. else, for a host that substitutes (`substitute`, no `--no-substitute`), the host's own
//!    binary caches: it realises the path itself (`nix-store --realise`), over its connection.
//!
//! Fetching through the local store rather than copying straight from the URL to the host keeps
//! one way of sending a closure (`transfer.rs`, over the host's relay) and fetches a system
//! shared by several hosts once. A system obtainable nowhere fails its host before anything is
//! sent or changed on it, with an error naming the path and every place looked in.

use std::collections::BTreeMap;

use crate::port::Host;
use hbdeploy_nix::{Nix, NixError, StorePath};

use crate::event::{EventSender, Stage};
use crate::report::CopyStats;
use crate::{HostError, HostPlan, remote};

/// Where a given system is to be had.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Found {
    /// In the local store (it was there, or was fetched from `--from`).
    Local,
    /// In no store this machine can read; these places were looked in, each with what it said.
    Elsewhere(Vec<String>),
}

/// The first place always looked in.
const LOCAL: &str = "the local store";

/// Finds each of `paths` (distinct) locally, fetching what is missing from `from` when given.
/// `Err` only when the local nix cannot be asked at all.
pub(crate) async fn find(
    nix: &Nix,
    from: Option<&str>,
    paths: &[StorePath],
    events: &EventSender,
) -> Result<BTreeMap<StorePath, Found>, NixError> {
    // One query both finds the systems valid and learns their closures, which every host
    // copying one of them needs next; only when one is not valid are they checked one by one.
    let missing = if nix.learn_closures(paths).await {
        Vec::new()
    } else {
        nix.invalid_paths(paths).await?
    };
    let mut found: BTreeMap<StorePath, Found> =
        paths.iter().map(|p| (p.clone(), Found::Local)).collect();
    let Some(from) = from else {
        for path in missing {
            found.insert(path, Found::Elsewhere(vec![LOCAL.to_owned()]));
        }
        return Ok(found);
    };
    if missing.is_empty() {
        return Ok(found);
    }
    let mut on_line = |line: &str| events.output(None, Stage::Build, line);
    // One `nix copy` for all; when it fails, one per path tells which are not there.
    if nix.fetch(from, &missing, &mut on_line).await.is_ok() {
        return Ok(found);
    }
    for path in missing {
        if let Err(err) = nix
            .fetch(from, std::slice::from_ref(&path), &mut on_line)
            .await
        {
            let said = said(err.tail()).unwrap_or_else(|| err.to_string());
            let looked = vec![LOCAL.to_owned(), format!("{from} ({said})")];
            found.insert(path, Found::Elsewhere(looked));
        }
    }
    Ok(found)
}

/// What a failed nix command said: its first `error:` line (nix's cause; later ones, such as
/// "build of … failed", only follow from it), else its last line.
fn said(lines: &[String]) -> Option<String> {
    let lines: Vec<&str> = lines
        .iter()
        .map(|l| l.trim())
        .filter(|l| !l.is_empty())
        .collect();
    lines
        .iter()
        .find(|l| l.starts_with("error:"))
        .or(lines.last())
        .map(|l| (*l).to_owned())
}

/// Has the host fetch `path`, which no store here has, from its own binary caches; `looked`
/// are the places already tried. A host that has it already gets nothing.
pub(crate) async fn from_host_caches<H: Host>(
    (conn, lock): (&H, Option<&crate::port::Lock<H>>),
    plan: &HostPlan,
    path: &StorePath,
    looked: &[String],
    events: &EventSender,
) -> Result<CopyStats, HostError> {
    let name = plan.name.as_str();
    let stats = CopyStats { sent: 0, total: 1 };
    let missing = remote::missing_paths(conn, lock, std::slice::from_ref(path)).await?;
    if missing.is_empty() {
        return Ok(stats);
    }
    events.note(
        name,
        "the system is in no store here: the host fetches it from its own binary caches".to_owned(),
    );
    match remote::realise(conn, name, path, path, events).await {
        Ok(()) => Ok(stats),
        Err(HostError::Remote { tail, .. }) => {
            let said = said(&tail).unwrap_or_else(|| "it failed".to_owned());
            let mut looked = looked.to_vec();
            looked.push(format!("the host's binary caches ({said})"));
            Err(HostError::Unobtainable {
                path: path.clone(),
                looked,
            })
        }
        Err(other) => Err(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(substitute: bool) -> HostPlan {
        HostPlan {
            transfer: crate::HostTransfer {
                substitute,
                ..crate::HostTransfer::default()
            },
            ..crate::fanout::tests::plan("web")
        }
    }

    fn path() -> StorePath {
        StorePath::new("/nix/store/1j1d0hfqa121v0sk9380s5hrd4xm6g1y-nixos-system-web")
            .expect("valid")
    }

    #[test]
    fn the_first_error_line_is_what_nix_said() {
        let lines = |l: &[&str]| l.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert_eq!(
            said(&lines(&[
                "copying",
                "error: no substituter",
                "error: build of x failed",
                ""
            ]))
            .as_deref(),
            Some("error: no substituter")
        );
        assert_eq!(said(&lines(&["a", "b", " "])).as_deref(), Some("b"));
        assert_eq!(said(&[]), None);
    }

    #[test]
    fn a_local_system_is_deployed_like_one_built_here() {
        let built = crate::build::built(&plan(true), &path(), Some(&Found::Local)).expect("built");
        assert!(!built.on_target && built.host_caches.is_none());
        assert_eq!(built.out, path());
    }

    #[test]
    fn a_system_found_nowhere_is_left_to_a_substituting_host_else_fails_it() {
        let looked = Found::Elsewhere(vec![LOCAL.to_owned(), "file:///c (no such path)".into()]);
        let built =
            crate::build::built(&plan(true), &path(), Some(&looked)).expect("host fetches it");
        assert_eq!(built.host_caches.map(|l| l.len()), Some(2));
        let Err((stage, error)) = crate::build::built(&plan(false), &path(), Some(&looked)) else {
            panic!("not obtainable");
        };
        assert_eq!(stage, Stage::Build);
        assert_eq!(
            error.to_string(),
            "/nix/store/1j1d0hfqa121v0sk9380s5hrd4xm6g1y-nixos-system-web is in none of the \
             places looked in: the local store; file:///c (no such path); not the host's own \
             caches (substitute = false in fleet.toml, or --no-substitute); the host was not \
             changed"
        );
    }
}
