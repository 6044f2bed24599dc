//! The shared first step of a deployment: one `nix eval` of every selected host's system, then
//! one `nix build` of all those built here, mapped back to hosts.

use std::collections::BTreeMap;

use hbdeploy_nix::{Nix, StorePath, Toplevel};

use crate::event::{EventSender, Stage};
use crate::{HostError, HostPlan, PipelineError};

/// A host's system, ready to be copied: built locally, or to be built on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Built {
    /// The system's store path.
    pub out: StorePath,
    /// Its derivation.
    pub drv: StorePath,
    /// Not built here: the host builds it from the derivation (`build-on = "target"`).
    pub on_target: bool,
}

/// Per host: its system, or the stage and error that stopped it.
pub(crate) type Prepared = Vec<Result<Built, (Stage, Box<HostError>)>>;

/// Evaluates every host's system with one `nix eval`, and builds those built here with one
/// `nix build` (spread over `builders` when given). Hosts that build on the target are only
/// evaluated.
pub(crate) async fn build_all(
    flake: &str,
    hosts: &[HostPlan],
    nix: &Nix,
    events: &EventSender,
    builders: Option<&str>,
) -> Result<Prepared, PipelineError> {
    for plan in hosts {
        events.stage(&plan.name, Stage::Evaluate);
    }
    let mut attrs: Vec<String> = hosts.iter().map(|p| p.attr.clone()).collect();
    attrs.sort();
    attrs.dedup();
    let mut sink = |line: &str| events.output(None, Stage::Evaluate, line);
    let evaluated = nix.eval_toplevels(flake, &attrs, &mut sink).await?;

    let on_target = |attr: &str| {
        hosts
            .iter()
            .filter(|p| p.attr == attr)
            .all(|p| p.transfer.build_on_target)
    };
    let mut toplevels: Vec<Toplevel> = evaluated
        .iter()
        .filter(|(attr, _)| !on_target(attr))
        .filter_map(|(_, r)| r.as_ref().ok().cloned())
        .collect();
    toplevels.sort_by(|a, b| a.drv_path.cmp(&b.drv_path));
    toplevels.dedup();
    for plan in hosts {
        if matches!(evaluated.get(&plan.attr), Some(Ok(_))) {
            events.stage(&plan.name, Stage::Build);
        }
    }
    let built = if toplevels.is_empty() {
        BTreeMap::new()
    } else {
        let mut sink = |line: &str| events.output(None, Stage::Build, line);
        nix.build(&toplevels, builders, &mut sink).await?
    };

    Ok(hosts
        .iter()
        .map(|plan| match evaluated.get(&plan.attr) {
            Some(Ok(toplevel)) if plan.transfer.build_on_target && on_target(&plan.attr) => {
                Ok(Built {
                    out: toplevel.out_path.clone(),
                    drv: toplevel.drv_path.clone(),
                    on_target: true,
                })
            }
            Some(Ok(toplevel)) => match built.get(&toplevel.drv_path) {
                Some(Ok(())) => Ok(Built {
                    out: toplevel.out_path.clone(),
                    drv: toplevel.drv_path.clone(),
                    on_target: false,
                }),
                Some(Err(lines)) => Err((
                    Stage::Build,
                    Box::new(HostError::Build {
                        attr: plan.attr.clone(),
                        lines: lines.clone(),
                    }),
                )),
                None => Err((
                    Stage::Build,
                    Box::new(HostError::Build {
                        attr: plan.attr.clone(),
                        lines: vec!["nix build did not report this system".to_owned()],
                    }),
                )),
            },
            Some(Err(lines)) => Err((
                Stage::Evaluate,
                Box::new(HostError::Eval {
                    attr: plan.attr.clone(),
                    lines: lines.clone(),
                }),
            )),
            None => Err((
                Stage::Evaluate,
                Box::new(HostError::Eval {
                    attr: plan.attr.clone(),
                    lines: vec!["nix eval did not report this configuration".to_owned()],
                }),
            )),
        })
        .collect())
}
