//! The evaluators against real nix (issue 17): a broken host in the middle of a chunk gets its
//! own error and the hosts after it go to a new process, so nobody is evaluated twice; an
//! evaluator over its memory budget is stopped, and what it had not finished goes to a fresh
//! one, unless one host alone is over the budget, which is then reported.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::num::NonZeroUsize;
use std::path::Path;
use std::sync::Mutex;

use hbdeploy_files::Scratch;
use hbdeploy_nix::{EvalLimits, EvalResults, Nix, Toplevel};

const MIB: u64 = 1024 * 1024;

/// A flake whose configurations are `hosts`: name → nix expression of its extra work, which is
/// forced before the toplevel and held by the configuration. In a directory of its own, removed
/// when the guard drops.
fn flake(name: &str, hosts: &[(&str, &str)]) -> Scratch {
    let dir = Scratch::fresh(&format!("hbdeploy-nix-eval-{name}")).expect("mkdir");
    let system = format!("{}-linux", std::env::consts::ARCH);
    let mut configs = String::new();
    for (host, work) in hosts {
        configs.push_str(&format!(
            "\"{host}\" = let work = {work}; in {{ config.work = work; \
             config.system.build.toplevel = builtins.trace \"evaluating {host}\" \
             (builtins.seq (builtins.deepSeq work work) (toy \"{host}\")); }};\n"
        ));
    }
    let text = format!(
        "{{ outputs = {{ self }}: let \
         toy = name: derivation {{ inherit name; system = \"{system}\"; builder = \"/bin/sh\"; \
         args = [ \"-c\" \"echo > $out\" ]; }}; \
         double = s: s + s; \
         oneMib = builtins.foldl' (s: i: double s) \"x\" (builtins.genList (i: i) 20); \
         held = mib: hashes: let s = builtins.genList (i: oneMib + toString i) mib; \
         in builtins.seq (builtins.deepSeq s null) (builtins.seq (builtins.foldl' (a: i: \
         builtins.seq (builtins.hashString \"sha256\" oneMib) (a + 1)) 0 \
         (builtins.genList (i: i) hashes)) s); \
         in {{ nixosConfigurations = {{\n{configs} }}; }}; }}\n"
    );
    std::fs::write(dir.join("flake.nix"), text).expect("flake written");
    dir
}

fn limits(workers: usize, memory_mib: u64, chunk: usize) -> EvalLimits {
    EvalLimits {
        workers: NonZeroUsize::new(workers).unwrap(),
        memory: memory_mib * MIB,
        chunk: NonZeroUsize::new(chunk),
    }
}

/// Every host's outcome and how often each was said to be evaluated.
async fn evaluate(dir: &Path, attrs: &[&str], limits: &EvalLimits) -> (EvalResults, String) {
    let nix = Nix::detect().await.expect("nix is installed");
    let flake = format!("path:{}", dir.display());
    let attrs: Vec<String> = attrs.iter().map(|a| (*a).to_owned()).collect();
    let results = Mutex::new(EvalResults::new());
    let lines = Mutex::new(String::new());
    let on_result = |attr: &str, result: Result<Toplevel, Vec<String>>| {
        let fresh = results.lock().unwrap().insert(attr.to_owned(), result);
        assert!(fresh.is_none(), "{attr} got two outcomes");
    };
    let on_line = |_: Option<&str>, line: &str| {
        let mut all = lines.lock().unwrap();
        all.push_str(line);
        all.push('\n');
    };
    nix.eval_toplevels(&flake, &attrs, limits, &on_result, &on_line)
        .await
        .expect("nix runs");
    (results.into_inner().unwrap(), lines.into_inner().unwrap())
}

#[tokio::test]
async fn a_broken_host_in_a_chunk_fails_alone_and_no_host_is_evaluated_twice() {
    let dir = flake(
        "broken",
        &[
            ("a", "1"),
            ("b", "throw \"b is broken on purpose\""),
            ("c", "2"),
            ("d", "3"),
        ],
    );
    let (results, lines) = evaluate(&dir, &["a", "b", "c", "d", "e"], &limits(1, 4096, 8)).await;
    drop(dir);
    let b = results["b"].as_ref().expect_err("b fails");
    assert!(b.join("\n").contains("b is broken on purpose"), "{b:?}");
    let e = results["e"].as_ref().expect_err("e is missing");
    assert!(e.join("\n").contains("no nixosConfigurations"), "{e:?}");
    for host in ["a", "c", "d"] {
        assert!(results[host].is_ok(), "{host}: {:?}", results[host]);
        let said = lines.matches(&format!("evaluating {host}\n")).count();
        assert_eq!(said, 1, "{host} evaluated {said} times\n{lines}");
    }
}

#[tokio::test]
async fn an_evaluator_over_budget_is_restarted_and_a_host_alone_over_it_fails() {
    // Each of a, b, c holds 120 MiB (and hashes for a while so the watcher sees it); two of
    // them in one process pass the 200 MiB budget, one alone does not. `huge` alone does.
    let held = "held 120 300";
    let dir = flake(
        "memory",
        &[
            ("a", held),
            ("b", held),
            ("c", held),
            ("huge", "held 400 300"),
        ],
    );
    let (results, lines) = evaluate(&dir, &["a", "b", "c", "huge"], &limits(1, 200, 8)).await;
    drop(dir);
    for host in ["a", "b", "c"] {
        assert!(
            results[host].is_ok(),
            "{host}: {:?}\n{lines}",
            results[host]
        );
    }
    let huge = results["huge"]
        .as_ref()
        .expect_err("huge is over the budget");
    assert!(
        huge.join("\n").contains("more than 200 MiB"),
        "{huge:?}\n{lines}"
    );
    // a was finished before the first restart, so it was evaluated once; b was in progress
    // then, so twice; from then on the worker knew one host fits a process, so c went alone.
    assert_eq!(lines.matches("evaluating a\n").count(), 1, "{lines}");
    assert_eq!(lines.matches("evaluating b\n").count(), 2, "{lines}");
    assert_eq!(lines.matches("evaluating c\n").count(), 1, "{lines}");
}
