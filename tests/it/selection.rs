//! Selecting hosts by pattern and exclusion (issue 19, part 3): the errors the binary gives for
//! selections that match nothing (snapshots, no lab needed), and in the lab that an excluded
//! host is left alone.

use crate::support::{hbdeploy, host, row, system_path, untouched};
use hbdeploy_lab::Lab;

const FLEET: &str = r#"[fleet]
flake = "./nixos"

[hosts.web-1]
address = "web-1.home.arpa"
tags = ["web", "eu-west"]

[hosts.web-2]
address = "web-2.home.arpa"
tags = ["web", "eu-east"]

[hosts.db]
address = "db.home.arpa"
tags = ["infra"]
"#;

/// Runs hbdeploy with [`FLEET`] in a fresh directory; the exit code and both streams, for a
/// snapshot. Every case here fails before any host is contacted.
fn run(test: &str, args: &[&str]) -> String {
    crate::support::answer("selection", test, &[("fleet.toml", FLEET)], args)
}

#[test]
fn a_pattern_that_matches_nothing_suggests_one_that_does() {
    insta::assert_snapshot!(run("no-match", &["apply", "wbe-*"]));
}

#[test]
fn a_tag_pattern_that_matches_nothing_lists_the_tags() {
    insta::assert_snapshot!(run("no-tag-match", &["exec", "@us-*", "--", "true"]));
}

#[test]
fn a_misspelt_exclusion_is_an_error_not_a_no_op() {
    insta::assert_snapshot!(run("bad-exclusion", &["apply", "--all", "!dv"]));
}

#[test]
fn exclusions_alone_ask_for_a_selection() {
    insta::assert_snapshot!(run("only-exclusions", &["apply", "!db"]));
}

#[test]
fn exclusions_that_take_every_host_away_are_an_error() {
    insta::assert_snapshot!(run("all-excluded", &["rollback", "@web", "!web-*"]));
}

#[test]
fn a_broken_pattern_says_what_is_wrong() {
    insta::assert_snapshot!(run("bad-pattern", &["plan", "web-[12"]));
}

#[test]
fn install_refuses_a_pattern_it_would_wipe_the_disks_of_a_guess() {
    insta::assert_snapshot!(run(
        "install",
        &["install", "web-*", "--disk", "/dev/vdb", "--print"]
    ));
}

#[test]
fn apply_all_but_one_leaves_that_one_untouched() {
    let lab = Lab::start(&["desktop", "laptop", "server"])
        .expect("lab starts (needs root, nix-bin, openssh-server)");
    lab.write_fleet(&[], "").expect("fleet.toml written");
    let before = untouched(host(&lab, "server"));
    let run = hbdeploy(&lab, &["apply", "--all", "!server"]);
    assert_eq!(run.code, 0, "{}", run.both());
    for name in ["desktop", "laptop"] {
        assert_eq!(row(&run, name)[1], "ok", "{}", run.both());
        assert_eq!(
            host(&lab, name).current_system().expect("read").as_deref(),
            Some(system_path(&lab, name).as_str())
        );
    }
    assert!(
        !run.stdout.lines().any(|l| l.starts_with("server")),
        "server in the results: {}",
        run.both()
    );
    assert!(!run.stderr.contains("[server]"), "{}", run.both());
    assert_eq!(untouched(host(&lab, "server")), before);
    let server_system = system_path(&lab, "server");
    assert!(
        !host(&lab, "server")
            .has_store_path(&server_system)
            .expect("query"),
        "server's system was copied to it"
    );
}
