//! A snapshot of every selection error, rendered as the binary shows it, against the real fleet.

#![allow(clippy::expect_used)]

use std::fmt::Write as _;
use std::path::Path;

use hbdeploy_files::Hint as _;
use hbdeploy_inventory::{Fleet, Selector};

const FLEET_TOML: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../fleet.toml"));

/// `hbdeploy apply ARGS…` (with `--all` if `all`), and what selection says about it.
fn attempt(out: &mut String, fleet: &Fleet, all: bool, args: &[&str]) {
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    let flag = if all { " --all" } else { "" };
    // Quote empty arguments as a shell would need them, so that they show.
    let shown: Vec<&str> = args
        .iter()
        .map(|a| if a.is_empty() { "''" } else { a })
        .collect();
    let line = format!("$ hbdeploy apply{flag} {}", shown.join(" "));
    let _ = writeln!(out, "{}", line.trim_end());
    match Selector::parse_args(all, &args).and_then(|s| fleet.select(&s)) {
        Ok(hosts) => {
            let names: Vec<&str> = hosts.iter().map(|h| h.name.as_str()).collect();
            let _ = writeln!(out, "selected: {}", names.join(", "));
        }
        Err(e) => {
            let _ = writeln!(out, "error: {e}");
            if let Some(hint) = e.hint() {
                let _ = writeln!(out, "hint: {hint}");
            }
        }
    }
    out.push('\n');
}

#[test]
fn selection_messages() {
    let fleet = Fleet::parse(
        FLEET_TOML,
        Path::new("/repo/fleet.toml"),
        Some(Path::new("/h")),
    )
    .expect("fleet.toml parses");
    let mut out = String::new();
    for (all, args) in [
        (false, &[][..]),
        (false, &["sever"][..]),
        (false, &["mailserver"][..]),
        (false, &["infra"][..]),
        (false, &["@workstatoin"][..]),
        (false, &["@laptop"][..]),
        (false, &["@"][..]),
        (false, &[""][..]),
        (false, &["server", "@workstation", "laptop"][..]),
        (true, &["server"][..]),
    ] {
        attempt(&mut out, &fleet, all, args);
    }
    insta::assert_snapshot!(out);
}
