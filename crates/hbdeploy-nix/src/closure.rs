//! Closures of local store paths, asked for by many hosts at once and answered by few
//! `nix-store` processes.
//!
//! Every host that is copied to needs its system's closure (which paths to ask the host about).
//! One `nix-store --query --requisites` per host costs a nix start-up each, 20 of them when 20
//! hosts reach their copy together. So requests are batched: the first one is asked at once,
//! and every request that comes while a query runs goes into the next one, a single
//! `nix-store --query --graph` of all their paths, whose edges give each path's own closure
//! (`--requisites` of several paths gives only their union). When a batch fails (a path not
//! valid, say), each of its requests is asked on its own, so each gets its own error.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use crate::command;
use crate::store_path::STORE_DIR;
use crate::{Nix, NixError, StorePath};

/// At most this many paths go into one query.
const MAX_BATCH: usize = 64;

/// At most this many store paths, over all closures, are kept by [`Nix::learn_closures`]
/// (about 4 MiB): a fleet of large, distinct systems keeps what fits and asks for the rest when
/// needed, so memory stays bounded however many hosts there are.
const MAX_KEPT: usize = 50_000;

/// A closure request waiting for the next query: `None` sent back when the batch failed.
type Waiting = (StorePath, oneshot::Sender<Option<Vec<StorePath>>>);

/// The requests not yet asked, and whether a query runs (which asks them next).
#[derive(Debug, Default)]
pub(crate) struct Batcher {
    state: Mutex<BatchState>,
}

#[derive(Debug, Default)]
struct BatchState {
    waiting: Vec<Waiting>,
    running: bool,
    /// Closures learnt ahead ([`Nix::learn_closures`]), each handed out once, and how many
    /// paths they hold.
    known: BTreeMap<StorePath, Vec<StorePath>>,
    kept: usize,
}

impl Batcher {
    fn state(&self) -> std::sync::MutexGuard<'_, BatchState> {
        // The state is a list and a flag, consistent at every step: a panic elsewhere while
        // holding the lock leaves nothing half-done to recover from.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Nix {
    /// Every store path in the closure of `path`, `path` included (the order is not
    /// meaningful). Asked together with the requests of other hosts made meanwhile.
    pub async fn closure(&self, path: &StorePath) -> Result<Vec<StorePath>, NixError> {
        let (tx, rx) = oneshot::channel();
        let start = {
            let mut state = self.closures.state();
            if let Some(closure) = state.known.remove(path) {
                state.kept -= closure.len();
                return Ok(closure);
            }
            state.waiting.push((path.clone(), tx));
            !std::mem::replace(&mut state.running, true)
        };
        if start {
            // A task of its own, so that a host that stops waiting (cancelled) does not leave
            // the others' requests unasked.
            tokio::spawn(ask_batches(self.clone(), Arc::clone(&self.closures)));
        }
        match rx.await {
            Ok(Some(closure)) => Ok(closure),
            // The batch failed, or its task ended before answering: asked alone.
            _ => self.closure_alone(path).await,
        }
    }

    /// Learns the closures of `paths` (distinct) ahead of the hosts that will ask for them,
    /// from one `nix-store --query --graph` per [`MAX_BATCH`] paths: a host's later
    /// [`Nix::closure`] of one of them then starts no `nix-store` (it is handed out once).
    /// Returns whether every one of `paths` is valid: the query fails when one is not, and then
    /// nothing of that batch is kept. At most [`MAX_KEPT`] paths are kept.
    pub async fn learn_closures(&self, paths: &[StorePath]) -> bool {
        for chunk in paths.chunks(MAX_BATCH) {
            let Some(closures) = self.closures_of(chunk).await else {
                return false;
            };
            let mut state = self.closures.state();
            for (path, closure) in closures {
                if state.kept + closure.len() <= MAX_KEPT && !state.known.contains_key(&path) {
                    state.kept += closure.len();
                    state.known.insert(path, closure);
                }
            }
        }
        true
    }

    /// `nix-store --query --requisites` of `path` alone.
    async fn closure_alone(&self, path: &StorePath) -> Result<Vec<StorePath>, NixError> {
        let shown = format!("nix-store --query --requisites {path}");
        let args = ["--query", "--requisites", path.as_str()];
        let output = command::run(command::cmd(&self.nix_store, args), &shown, &mut |_| {}).await?;
        if !output.success {
            return Err(NixError::failed(&shown, &output));
        }
        output
            .stdout
            .lines()
            .map(|l| {
                StorePath::new(l).map_err(|err| NixError::Unexpected {
                    command: shown.clone(),
                    detail: err.to_string(),
                })
            })
            .collect()
    }

    /// The closure of each of `paths`, from one `nix-store --query --graph`; `None` if it
    /// failed or its answer could not be read.
    async fn closures_of(
        &self,
        paths: &[StorePath],
    ) -> Option<BTreeMap<StorePath, Vec<StorePath>>> {
        let mut args = vec!["--query", "--graph"];
        args.extend(paths.iter().map(StorePath::as_str));
        let shown = "nix-store --query --graph";
        let output = command::run(command::cmd(&self.nix_store, args), shown, &mut |_| {})
            .await
            .ok()?;
        if !output.success {
            return None;
        }
        closures_from_graph(&output.stdout, paths)
    }
}

/// Asks the waiting requests, a batch at a time, until none is left.
async fn ask_batches(nix: Nix, batcher: Arc<Batcher>) {
    loop {
        let batch: Vec<Waiting> = {
            let mut state = batcher.state();
            if state.waiting.is_empty() {
                state.running = false;
                return;
            }
            let take = state.waiting.len().min(MAX_BATCH);
            state.waiting.drain(..take).collect()
        };
        let mut paths: Vec<StorePath> = batch.iter().map(|(p, _)| p.clone()).collect();
        paths.sort();
        paths.dedup();
        let closures = nix.closures_of(&paths).await;
        for (path, tx) in batch {
            let closure = closures.as_ref().and_then(|c| c.get(&path).cloned());
            let _ = tx.send(closure);
        }
    }
}

/// Each root's closure from `nix-store --query --graph`'s dot output: a node line per path
/// (`"HASH-NAME" [label = …];`) and an edge per reference (`"REFERENCE" -> "REFERRER" […];`),
/// names without the store directory. `None` if a root is not in it or a name is no store path.
pub fn closures_from_graph(
    dot: &str,
    roots: &[StorePath],
) -> Option<BTreeMap<StorePath, Vec<StorePath>>> {
    let mut nodes: BTreeSet<StorePath> = BTreeSet::new();
    let mut references: BTreeMap<StorePath, Vec<StorePath>> = BTreeMap::new();
    for line in dot.lines() {
        let line = line.trim();
        if !line.starts_with('"') {
            continue;
        }
        let mut quoted = line.split('"').skip(1).step_by(2);
        let first = quoted.next()?;
        let first = StorePath::new(format!("{STORE_DIR}/{first}")).ok()?;
        if line.contains("\" -> \"") {
            let referrer = quoted.next()?;
            let referrer = StorePath::new(format!("{STORE_DIR}/{referrer}")).ok()?;
            references
                .entry(referrer.clone())
                .or_default()
                .push(first.clone());
            nodes.insert(referrer);
        }
        nodes.insert(first);
    }
    let mut closures = BTreeMap::new();
    for root in roots {
        if !nodes.contains(root) {
            return None;
        }
        let mut seen: BTreeSet<&StorePath> = BTreeSet::from([root]);
        let mut stack = vec![root];
        while let Some(path) = stack.pop() {
            for reference in references.get(path).into_iter().flatten() {
                if seen.insert(reference) {
                    stack.push(reference);
                }
            }
        }
        closures.insert(root.clone(), seen.into_iter().cloned().collect());
    }
    Some(closures)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sp(c: char, name: &str) -> StorePath {
        let hash: String = std::iter::repeat_n(c, 32).collect();
        StorePath::new(format!("{STORE_DIR}/{hash}-{name}")).expect("valid test path")
    }

    fn node(p: &StorePath) -> String {
        let id = &p.as_str()[STORE_DIR.len() + 1..];
        format!(
            "\"{id}\" [label = \"{}\", shape = box, style = filled, fillcolor = \"#ff0000\"];",
            p.name()
        )
    }

    fn edge(reference: &StorePath, referrer: &StorePath) -> String {
        let id = |p: &StorePath| p.as_str()[STORE_DIR.len() + 1..].to_owned();
        format!(
            "\"{}\" -> \"{}\" [color = \"black\"];",
            id(reference),
            id(referrer)
        )
    }

    #[test]
    fn each_root_gets_its_own_closure_not_the_union() {
        // Two systems sharing glibc; each has a payload of its own.
        let (a, b) = (sp('a', "system-a"), sp('b', "system-b"));
        let (pa, pb, glibc) = (sp('c', "payload-a"), sp('d', "payload-b"), sp('e', "glibc"));
        let dot = [
            "digraph G {".to_owned(),
            node(&a),
            edge(&pa, &a),
            edge(&glibc, &pa),
            node(&b),
            edge(&pb, &b),
            edge(&glibc, &pb),
            node(&pa),
            node(&pb),
            node(&glibc),
            "}".to_owned(),
        ]
        .join("\n");
        let closures =
            closures_from_graph(&dot, &[a.clone(), b.clone()]).expect("the graph is read");
        let mut want_a = vec![a.clone(), pa.clone(), glibc.clone()];
        want_a.sort();
        let mut want_b = vec![b.clone(), pb, glibc];
        want_b.sort();
        assert_eq!(closures[&a], want_a);
        assert_eq!(closures[&b], want_b);
    }

    #[test]
    fn a_path_without_references_is_its_own_closure() {
        let a = sp('a', "lonely");
        let dot = format!("digraph G {{\n{}\n}}\n", node(&a));
        let closures = closures_from_graph(&dot, std::slice::from_ref(&a)).expect("read");
        assert_eq!(closures[&a], vec![a.clone()]);
    }

    #[test]
    fn a_root_missing_from_the_graph_or_a_bad_name_fails_the_batch() {
        let (a, b) = (sp('a', "system-a"), sp('b', "system-b"));
        let dot = format!("digraph G {{\n{}\n}}\n", node(&a));
        assert!(closures_from_graph(&dot, &[a.clone(), b]).is_none());
        let bad = "digraph G {\n\"not-a-store-path\" [label = \"x\"];\n}\n";
        assert!(closures_from_graph(bad, &[a]).is_none());
    }

    /// A store path added from a file of its own (no references: its closure is itself); the
    /// file's directory is removed once the store holds its copy.
    fn added(name: &str) -> StorePath {
        let dir = hbdeploy_files::Scratch::fresh(&format!("hbdeploy-learn-{name}")).unwrap();
        let file = dir.join(name);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        std::fs::write(&file, format!("{name} {nanos}")).unwrap();
        let out = std::process::Command::new("nix-store")
            .arg("--add")
            .arg(&file)
            .output()
            .expect("nix-store runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        StorePath::new(String::from_utf8_lossy(&out.stdout).trim()).unwrap()
    }

    /// Closures learnt ahead are handed out without a query, once each; a path that is not
    /// valid makes the whole batch unlearnt. Needs nix.
    #[tokio::test]
    async fn learnt_closures_are_handed_out_once_without_a_query() {
        let (one, two) = (added("learn-one"), added("learn-two"));
        let nix = Nix::detect().await.expect("nix found");
        assert!(nix.learn_closures(&[one.clone(), two.clone()]).await);
        assert_eq!(nix.closures.state().known.len(), 2);
        assert_eq!(nix.closure(&one).await.unwrap(), vec![one.clone()]);
        // Handed out: no longer kept, and nothing was queued for a query.
        {
            let state = nix.closures.state();
            assert_eq!((state.known.len(), state.kept), (1, 1));
            assert!(state.waiting.is_empty() && !state.running);
        }
        // Asked again, it is queried as usual.
        assert_eq!(nix.closure(&one).await.unwrap(), vec![one.clone()]);

        let missing =
            StorePath::new(format!("{STORE_DIR}/{}-learn-never-added", "0".repeat(32))).unwrap();
        let other = Nix::detect().await.expect("nix found");
        assert!(!other.learn_closures(&[two, missing]).await);
        assert!(other.closures.state().known.is_empty());
    }
}
