//! Evaluating the hosts' system derivations: several `nix eval` processes at once, each given a
//! chunk of hosts, bounded by [`EvalLimits`] (how many processes, how much memory each may hold).
//!
//! A process reports every host as soon as that host is evaluated, not when the process ends:
//! its apply function traces `hbdeploy-eval-start I` before it evaluates the chunk's `I`th host
//! and `hbdeploy-eval-done {json}` after, and `builtins.trace` goes to stderr at once. So a
//! caller can build a host while the others are still being evaluated, and when a process dies
//! the host it was working on is known: that host gets nix's error, the hosts it had finished
//! keep their results, and the rest of the chunk goes to a new process. No host is evaluated
//! twice because another one failed. A process whose resident memory passes its budget is
//! killed; the host it was on is evaluated again in a fresh process (its memory was held by the
//! hosts before it), unless it was the process's first, which then fails with the budget named.
//! From then on that worker's processes take at most as many hosts as had fitted.
//!
//! Chunks are sized by guided self-scheduling (a share of what is left), and never smaller than
//! what makes a process's start-up (nix, the flake, and its teardown) a small part of it, as
//! measured on the processes that already ended ([`Costs`]): where hosts evaluate in
//! milliseconds, the next process takes every host left instead of paying a start-up per few.
//!
//! Every command line is bounded whatever the size of the fleet: a chunk's host names are at
//! most [`MAX_CHUNK_BYTES`] of the apply expression and [`MAX_CHUNK`] hosts.

use std::collections::{BTreeMap, VecDeque};
use std::num::NonZeroUsize;
use std::sync::Mutex;

use serde::Deserialize;

use crate::command;
use crate::{FEATURES, Nix, NixError, StorePath};

/// A host's system: the derivation to build and the path it will produce.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Toplevel {
    /// `config.system.build.toplevel.drvPath`.
    #[serde(rename = "drv")]
    pub drv_path: StorePath,
    /// `config.system.build.toplevel.outPath`.
    #[serde(rename = "out")]
    pub out_path: StorePath,
}

/// The outcome per attribute: the toplevel, or the lines of nix's evaluation error.
pub type EvalResults = BTreeMap<String, Result<Toplevel, Vec<String>>>;

/// Receives each host's outcome (its attribute, then the toplevel or nix's error lines) as soon
/// as it is known, from whichever evaluator process has it.
pub type ResultSink<'a> = &'a (dyn Fn(&str, Result<Toplevel, Vec<String>>) + Sync);

/// Receives each line an evaluator printed that is not one of hbdeploy's markers, with the
/// attribute being evaluated when it was printed (`None`: before the first).
pub type LineSink<'a> = &'a (dyn Fn(Option<&str>, &str) + Sync);

/// At most this many hosts go to one `nix eval` process.
pub const MAX_CHUNK: usize = 64;

/// At most this many bytes of host names (quoted) go into one process's apply expression, far
/// below Linux's 128 KiB limit on one argument.
pub const MAX_CHUNK_BYTES: usize = 32 * 1024;

const MIB: u64 = 1024 * 1024;

/// The share of the memory available at start that evaluation may use by default, in percent.
pub const DEFAULT_MEMORY_PERCENT: u64 = 75;

/// How much evaluation may run at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvalLimits {
    /// `nix eval` processes at once.
    pub workers: NonZeroUsize,
    /// Resident memory of all of them together, in bytes; each process gets `memory / workers`.
    pub memory: u64,
    /// Hosts per process; `None`: decided as the work goes (see [`EvalLimits::chunk_size`]).
    pub chunk: Option<NonZeroUsize>,
}

impl EvalLimits {
    /// The given settings, or the machine's: one worker per core, and
    /// [`DEFAULT_MEMORY_PERCENT`] of `MemAvailable` in `/proc/meminfo` (1 GiB per worker where
    /// it cannot be read).
    pub fn detect(workers: Option<NonZeroUsize>, memory: Option<u64>) -> EvalLimits {
        let workers = workers
            .or_else(|| std::thread::available_parallelism().ok())
            .unwrap_or(NonZeroUsize::MIN);
        let memory = memory.unwrap_or_else(|| {
            available_memory()
                .map(|m| m / 100 * DEFAULT_MEMORY_PERCENT)
                .unwrap_or(workers.get() as u64 * 1024 * MIB)
        });
        EvalLimits {
            workers,
            memory,
            chunk: None,
        }
    }

    /// The resident memory one evaluator process may hold, in bytes.
    pub fn per_worker(&self) -> u64 {
        self.memory / self.workers.get() as u64
    }

    /// How many of `remaining` hosts the next process takes: the fixed chunk if set, else
    /// guided self-scheduling: a share of what is left (`remaining / (2 × workers)`, at least
    /// one, at most [`MAX_CHUNK`]), so large fleets pay few process start-ups and the last
    /// chunks are small enough to keep every worker busy until the end.
    pub fn chunk_size(&self, remaining: usize) -> usize {
        self.chunk_size_after(remaining, None)
    }

    /// [`EvalLimits::chunk_size`], at least `worth` hosts (what makes a process's start-up
    /// worth paying, from [`Costs::worth`]) unless the chunk is fixed.
    fn chunk_size_after(&self, remaining: usize, worth: Option<usize>) -> usize {
        match self.chunk {
            Some(chunk) => chunk.get().min(MAX_CHUNK),
            None => (remaining / (2 * self.workers.get()))
                .max(worth.unwrap_or(1))
                .clamp(1, MAX_CHUNK),
        }
    }
}

/// Whether nix has opened this machine's store before: the symlink that evaluators starting at
/// once on a new machine race to create (`gcroots/profiles` in nix's state directory,
/// `NIX_STATE_DIR` or `/nix/var/nix`) is there. When it is, no store command needs to run first.
fn store_opened_before() -> bool {
    let state = std::env::var_os("NIX_STATE_DIR")
        .map_or_else(|| std::path::PathBuf::from("/nix/var/nix"), Into::into);
    std::fs::symlink_metadata(state.join("gcroots").join("profiles")).is_ok()
}

/// `MemAvailable` of `/proc/meminfo`, in bytes.
pub fn available_memory() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = meminfo.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// A nix string literal holding `text` (quotes, backslashes and `${` escaped).
pub fn nix_string(text: &str) -> String {
    let mut quoted = String::with_capacity(text.len() + 2);
    quoted.push('"');
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            '$' if chars.peek() == Some(&'{') => quoted.push_str("\\$"),
            '\n' => quoted.push_str("\\n"),
            _ => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted
}

const START: &str = "trace: hbdeploy-eval-start ";
const DONE: &str = "trace: hbdeploy-eval-done ";

/// The `--apply` function for one chunk: forces `nixosConfigurations` (so an error of the flake
/// itself comes before any host is started), then evaluates each host in order between its
/// two markers. (`{ drv; out; }`, not `outPath`: nix turns a set with an `outPath` into that
/// string in JSON.)
pub(crate) fn apply_expr(attrs: &[&str]) -> String {
    let names: Vec<String> = attrs.iter().map(|a| nix_string(a)).collect();
    format!(
        "cs: let names = [ {} ]; \
         one = i: n: if !(builtins.hasAttr n cs) then {{ inherit i; missing = true; }} \
         else let t = cs.${{n}}.config.system.build.toplevel; \
         in {{ inherit i; drv = t.drvPath; out = t.outPath; }}; \
         step = done: i: builtins.seq (builtins.trace \"hbdeploy-eval-start ${{toString i}}\" null) \
         (builtins.seq (builtins.trace (\"hbdeploy-eval-done \" + builtins.toJSON \
         (one i (builtins.elemAt names i))) null) (done + 1)); \
         in builtins.seq (builtins.attrNames cs) \
         (builtins.foldl' step 0 (builtins.genList (i: i) (builtins.length names)))",
        names.join(" ")
    )
}

fn eval_args(flake: &str, attrs: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = FEATURES.iter().map(|s| (*s).to_owned()).collect();
    args.extend([
        "eval".to_owned(),
        "--json".to_owned(),
        format!("{flake}#nixosConfigurations"),
        "--apply".to_owned(),
        apply_expr(attrs),
    ]);
    args
}

/// The `error: …` part of nix's stderr, without progress chatter.
pub(crate) fn error_lines(stderr: &str) -> Vec<String> {
    let lines: Vec<&str> = stderr.lines().collect();
    let start = lines
        .iter()
        .position(|l| l.starts_with("error:"))
        .unwrap_or(0);
    lines[start..]
        .iter()
        .filter(|l| !l.trim().is_empty())
        .map(|l| (*l).to_owned())
        .collect()
}

/// One `hbdeploy-eval-done` marker.
#[derive(Debug, Deserialize)]
struct Done {
    i: usize,
    #[serde(default)]
    missing: bool,
    drv: Option<StorePath>,
    out: Option<StorePath>,
}

/// A process's start-up is at most about 1/(1 + this) of it, where hosts are cheap.
const STARTUP_SHARE: u32 = 4;

/// What the processes that ended cost, shared by the workers: the time of each beyond its hosts'
/// own (start-up, reading the flake, teardown) and the time per host (from its start marker to
/// its done marker).
#[derive(Debug, Default)]
struct Costs {
    overhead: std::time::Duration,
    processes: u32,
    per_host: std::time::Duration,
    hosts: u32,
}

impl Costs {
    /// Adds one process that ended by itself after evaluating `hosts` hosts in `evaluating`,
    /// in `wall` from spawn to exit.
    fn add(&mut self, wall: std::time::Duration, evaluating: std::time::Duration, hosts: usize) {
        let Ok(hosts) = u32::try_from(hosts) else {
            return;
        };
        if hosts == 0 {
            return;
        }
        self.overhead += wall.saturating_sub(evaluating);
        self.processes += 1;
        self.per_host += evaluating;
        self.hosts += hosts;
    }

    /// The fewest hosts a new process should take so that its start-up is at most about a
    /// fifth of it ([`STARTUP_SHARE`]); `None` until a process has ended.
    fn worth(&self) -> Option<usize> {
        if self.processes == 0 || self.hosts == 0 {
            return None;
        }
        let overhead = self.overhead / self.processes;
        // At least a millisecond per host: the markers' timing is no finer than that.
        let per_host = (self.per_host / self.hosts).max(std::time::Duration::from_millis(1));
        let worth = (overhead * STARTUP_SHARE).as_secs_f64() / per_host.as_secs_f64();
        Some((worth.ceil() as usize).clamp(1, MAX_CHUNK))
    }
}

/// The hosts not yet handed to a process, shared by the workers.
struct Queue {
    pending: VecDeque<String>,
}

impl Queue {
    /// The next chunk: at most `size` hosts and [`MAX_CHUNK_BYTES`] of names (at least one).
    fn take(&mut self, size: usize) -> Vec<String> {
        let mut chunk = Vec::new();
        let mut bytes = 0;
        while chunk.len() < size {
            let Some(next) = self.pending.front() else {
                break;
            };
            bytes += next.len() + 3;
            if !chunk.is_empty() && bytes > MAX_CHUNK_BYTES {
                break;
            }
            chunk.extend(self.pending.pop_front());
        }
        chunk
    }
}

/// What the workers share: the hosts left, and what the processes that ended cost.
struct Shared<'a> {
    queue: &'a Mutex<Queue>,
    costs: &'a Mutex<Costs>,
}

/// How one process ended: the hosts it left, and, when it was stopped for its memory, how many
/// it had finished.
#[derive(Default)]
struct ChunkEnd {
    rest: Vec<String>,
    stopped_after: Option<usize>,
}

/// What one process did with its chunk.
#[derive(Default)]
struct Progress {
    /// The index (in the chunk) of the host being evaluated.
    current: Option<usize>,
    /// Per host of the chunk: reported.
    finished: Vec<bool>,
    /// stderr lines since the current host was started.
    since_start: Vec<String>,
}

impl Nix {
    /// Evaluates `attrs` of `flake`'s `nixosConfigurations` within `limits`, handing each
    /// host's outcome to `on_result` as soon as it is known; every attribute gets exactly one.
    /// `Err` only when nix cannot run or prints something other than what was asked for.
    pub async fn eval_toplevels(
        &self,
        flake: &str,
        attrs: &[String],
        limits: &EvalLimits,
        on_result: ResultSink<'_>,
        on_line: LineSink<'_>,
    ) -> Result<(), NixError> {
        let queue = Mutex::new(Queue {
            pending: attrs.iter().cloned().collect(),
        });
        let workers = limits.workers.get().min(attrs.len().max(1));
        if workers > 1 && !store_opened_before() {
            // On a machine where nix has never run, the first command to open the store creates
            // its state directories (gcroots, profiles); evaluators starting at once race for
            // them and one fails ("creating symlink … File exists"). One cheap store command
            // first; what it says does not matter, the evaluators report any real trouble.
            let init = command::cmd(
                std::path::Path::new("nix-instantiate"),
                ["--eval", "--expr", "0"],
            );
            let _ = command::run(init, "nix-instantiate --eval --expr 0", &mut |_| {}).await;
        }
        let costs = Mutex::new(Costs::default());
        let shared = Shared {
            queue: &queue,
            costs: &costs,
        };
        let worker = |_| self.worker(flake, &shared, limits, on_result, on_line);
        futures::future::try_join_all((0..workers).map(worker)).await?;
        Ok(())
    }

    /// Evaluates `attrs` and returns every outcome at once.
    pub async fn eval_all(
        &self,
        flake: &str,
        attrs: &[String],
        limits: &EvalLimits,
    ) -> Result<EvalResults, NixError> {
        let results = Mutex::new(EvalResults::new());
        let on_result = |attr: &str, result| {
            if let Ok(mut results) = results.lock() {
                results.insert(attr.to_owned(), result);
            }
        };
        self.eval_toplevels(flake, attrs, limits, &on_result, &|_, _| {})
            .await?;
        Ok(results.into_inner().unwrap_or_default())
    }

    /// One worker: takes chunks from the queue until it is empty, one process at a time.
    async fn worker(
        &self,
        flake: &str,
        shared: &Shared<'_>,
        limits: &EvalLimits,
        on_result: ResultSink<'_>,
        on_line: LineSink<'_>,
    ) -> Result<(), NixError> {
        // How many hosts fit in one of this worker's processes: learnt when one was stopped for
        // its memory after finishing some, so the next ones stop before the budget, not at it.
        let mut fits = MAX_CHUNK;
        loop {
            let worth = shared.costs.lock().ok().and_then(|c| c.worth());
            let mut mine = match shared.queue.lock() {
                Ok(mut queue) => {
                    let size = limits
                        .chunk_size_after(queue.pending.len(), worth)
                        .min(fits);
                    queue.take(size)
                }
                Err(_) => return Ok(()),
            };
            if mine.is_empty() {
                return Ok(());
            }
            while !mine.is_empty() {
                let later = mine.split_off(mine.len().min(fits));
                let ended = self
                    .eval_chunk(flake, &mine, (limits, shared.costs), on_result, on_line)
                    .await?;
                if let Some(finished) = ended.stopped_after {
                    fits = finished.max(1);
                }
                mine = ended.rest;
                mine.extend(later);
            }
        }
    }

    /// One `nix eval` of `chunk`: the hosts left for a new process, and whether it was stopped
    /// for its memory.
    async fn eval_chunk(
        &self,
        flake: &str,
        chunk: &[String],
        (limits, costs): (&EvalLimits, &Mutex<Costs>),
        on_result: ResultSink<'_>,
        on_line: LineSink<'_>,
    ) -> Result<ChunkEnd, NixError> {
        let names: Vec<&str> = chunk.iter().map(String::as_str).collect();
        let shown = format!("nix eval {flake}#nixosConfigurations");
        let mut progress = Progress {
            finished: vec![false; chunk.len()],
            ..Progress::default()
        };
        let mut bad_marker: Option<String> = None;
        // When the current host was started, and the time spent on the hosts evaluated.
        let mut started: Option<std::time::Instant> = None;
        let mut evaluating = std::time::Duration::ZERO;
        let spawned = std::time::Instant::now();
        let mut sink = |line: &str| {
            if let Some(index) = line.strip_prefix(START) {
                progress.current = index.trim().parse().ok();
                progress.since_start.clear();
                started = Some(std::time::Instant::now());
            } else if let Some(json) = line.strip_prefix(DONE) {
                match done_result(json, chunk) {
                    Ok((i, result)) => {
                        on_result(&chunk[i], result);
                        progress.finished[i] = true;
                        progress.current = None;
                        evaluating += started
                            .take()
                            .map_or_else(Default::default, |s| s.elapsed());
                    }
                    Err(detail) => bad_marker = Some(detail),
                }
            } else {
                let host = progress.current.and_then(|i| names.get(i).copied());
                on_line(host, line);
                progress.since_start.push(line.to_owned());
            }
        };
        let budget = limits.per_worker();
        let command = command::cmd(&self.nix, eval_args(flake, &names));
        let (output, killed) =
            command::run_watched(command, &shown, &mut sink, Some(budget)).await?;
        let finished = progress.finished.iter().filter(|f| **f).count();
        if output.success
            && !killed
            && let Ok(mut costs) = costs.lock()
        {
            costs.add(spawned.elapsed(), evaluating, finished);
        }
        if let Some(detail) = bad_marker {
            return Err(NixError::Unexpected {
                command: shown,
                detail,
            });
        }
        let unfinished = |skip: Option<usize>| -> Vec<String> {
            (0..chunk.len())
                .filter(|&i| !progress.finished[i] && Some(i) != skip)
                .map(|i| chunk[i].clone())
                .collect()
        };
        let none_finished = finished == 0;
        if killed {
            let lines = budget_lines(limits);
            let rest = match progress.current {
                // The host alone (after the flake) needed more than the budget.
                Some(i) if none_finished => {
                    on_result(&chunk[i], Err(lines));
                    unfinished(Some(i))
                }
                // Its memory was held by the hosts before it: a fresh process for it and the rest.
                Some(_) => unfinished(None),
                None if none_finished => {
                    for attr in unfinished(None) {
                        on_result(&attr, Err(lines.clone()));
                    }
                    Vec::new()
                }
                None => unfinished(None),
            };
            return Ok(ChunkEnd {
                rest,
                stopped_after: Some(finished),
            });
        }
        if output.success {
            for attr in unfinished(None) {
                on_result(
                    &attr,
                    Err(vec![format!("nix eval returned nothing for `{attr}`")]),
                );
            }
            return Ok(ChunkEnd::default());
        }
        let rest = match progress.current {
            Some(i) => {
                let mut lines = error_lines(&progress.since_start.join("\n"));
                if lines.is_empty() {
                    lines = error_lines(&output.stderr);
                }
                on_result(&chunk[i], Err(lines));
                unfinished(Some(i))
            }
            // Before any host: the flake itself is broken, for every host alike.
            None => {
                let lines = error_lines(&output.stderr);
                for attr in unfinished(None) {
                    on_result(&attr, Err(lines.clone()));
                }
                Vec::new()
            }
        };
        Ok(ChunkEnd {
            rest,
            stopped_after: None,
        })
    }
}

/// The lines of a host whose evaluation passed its memory budget.
fn budget_lines(limits: &EvalLimits) -> Vec<String> {
    vec![
        format!(
            "error: evaluating this configuration took more than {} MiB of memory, the budget \
             of one evaluator (eval-memory {} MiB / eval-workers {}), and was stopped",
            limits.per_worker() / MIB,
            limits.memory / MIB,
            limits.workers
        ),
        "hint: raise eval-memory or lower eval-workers in [fleet] (or --eval-memory, \
         --eval-workers)"
            .to_owned(),
    ]
}

/// The host (index in `chunk`) and outcome of one `hbdeploy-eval-done` marker.
fn done_result(
    json: &str,
    chunk: &[String],
) -> Result<(usize, Result<Toplevel, Vec<String>>), String> {
    let done: Done = serde_json::from_str(json).map_err(|err| err.to_string())?;
    let Some(attr) = chunk.get(done.i) else {
        return Err(format!("a result for host {} of {}", done.i, chunk.len()));
    };
    let result = match (done.missing, done.drv, done.out) {
        (true, _, _) => Err(vec![format!(
            "error: the flake has no nixosConfigurations.{}",
            nix_string(attr)
        )]),
        (false, Some(drv_path), Some(out_path)) => Ok(Toplevel { drv_path, out_path }),
        _ => return Err(format!("an incomplete result for `{attr}`: {json}")),
    };
    Ok((done.i, result))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nix_strings_are_escaped() {
        assert_eq!(nix_string("laptop"), "\"laptop\"");
        assert_eq!(nix_string("a\"b\\c${d}$e"), "\"a\\\"b\\\\c\\${d}$e\"");
    }

    #[test]
    fn apply_expression_names_every_attribute_in_order() {
        let expr = apply_expr(&["a", "b-c", "x${y}"]);
        assert!(
            expr.starts_with("cs: let names = [ \"a\" \"b-c\" \"x\\${y}\" ];"),
            "{expr}"
        );
        assert!(expr.contains("hbdeploy-eval-start"));
        assert!(expr.contains("hbdeploy-eval-done"));
    }

    #[test]
    fn eval_args_enable_flakes_and_ask_for_json() {
        let args = eval_args("path:/x", &["a"]);
        assert_eq!(&args[..2], FEATURES);
        assert_eq!(
            &args[2..5],
            ["eval", "--json", "path:/x#nixosConfigurations"]
        );
        assert_eq!(args[5], "--apply");
    }

    #[test]
    fn error_lines_skip_chatter_before_the_error() {
        let stderr =
            "warning: Git tree is dirty\nerror: attribute 'x' missing\n\n   at «string»:1:2\n";
        assert_eq!(
            error_lines(stderr),
            ["error: attribute 'x' missing", "   at «string»:1:2"]
        );
        assert_eq!(error_lines("just text\n"), ["just text"]);
    }

    #[test]
    fn chunks_are_guided_and_bounded() {
        let limits = |workers: usize, chunk: Option<usize>| EvalLimits {
            workers: NonZeroUsize::new(workers).unwrap_or(NonZeroUsize::MIN),
            memory: 4096 * MIB,
            chunk: chunk.and_then(NonZeroUsize::new),
        };
        assert_eq!(limits(2, None).chunk_size(20), 5);
        assert_eq!(limits(2, None).chunk_size(3), 1);
        assert_eq!(limits(2, None).chunk_size(5000), MAX_CHUNK);
        assert_eq!(limits(2, Some(1)).chunk_size(5000), 1);
        assert_eq!(limits(4, None).per_worker(), 1024 * MIB);
    }

    #[test]
    fn chunks_grow_where_start_up_dominates() {
        let limits = EvalLimits {
            workers: NonZeroUsize::new(2).unwrap_or(NonZeroUsize::MIN),
            memory: 4096 * MIB,
            chunk: None,
        };
        let ms = std::time::Duration::from_millis;
        let mut costs = Costs::default();
        assert_eq!(costs.worth(), None, "nothing known before a process ended");
        // Toy hosts: 40 ms of start-up, 2 ms per host: every host left in one process.
        costs.add(ms(46), ms(6), 3);
        assert_eq!(costs.worth(), Some(MAX_CHUNK));
        assert_eq!(limits.chunk_size_after(12, costs.worth()), MAX_CHUNK);
        // Real hosts: 1 s of start-up, 5 s per host: guided scheduling as before.
        let mut costs = Costs::default();
        costs.add(ms(16_000), ms(15_000), 3);
        assert_eq!(costs.worth(), Some(1));
        assert_eq!(limits.chunk_size_after(20, costs.worth()), 5);
        assert_eq!(limits.chunk_size_after(3, costs.worth()), 1);
        // A fixed chunk stays fixed.
        let fixed = EvalLimits {
            chunk: NonZeroUsize::new(1),
            ..limits
        };
        assert_eq!(fixed.chunk_size_after(12, Some(MAX_CHUNK)), 1);
    }

    #[test]
    fn a_chunk_never_exceeds_its_byte_bound() {
        let long = "h".repeat(MAX_CHUNK_BYTES / 2);
        let mut queue = Queue {
            pending: [long.clone(), long.clone(), long.clone(), "x".to_owned()]
                .into_iter()
                .collect(),
        };
        assert_eq!(queue.take(64).len(), 1);
        assert_eq!(queue.take(64).len(), 1);
        let huge = Queue {
            pending: ["h".repeat(MAX_CHUNK_BYTES * 2)].into_iter().collect(),
        }
        .take(64);
        assert_eq!(huge.len(), 1, "a single host always goes");
        let five_thousand: Vec<String> = (0..5000).map(|i| format!("host-{i:04}")).collect();
        let mut queue = Queue {
            pending: five_thousand.into_iter().collect(),
        };
        let chunk = queue.take(MAX_CHUNK);
        let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
        assert!(apply_expr(&refs).len() < 128 * 1024);
    }

    #[test]
    fn markers_become_results() {
        let chunk = ["a".to_owned(), "b".to_owned()];
        let drv = format!("/nix/store/{}-x.drv", "a".repeat(32));
        let out = format!("/nix/store/{}-x", "b".repeat(32));
        let json = format!("{{\"i\":1,\"drv\":\"{drv}\",\"out\":\"{out}\"}}");
        let (i, result) = done_result(&json, &chunk).expect("parses");
        assert_eq!(i, 1);
        assert_eq!(result.map(|t| t.out_path.to_string()), Ok(out));
        let (_, missing) = done_result("{\"i\":0,\"missing\":true}", &chunk).expect("parses");
        assert!(missing.is_err());
        assert!(done_result("{\"i\":7,\"missing\":true}", &chunk).is_err());
        assert!(done_result("nonsense", &chunk).is_err());
    }
}
