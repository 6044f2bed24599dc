//! Deploying the machine hbdeploy runs on (issue 19, part 2): a host with `address = "local"`.
//! What is refused before anything is contacted (snapshots, no lab needed); the deployments
//! themselves run hbdeploy inside a lab host against that host (`local_lab.rs`).

const FLEET: &str = r#"[fleet]
flake = "./nixos"

[hosts.desk]
address = "local"

[hosts.server]
address = "server.home.arpa"
"#;

/// Runs hbdeploy with `fleet` in a fresh directory; the exit code and both streams.
fn run(test: &str, fleet: &str, args: &[&str]) -> String {
    crate::support::answer("local", test, &[("fleet.toml", fleet)], args)
}

#[test]
fn a_checked_reboot_of_the_machine_hbdeploy_runs_on_is_refused() {
    insta::assert_snapshot!(run("reboot", FLEET, &["reboot", "--all"]));
}

#[test]
fn apply_with_reboot_refuses_the_machine_hbdeploy_runs_on_before_building() {
    insta::assert_snapshot!(run(
        "apply-reboot",
        FLEET,
        &["apply", "desk", "--goal", "boot", "--reboot"]
    ));
}

#[test]
fn ssh_only_settings_on_the_local_host_are_an_error_naming_the_line() {
    let fleet = FLEET.replace(
        "address = \"local\"\n",
        "address = \"local\"\nproxy-jump = \"server\"\n",
    );
    insta::assert_snapshot!(run("ssh-only", &fleet, &["status", "desk"]));
}

#[test]
fn keyscan_has_no_host_key_to_fetch_from_the_local_host() {
    let fleet = "[fleet]\nflake = \"./nixos\"\n\n[hosts.desk]\naddress = \"local\"\n";
    insta::assert_snapshot!(run("keyscan", fleet, &["keyscan"]));
}
