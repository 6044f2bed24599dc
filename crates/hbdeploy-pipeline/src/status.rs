//! `hbdeploy status`: what every selected host runs, read in parallel over SSH, and (with
//! `--build`) whether that is what the flake builds now.

use std::num::NonZeroUsize;

use hbdeploy_nix::{Nix, StorePath};

use crate::build::{PrepareOptions, build_all};
use crate::event::{EventSender, Stage};
use crate::fanout::each_host;
use crate::state::{HostState, host_state};
use crate::{HostError, HostPlan, PipelineError};

/// A status query.
#[derive(Debug, Clone)]
pub struct StatusRequest {
    /// The run's credentials, for every connection.
    pub session: hbdeploy_ssh::Session,
    /// The flake reference.
    pub flake: String,
    /// The selected hosts.
    pub hosts: Vec<HostPlan>,
    /// Hosts queried at once.
    pub parallel: NonZeroUsize,
    /// Evaluate and build the flake to compare the hosts with it.
    pub build: bool,
    /// How much evaluation runs at once (with `build`).
    pub eval: hbdeploy_nix::EvalLimits,
}

/// How a host's running system compares with what the flake builds now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlakeMatch {
    /// It runs exactly the system the flake builds.
    UpToDate,
    /// It runs something else than the flake's system (given).
    Differs(StorePath),
    /// Not known: the flake was not built (no `--build`), or did not build, or the host could
    /// not be read.
    Unknown(String),
}

impl FlakeMatch {
    /// `up to date`, `differs` or `unknown`.
    pub fn label(&self) -> &'static str {
        match self {
            FlakeMatch::UpToDate => "up to date",
            FlakeMatch::Differs(_) => "differs",
            FlakeMatch::Unknown(_) => "unknown",
        }
    }
}

/// One host's status.
#[derive(Debug)]
pub struct HostStatus {
    /// The host.
    pub host: String,
    /// What it runs, or why it could not be read.
    pub state: Result<HostState, HostError>,
    /// The comparison with the flake.
    pub flake: FlakeMatch,
}

/// Reads every host's state (in parallel, each bounded by its connect timeout) while the flake
/// is built when asked; never changes anything.
pub async fn status(
    request: &StatusRequest,
    nix: &Nix,
    events: EventSender,
) -> Result<Vec<HostStatus>, PipelineError> {
    let read = each_host(request.hosts.clone(), request.parallel, |plan| {
        let events = events.clone();
        let session = request.session.clone();
        async move {
            events.stage(&plan.name, Stage::Connect);
            host_state(&plan, &session).await
        }
    });
    let built = async {
        if request.build {
            let options = PrepareOptions {
                builders: None,
                eval: request.eval.clone(),
                from: None,
            };
            build_all(&request.flake, &request.hosts, nix, &events, options)
                .await
                .map(Some)
        } else {
            Ok(None)
        }
    };
    let (read, built) = tokio::join!(read, built);
    let built = built?;
    Ok(read
        .into_iter()
        .enumerate()
        .map(|(index, (plan, state))| {
            let state = state.unwrap_or(Err(HostError::TaskLost));
            let flake = match (&state, built.as_ref().and_then(|b| b.get(index))) {
                (_, None) => FlakeMatch::Unknown("not built (use --build)".to_owned()),
                (_, Some(Err((_, error)))) => FlakeMatch::Unknown(error.to_string()),
                (Err(_), Some(Ok(_))) => {
                    FlakeMatch::Unknown("the host could not be read".to_owned())
                }
                (Ok(state), Some(Ok(built))) => {
                    if state.current.as_ref() == Some(&built.out) {
                        FlakeMatch::UpToDate
                    } else {
                        FlakeMatch::Differs(built.out.clone())
                    }
                }
            };
            HostStatus {
                host: plan.name,
                state,
                flake,
            }
        })
        .collect())
}
