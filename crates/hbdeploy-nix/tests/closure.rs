//! Closures from real nix: requests made together are answered from one query, and each gets
//! exactly the closure `nix-store --query --requisites` gives for its path alone; a path that
//! is not valid still gets nix's own error.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::process::Command;

use hbdeploy_nix::{Nix, StorePath, closures_from_graph};

/// Builds three toy store paths: `shared`, and `one` and `two`, which both refer to it and to
/// a path of their own. Returns `[one, two]`.
fn build() -> Vec<StorePath> {
    let system = format!("{}-linux", std::env::consts::ARCH);
    let nonce = format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let expr = format!(
        "let mk = name: text: derivation {{ inherit name; system = \"{system}\"; \
         builder = \"/bin/sh\"; args = [ \"-c\" \"echo '${{text}}' > $out\" ]; }}; \
         shared = mk \"closure-shared\" \"{nonce}\"; \
         own = n: mk \"closure-own-${{n}}\" \"{nonce}\"; \
         in [ (mk \"closure-one\" \"${{shared}} ${{own \"1\"}}\") \
              (mk \"closure-two\" \"${{shared}} ${{own \"2\"}}\") ]"
    );
    let out = Command::new("nix")
        .args(["--extra-experimental-features", "nix-command"])
        .args(["build", "--no-link", "--json", "--impure", "--expr", &expr])
        .output()
        .expect("nix runs");
    assert!(
        out.status.success(),
        "nix build failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // `--json`, not `--print-out-paths`: nix 2.8 has only the former.
    let built: serde_json::Value = serde_json::from_slice(&out.stdout).expect("nix's JSON");
    let paths: Vec<StorePath> = built
        .as_array()
        .expect("a list")
        .iter()
        .map(|b| StorePath::new(b["outputs"]["out"].as_str().expect("out")).expect("a store path"))
        .collect();
    assert_eq!(paths.len(), 2, "{paths:?}");
    paths
}

fn requisites(path: &StorePath) -> Vec<StorePath> {
    let out = Command::new("nix-store")
        .args(["--query", "--requisites", path.as_str()])
        .output()
        .expect("nix-store runs");
    assert!(out.status.success());
    let mut paths: Vec<StorePath> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| StorePath::new(l).expect("a store path"))
        .collect();
    paths.sort();
    paths
}

#[tokio::test]
async fn closures_asked_together_are_each_the_paths_own() {
    let built = build();
    let nix = Nix::detect().await.expect("nix is installed");
    // Three at once: the first is asked alone, the others together in one query.
    let (a, b, c) = tokio::join!(
        nix.closure(&built[0]),
        nix.closure(&built[1]),
        nix.closure(&built[0])
    );
    for (got, path) in [(a, &built[0]), (b, &built[1]), (c, &built[0])] {
        let mut got = got.expect("a closure");
        got.sort();
        assert_eq!(got, requisites(path), "the closure of {path}");
        assert_eq!(
            got.len(),
            3,
            "{path}: itself, its own path and the shared one"
        );
    }
}

#[tokio::test]
async fn a_path_that_is_not_valid_gets_nix_stores_error_and_the_others_their_closures() {
    let built = build();
    let nix = Nix::detect().await.expect("nix is installed");
    let missing =
        StorePath::new(format!("/nix/store/{}-closure-never-built", "0".repeat(32))).unwrap();
    let (good, bad, other) = tokio::join!(
        nix.closure(&built[0]),
        nix.closure(&missing),
        nix.closure(&built[1])
    );
    let mut good = good.expect("a valid path's closure");
    good.sort();
    assert_eq!(good, requisites(&built[0]));
    let mut other = other.expect("a valid path's closure");
    other.sort();
    assert_eq!(other, requisites(&built[1]));
    let error = bad
        .expect_err("no closure for a path not in the store")
        .to_string();
    assert!(
        error.contains("nix-store --query --requisites") && error.contains("closure-never-built"),
        "{error}"
    );
}

#[test]
fn the_graph_of_several_paths_gives_each_its_own_requisites() {
    let built = build();
    let out = Command::new("nix-store")
        .args(["--query", "--graph", built[0].as_str(), built[1].as_str()])
        .output()
        .expect("nix-store runs");
    assert!(out.status.success());
    let closures = closures_from_graph(&String::from_utf8_lossy(&out.stdout), &built)
        .expect("nix-store's graph is read");
    for path in &built {
        let mut got = closures[path].clone();
        got.sort();
        assert_eq!(got, requisites(path), "the closure of {path}");
    }
}
