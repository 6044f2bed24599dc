//! The binary's answers to bad input: exit code 2 and one rendered error naming the file, line
//! and column or the offending argument, with a hint (issue 2). No lab needed: these fail before
//! any host is contacted.

use std::process::{Command, Stdio};

use crate::support::{HBDEPLOY, Scratch};

const GOOD_FLEET: &str = r#"[fleet]
flake = "./nixos"

[hosts.desktop]
address = "desktop.home.arpa"
tags = ["workstation"]

[hosts.server]
address = "server.home.arpa"
tags = ["infra"]
"#;

/// Runs hbdeploy in a fresh directory holding `fleet` as `fleet.toml`; returns the exit code and
/// both streams, as one text for a snapshot.
fn run(test: &str, fleet: Option<&str>, args: &[&str]) -> String {
    let files: Vec<(&str, &str)> = fleet.map(|f| ("fleet.toml", f)).into_iter().collect();
    crate::support::answer("cli", test, &files, args)
}

fn apply_all(test: &str, fleet: &str) -> String {
    run(test, Some(fleet), &["apply", "--all"])
}

#[test]
fn syntax_error() {
    let fleet = "[fleet]\nflake = \"./nixos\"\n\n[hosts.server\naddress = \"x\"\n";
    insta::assert_snapshot!(apply_all("syntax", fleet));
}

#[test]
fn unknown_key_suggests_the_right_one() {
    let fleet = GOOD_FLEET.replace("address = \"server", "adress = \"server");
    insta::assert_snapshot!(apply_all("unknown-key", &fleet));
}

#[test]
fn wrong_type() {
    let fleet = GOOD_FLEET.replace("[fleet]\n", "[fleet]\nparallel = \"ten\"\n");
    insta::assert_snapshot!(apply_all("wrong-type", &fleet));
}

#[test]
fn duplicate_host() {
    let fleet = format!("{GOOD_FLEET}\n[hosts.server]\naddress = \"other\"\n");
    insta::assert_snapshot!(apply_all("duplicate", &fleet));
}

#[test]
fn invalid_host_name() {
    let fleet = GOOD_FLEET.replace("[hosts.server]", "[hosts.\"web server\"]");
    insta::assert_snapshot!(apply_all("invalid-name", &fleet));
}

#[test]
fn no_hosts() {
    insta::assert_snapshot!(apply_all(
        "no-hosts",
        "[fleet]\nflake = \"./nixos\"\n\n[hosts]\n"
    ));
}

#[test]
fn missing_fleet_file() {
    insta::assert_snapshot!(run("missing", None, &["apply", "--all"]));
}

#[test]
fn no_selection_says_how_to_select() {
    insta::assert_snapshot!(run("no-selection", Some(GOOD_FLEET), &["apply"]));
}

#[test]
fn unknown_host_suggests_the_closest() {
    insta::assert_snapshot!(run("unknown-host", Some(GOOD_FLEET), &["apply", "sever"]));
}

#[test]
fn unknown_tag_suggests_the_closest() {
    insta::assert_snapshot!(run("unknown-tag", Some(GOOD_FLEET), &["apply", "@infar"]));
}

#[test]
fn unknown_goal_lists_the_goals() {
    insta::assert_snapshot!(run(
        "unknown-goal",
        Some(GOOD_FLEET),
        &["apply", "--all", "--goal", "upgrade"]
    ));
}

#[test]
fn the_fleet_file_can_come_from_the_environment() {
    let dir = Scratch::fresh("hbdeploy-cli-env").expect("temp dir");
    let fleet = dir.join("elsewhere.toml");
    std::fs::write(
        &fleet,
        "[fleet]\nflake = \"./nixos\"\n[hosts.a]\nadress = \"x\"\n",
    )
    .expect("write");
    let output = Command::new(HBDEPLOY)
        .args(["apply", "--all"])
        .env("HBDEPLOY_FLEET", &fleet)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .output()
        .expect("hbdeploy runs");
    drop(dir);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr.contains("elsewhere.toml:4:1: unknown key `adress`"),
        "{stderr}"
    );
}

#[test]
fn builders_on_the_command_line_are_checked_like_fleet_toml() {
    let out = run(
        "builders-cli",
        Some(GOOD_FLEET),
        &[
            "apply",
            "--all",
            "--builders",
            "ssh://a x86_64-linux # fast one",
        ],
    );
    insta::assert_snapshot!(out);
}
