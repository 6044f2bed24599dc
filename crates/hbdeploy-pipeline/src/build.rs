//! The first steps of a deployment, streamed: the hosts' systems are evaluated by several `nix
//! eval` processes at once (`hbdeploy_nix::EvalLimits`), each host's system is built as soon as
//! it is evaluated, and each host is handed on as soon as its system is built, while the others
//! are still being evaluated or built.
//!
//! Builds are batched by demand: at most `workers` `nix build` processes run at once, and each
//! takes every evaluated system waiting for a build (at most [`MAX_BATCH`]). The first system is
//! built alone, the moment it is evaluated; when evaluation outruns building, later builds take
//! many systems at once, so a large fleet does not pay one nix start-up per host. A derivation
//! shared by several hosts is built once (and nix's own locks keep two processes from building
//! one path twice).

use std::collections::{BTreeMap, VecDeque};

use hbdeploy_nix::{EvalLimits, Nix, NixError, StorePath, Toplevel};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::event::{EventSender, Stage};
use crate::{HostError, HostPlan, PipelineError};

/// At most this many systems go to one `nix build`.
pub(crate) const MAX_BATCH: usize = 64;

/// A host's system, ready to be copied: built locally, or to be built on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Built {
    /// The system's store path.
    pub out: StorePath,
    /// Its derivation.
    pub drv: StorePath,
    /// Not built here: the host builds it from the derivation (`build-on = "target"`).
    pub on_target: bool,
    /// A given system (`apply --systems`) in no store here: the host fetches it from its own
    /// binary caches. The places already looked in, for the error if the host cannot.
    pub host_caches: Option<Vec<String>>,
}

impl Built {
    /// Whether the system is in the local store (built or fetched here), so it can be checked
    /// and its closure sent from here.
    pub(crate) fn is_local(&self) -> bool {
        !self.on_target && self.host_caches.is_none()
    }
}

/// One host's system, or the stage and error that stopped it.
pub(crate) type HostBuilt = Result<Built, (Stage, Box<HostError>)>;

/// Per host: its system, or the stage and error that stopped it.
pub(crate) type Prepared = Vec<HostBuilt>;

/// What the stream needs besides the hosts.
#[derive(Debug, Clone)]
pub(crate) struct PrepareOptions {
    /// `--builders` for the local builds.
    pub builders: Option<String>,
    /// How much evaluation runs at once.
    pub eval: EvalLimits,
    /// The store given systems not in the local store are fetched from (`--from`).
    pub from: Option<String>,
}

/// The hosts' systems as they become ready: `(index into hosts, result)`, one per host, in no
/// particular order. Dropping it stops every nix process still running for it.
pub(crate) struct Preparing {
    results: mpsc::UnboundedReceiver<(usize, HostBuilt)>,
    task: Option<tokio::task::JoinHandle<Result<(), NixError>>>,
}

impl Drop for Preparing {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            // Aborting drops the nix commands' futures, which kills them (kill_on_drop).
            task.abort();
        }
    }
}

impl Preparing {
    /// The next host that is ready; `None` once every host was handed out. `Err` when nix
    /// itself could not run; the hosts not yet handed out then never will be.
    pub(crate) async fn next(&mut self) -> Option<Result<(usize, HostBuilt), PipelineError>> {
        if let Some(item) = self.results.recv().await {
            return Some(Ok(item));
        }
        let task = self.task.take()?;
        match task.await {
            Ok(Ok(())) => None,
            Ok(Err(error)) => Some(Err(PipelineError::Nix(error))),
            Err(join) => Some(Err(PipelineError::Nix(NixError::Unexpected {
                command: "nix eval".to_owned(),
                detail: format!("the evaluation task failed: {join}"),
            }))),
        }
    }
}

/// Starts evaluating and building every host of `hosts`; hosts that build on their target are
/// only evaluated.
pub(crate) fn prepare(
    flake: &str,
    hosts: &[HostPlan],
    nix: &Nix,
    events: &EventSender,
    options: PrepareOptions,
) -> Preparing {
    let (tx, results) = mpsc::unbounded_channel();
    // A host whose system was given (built already, or elsewhere) is ready once its system is
    // found (`prebuilt.rs`); the others are evaluated and built, and their results handed out
    // under their index in `hosts`.
    let mut given = Vec::new();
    let mut rest = Vec::new();
    let mut indices = Vec::new();
    for (index, plan) in hosts.iter().enumerate() {
        match &plan.system {
            Some(system) if !plan.transfer.build_on_target => {
                given.push((index, plan.clone(), system.clone()));
            }
            _ => {
                rest.push(plan.clone());
                indices.push(index);
            }
        }
    }
    let from = options.from.clone();
    let work = Work {
        flake: flake.to_owned(),
        hosts: rest,
        indices,
        nix: nix.clone(),
        events: events.clone(),
        options,
        tx: tx.clone(),
    };
    let nix = nix.clone();
    let events = events.clone();
    let task = async move {
        if !given.is_empty() {
            let mut paths: Vec<StorePath> = given.iter().map(|(_, _, s)| s.clone()).collect();
            paths.sort();
            paths.dedup();
            for (_, plan, _) in &given {
                events.stage(&plan.name, Stage::Build);
            }
            let found = crate::prebuilt::find(&nix, from.as_deref(), &paths, &events).await?;
            for (index, plan, system) in &given {
                let _ = tx.send((*index, built(plan, system, found.get(system))));
            }
        }
        // Nothing to evaluate: no `nix eval` runs at all.
        if work.hosts.is_empty() {
            return Ok(());
        }
        drop(tx);
        work.run().await
    };
    Preparing {
        results,
        task: Some(tokio::spawn(task)),
    }
}

/// Evaluates and builds every host at once and returns them all, in host order.
pub(crate) async fn build_all(
    flake: &str,
    hosts: &[HostPlan],
    nix: &Nix,
    events: &EventSender,
    options: PrepareOptions,
) -> Result<Prepared, PipelineError> {
    let mut preparing = prepare(flake, hosts, nix, events, options);
    let mut slots: Vec<Option<HostBuilt>> = hosts.iter().map(|_| None).collect();
    while let Some(item) = preparing.next().await {
        let (index, result) = item?;
        if let Some(slot) = slots.get_mut(index) {
            *slot = Some(result);
        }
    }
    Ok(slots
        .into_iter()
        .zip(hosts)
        .map(|(slot, plan)| slot.unwrap_or_else(|| Err(not_reported(plan))))
        .collect())
}

fn not_reported(plan: &HostPlan) -> (Stage, Box<HostError>) {
    (
        Stage::Evaluate,
        Box::new(HostError::Eval {
            attr: plan.attr.clone(),
            lines: vec!["nix eval did not report this configuration".to_owned()],
        }),
    )
}

/// The evaluation and the builds, owned by one task.
struct Work {
    flake: String,
    /// The hosts to evaluate and build.
    hosts: Vec<HostPlan>,
    /// Each one's index in the hosts of the request.
    indices: Vec<usize>,
    nix: Nix,
    events: EventSender,
    options: PrepareOptions,
    tx: mpsc::UnboundedSender<(usize, HostBuilt)>,
}

/// Where a derivation is: waiting for its build (with the hosts that want it), or built.
enum DrvState {
    Waiting(Vec<usize>),
    Done(Result<(), Vec<String>>),
}

/// The running `nix build`s, each answering per derivation.
type Builds = JoinSet<Result<Vec<(StorePath, Result<(), Vec<String>>)>, NixError>>;

/// Per derivation: its output path (as evaluation promised) and its state.
type Drvs = BTreeMap<StorePath, (StorePath, DrvState)>;

impl Work {
    async fn run(self) -> Result<(), NixError> {
        // The builds need nix's version: asked while the evaluation runs.
        self.nix.ask_version();
        for plan in &self.hosts {
            self.events.stage(&plan.name, Stage::Evaluate);
        }
        let mut attrs: Vec<String> = self.hosts.iter().map(|p| p.attr.clone()).collect();
        attrs.sort();
        attrs.dedup();
        let (evaluated_tx, evaluated) = mpsc::unbounded_channel();
        let events = &self.events;
        let on_line = |host: Option<&str>, line: &str| events.output(host, Stage::Evaluate, line);
        let eval = async {
            // Owned here, so the builds see the channel close when evaluation is over.
            let on_result = move |attr: &str, result| {
                let _ = evaluated_tx.send((attr.to_owned(), result));
            };
            self.nix
                .eval_toplevels(
                    &self.flake,
                    &attrs,
                    &self.options.eval,
                    &on_result,
                    &on_line,
                )
                .await
        };
        let (evaluated, built) = tokio::join!(eval, self.build_as_evaluated(evaluated));
        evaluated?;
        built
    }

    /// Receives each attribute's evaluation and builds what needs building, batch by batch.
    async fn build_as_evaluated(
        &self,
        mut evaluated: mpsc::UnboundedReceiver<(String, Result<Toplevel, Vec<String>>)>,
    ) -> Result<(), NixError> {
        let workers = self.options.eval.workers.get();
        let mut drvs = Drvs::new();
        let mut queue: VecDeque<Toplevel> = VecDeque::new();
        let mut builds: Builds = JoinSet::new();
        let mut evaluating = true;
        loop {
            while builds.len() < workers && !queue.is_empty() {
                let take = queue.len().min(MAX_BATCH);
                let batch: Vec<Toplevel> = queue.drain(..take).collect();
                self.start_build(&mut builds, batch, &drvs);
            }
            if !evaluating && builds.is_empty() {
                return Ok(());
            }
            tokio::select! {
                next = evaluated.recv(), if evaluating => match next {
                    Some((attr, result)) => self.evaluated(&attr, result, &mut drvs, &mut queue),
                    None => evaluating = false,
                },
                Some(joined) = builds.join_next(), if !builds.is_empty() => {
                    let done = joined.map_err(|err| NixError::Unexpected {
                        command: "nix build".to_owned(),
                        detail: format!("the build task failed: {err}"),
                    })??;
                    for (drv, result) in done {
                        if let Some((out, state)) = drvs.get_mut(&drv) {
                            if let DrvState::Waiting(waiting) = state {
                                for &index in waiting.iter() {
                                    self.send_built(index, &drv, out, &result);
                                }
                            }
                            *state = DrvState::Done(result);
                        }
                    }
                }
            }
        }
    }

    /// Hands on every host of `attr`: failed, to be built on its target, or waiting for (or
    /// with) its build.
    fn evaluated(
        &self,
        attr: &str,
        result: Result<Toplevel, Vec<String>>,
        drvs: &mut Drvs,
        queue: &mut VecDeque<Toplevel>,
    ) {
        let of_attr: Vec<usize> = (0..self.hosts.len())
            .filter(|&i| self.hosts[i].attr == attr)
            .collect();
        let toplevel = match result {
            Ok(toplevel) => toplevel,
            Err(lines) => {
                for &index in &of_attr {
                    let error = HostError::Eval {
                        attr: attr.to_owned(),
                        lines: lines.clone(),
                    };
                    self.send(index, Err((Stage::Evaluate, Box::new(error))));
                }
                return;
            }
        };
        // A system is built here unless every host that wants it builds on its target.
        let on_target = of_attr
            .iter()
            .all(|&i| self.hosts[i].transfer.build_on_target);
        if on_target {
            for &index in &of_attr {
                self.send(
                    index,
                    Ok(Built {
                        out: toplevel.out_path.clone(),
                        drv: toplevel.drv_path.clone(),
                        on_target: true,
                        host_caches: None,
                    }),
                );
            }
            return;
        }
        for &index in &of_attr {
            self.events.stage(&self.hosts[index].name, Stage::Build);
        }
        match drvs.get_mut(&toplevel.drv_path) {
            Some((out, DrvState::Done(result))) => {
                for &index in &of_attr {
                    self.send_built(index, &toplevel.drv_path, out, result);
                }
            }
            Some((_, DrvState::Waiting(waiting))) => waiting.extend(&of_attr),
            None => {
                let state = DrvState::Waiting(of_attr);
                drvs.insert(
                    toplevel.drv_path.clone(),
                    (toplevel.out_path.clone(), state),
                );
                queue.push_back(toplevel);
            }
        }
    }

    /// Starts one `nix build` of `batch`.
    fn start_build(&self, builds: &mut Builds, batch: Vec<Toplevel>, drvs: &Drvs) {
        let nix = self.nix.clone();
        let events = self.events.clone();
        let builders = self.options.builders.clone();
        // Output lines name the host when the batch is one system of one host.
        let host = match batch.as_slice() {
            [one] => match drvs.get(&one.drv_path) {
                Some((_, DrvState::Waiting(hosts))) if hosts.len() == 1 => {
                    Some(self.hosts[hosts[0]].name.clone())
                }
                _ => None,
            },
            _ => None,
        };
        builds.spawn(async move {
            let mut sink = |line: &str| events.output(host.as_deref(), Stage::Build, line);
            let built = nix.build(&batch, builders.as_deref(), &mut sink).await?;
            Ok(built.into_iter().collect())
        });
    }

    fn send_built(
        &self,
        index: usize,
        drv: &StorePath,
        out: &StorePath,
        result: &Result<(), Vec<String>>,
    ) {
        let plan = &self.hosts[index];
        let outcome = match result {
            Ok(()) => Ok(Built {
                out: out.clone(),
                drv: drv.clone(),
                on_target: false,
                host_caches: None,
            }),
            Err(lines) => Err(lines.clone()),
        };
        let outcome = outcome.map_err(|lines| {
            (
                Stage::Build,
                Box::new(HostError::Build {
                    attr: plan.attr.clone(),
                    lines,
                }),
            )
        });
        self.send(index, outcome);
    }

    fn send(&self, index: usize, result: HostBuilt) {
        if let Some(&index) = self.indices.get(index) {
            let _ = self.tx.send((index, result));
        }
    }
}

/// What `plan`'s given system comes to: built (here or on the host's side), or its failure.
pub(crate) fn built(
    plan: &HostPlan,
    system: &StorePath,
    found: Option<&crate::prebuilt::Found>,
) -> HostBuilt {
    let local = Built {
        out: system.clone(),
        drv: system.clone(),
        on_target: false,
        host_caches: None,
    };
    match found {
        None | Some(crate::prebuilt::Found::Local) => Ok(local),
        Some(crate::prebuilt::Found::Elsewhere(looked)) if plan.transfer.substitute => Ok(Built {
            host_caches: Some(looked.clone()),
            ..local
        }),
        Some(crate::prebuilt::Found::Elsewhere(looked)) => {
            let mut looked = looked.clone();
            looked.push(
                "not the host's own caches (substitute = false in fleet.toml, or --no-substitute)"
                    .to_owned(),
            );
            Err((
                Stage::Build,
                Box::new(HostError::Unobtainable {
                    path: system.clone(),
                    looked,
                }),
            ))
        }
    }
}
