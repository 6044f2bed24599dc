//! ARCHITECTURE's "no circle between modules", checked: within each crate, the graph of which
//! top-level module names which (`crate::m`, `crate::{m, …}`) has no cycle. Code under
//! `#[cfg(test)]` (from that line on in a file, and the test-only modules of `TEST_ONLY`) is left
//! out: a test may reach anywhere.

use std::collections::{BTreeMap, BTreeSet};

use super::tidy::sources;

/// Modules that exist for unit tests only (`#[cfg(test)] mod …;` in their crate's root).
const TEST_ONLY: &[&str] = &["crates/hbdeploy-pipeline/src/fake.rs"];

/// The crates' source roots: the binary's and each library's.
fn roots() -> Vec<String> {
    let mut roots = vec!["src".to_owned()];
    let mut crates: Vec<String> = std::fs::read_dir(super::tidy::root().join("crates"))
        .expect("crates/")
        .map(|e| {
            format!(
                "crates/{}/src",
                e.expect("entry").file_name().to_string_lossy()
            )
        })
        .collect();
    crates.sort();
    roots.extend(crates);
    roots
}

/// The top-level module a file under `root` belongs to (`None` for the crate root).
fn module_of(root: &str, path: &str) -> Option<String> {
    let rest = path.strip_prefix(root)?.trim_start_matches('/');
    let first = rest.split('/').next()?.trim_end_matches(".rs");
    (!matches!(first, "lib" | "main" | "bin")).then(|| first.to_owned())
}

/// The top-level modules `code` names through `crate::`.
fn named(code: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let inside = group.split('}').next().unwrap_or("");
            for item in inside.split(',') {
                let word: String = item
                    .trim()
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
                    .collect();
                if !word.is_empty() {
                    names.insert(word);
                }
            }
        } else {
            let word: String = rest
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
                .collect();
            if !word.is_empty() {
                names.insert(word);
            }
        }
    }
    names
}

type Graph = BTreeMap<String, BTreeSet<String>>;

fn graph(root: &str) -> Graph {
    let files = sources(root);
    let modules: BTreeSet<String> = files
        .iter()
        .filter_map(|(path, _)| module_of(root, path))
        .collect();
    let mut graph = Graph::new();
    for (path, code) in &files {
        let Some(from) = module_of(root, path) else {
            continue;
        };
        if TEST_ONLY.contains(&path.as_str()) {
            continue;
        }
        let product = code.split("#[cfg(test)]").next().unwrap_or("");
        let edges = graph.entry(from.clone()).or_default();
        for to in named(product) {
            if to != from && modules.contains(&to) {
                edges.insert(to);
            }
        }
    }
    graph
}

/// A cycle of `graph`, if it has one: its modules in order, the first repeated at the end.
fn cycle(graph: &Graph) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &Graph,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut found = path[at..].to_vec();
            found.push(node.to_owned());
            return Some(found);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(found) = visit(next, graph, path, done) {
                return Some(found);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|node| visit(node, graph, &mut Vec::new(), &mut done))
}

#[test]
fn no_crate_has_a_circle_between_its_modules() {
    let circles: Vec<String> = roots()
        .iter()
        .filter_map(|root| cycle(&graph(root)).map(|c| format!("{root}: {}", c.join(" → "))))
        .collect();
    assert!(
        circles.is_empty(),
        "modules that import each other in a circle:\n{}",
        circles.join("\n")
    );
}

#[test]
fn the_checker_finds_a_circle_and_reads_grouped_imports() {
    assert_eq!(
        named("use crate::{a, b::C, Upper};\nlet x = crate::c::f();"),
        ["a", "b", "c"].map(str::to_owned).into()
    );
    let mut circle = Graph::new();
    circle.insert("a".into(), ["b".to_owned()].into());
    circle.insert("b".into(), ["c".to_owned()].into());
    circle.insert("c".into(), ["a".to_owned()].into());
    assert_eq!(
        cycle(&circle),
        Some(["a", "b", "c", "a"].map(str::to_owned).to_vec())
    );
    circle.insert("c".into(), BTreeSet::new());
    assert_eq!(cycle(&circle), None);
}
