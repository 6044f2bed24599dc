//! `rollback`, `generations` and `status` against the lab (issue 3).

use crate::support::{hbdeploy, host, row};
use hbdeploy_lab::{Activation, Lab, LabHost, SystemSpec};

/// Everything about a host that a refused command must leave alone.
fn snapshot(h: &LabHost) -> (Option<String>, Option<String>, String, usize) {
    (
        h.current_system().expect("read"),
        h.profile_system().expect("read"),
        h.generations().expect("read"),
        h.activations().expect("read").len(),
    )
}

/// A lab whose hosts were deployed twice: generation 1, then generation 2 (current).
fn deployed_twice(names: &[&str]) -> (Lab, Vec<String>, Vec<String>) {
    let mut lab = Lab::start(names).expect("lab starts");
    lab.write_fleet(&[], "").expect("fleet");
    let first = hbdeploy(&lab, &["apply", "--all"]);
    assert_eq!(first.code, 0, "{}", first.both());
    let running = |lab: &Lab| -> Vec<String> {
        names
            .iter()
            .map(|n| {
                host(lab, n)
                    .current_system()
                    .expect("read")
                    .expect("deployed")
            })
            .collect()
    };
    let gen1 = running(&lab);
    lab.bump_all().expect("new systems");
    let second = hbdeploy(&lab, &["apply", "--all"]);
    assert_eq!(second.code, 0, "{}", second.both());
    let gen2 = running(&lab);
    (lab, gen1, gen2)
}

#[test]
fn rollback_restores_the_first_deployment_and_to_goes_forward_again() {
    let (lab, gen1, gen2) = deployed_twice(&["desktop", "server"]);
    let run = hbdeploy(&lab, &["rollback", "desktop"]);
    assert_eq!(run.code, 0, "{}", run.both());
    let d = host(&lab, "desktop");
    assert_eq!(d.current_system().expect("read"), Some(gen1[0].clone()));
    assert_eq!(d.profile_system().expect("read"), Some(gen1[0].clone()));
    let generations = d.generations().expect("read");
    let current: Vec<&str> = generations
        .lines()
        .filter(|l| l.contains("(current)"))
        .collect();
    assert_eq!(current.len(), 1, "{generations}");
    assert!(current[0].trim_start().starts_with("1 "), "{generations}");
    assert_eq!(row(&run, "desktop")[1..3], ["ok", "activate"]);
    assert_eq!(row(&run, "desktop")[4], "1", "{}", run.both());
    // The other host was not touched.
    assert_eq!(
        host(&lab, "server").current_system().expect("read"),
        Some(gen2[1].clone())
    );

    let forward = hbdeploy(&lab, &["rollback", "desktop", "--to", "2"]);
    assert_eq!(forward.code, 0, "{}", forward.both());
    assert_eq!(d.current_system().expect("read"), Some(gen2[0].clone()));
    let generations = d.generations().expect("read");
    assert!(
        generations
            .lines()
            .any(|l| l.trim_start().starts_with("2 ") && l.contains("(current)")),
        "{generations}"
    );

    // Back to 1, then `apply` of the fleet's system again: nix reuses generation 2, holding it.
    assert_eq!(hbdeploy(&lab, &["rollback", "desktop"]).code, 0);
    let again = hbdeploy(&lab, &["apply", "desktop"]);
    let cells = row(&again, "desktop");
    assert_eq!(
        [&cells[1], &cells[2], &cells[4]],
        ["ok", "activate", "2"],
        "{}",
        again.both()
    );
    let generations = d.generations().expect("read");
    let numbers = generations
        .lines()
        .filter_map(|l| l.split_whitespace().next());
    assert!(numbers.eq(["1", "2"]), "{generations}");
}

#[test]
fn rollback_goal_boot_changes_only_the_boot_default() {
    let (lab, gen1, gen2) = deployed_twice(&["server"]);
    let run = hbdeploy(&lab, &["rollback", "--all", "--goal", "boot"]);
    assert_eq!(run.code, 0, "{}", run.both());
    let h = host(&lab, "server");
    assert_eq!(h.profile_system().expect("read"), Some(gen1[0].clone()));
    assert_eq!(h.boot_default().expect("read"), Some(gen1[0].clone()));
    assert_eq!(h.current_system().expect("read"), Some(gen2[0].clone()));
}

#[test]
fn refusals_leave_the_host_exactly_as_it_was() {
    let mut lab = Lab::start(&["fresh", "once"]).expect("lab");
    let extra = format!("\n[hosts.ghost]\naddress = \"{}\"\n", lab.dead_address());
    lab.write_fleet(&[], &extra).expect("fleet");
    lab.set_system("ghost", SystemSpec::default())
        .expect("flake");
    let deployed = hbdeploy(&lab, &["apply", "once"]);
    assert_eq!(deployed.code, 0, "{}", deployed.both());

    let before: Vec<_> = ["fresh", "once"].map(|n| snapshot(host(&lab, n))).to_vec();
    let run = hbdeploy(&lab, &["rollback", "--all"]);
    assert_eq!(run.code, 1, "{}", run.both());
    assert!(
        run.stdout
            .contains("fresh: the host has no system generations; the host was not changed"),
        "{}",
        run.both()
    );
    assert!(
        run.stdout
            .contains("once: there is no generation before generation 1; the host was not changed"),
        "{}",
        run.both()
    );
    assert!(
        run.stdout
            .contains("ghost: cannot reach the host; it was not changed"),
        "{}",
        run.both()
    );
    assert!(
        run.stdout.contains("3 hosts: 0 succeeded, 3 failed"),
        "{}",
        run.both()
    );

    let missing = hbdeploy(&lab, &["rollback", "once", "--to", "7"]);
    assert_eq!(missing.code, 1, "{}", missing.both());
    assert!(
        missing.stdout.contains(
            "once: generation 7 does not exist (the host has 1); the host was not changed"
        ),
        "{}",
        missing.both()
    );
    let after: Vec<_> = ["fresh", "once"].map(|n| snapshot(host(&lab, n))).to_vec();
    assert_eq!(before, after);
}

#[test]
fn a_failing_rollback_activation_says_where_the_host_was_left() {
    let mut lab = Lab::start(&["server"]).expect("lab");
    lab.write_fleet(&[], "").expect("fleet");
    // Generation 1 fails to activate now (deployed with --goal boot, which works) ...
    let broken = SystemSpec {
        activation: Activation::FailNow,
        ..SystemSpec::default()
    };
    lab.set_system("server", broken).expect("flake");
    let first = hbdeploy(&lab, &["apply", "--all", "--goal", "boot"]);
    assert_eq!(first.code, 0, "{}", first.both());
    // ... generation 2 works and runs.
    lab.set_system(
        "server",
        SystemSpec {
            generation: 2,
            ..SystemSpec::default()
        },
    )
    .expect("flake");
    let second = hbdeploy(&lab, &["apply", "--all"]);
    assert_eq!(second.code, 0, "{}", second.both());
    let running = host(&lab, "server")
        .current_system()
        .expect("read")
        .expect("running");

    let run = hbdeploy(&lab, &["rollback", "server"]);
    assert_eq!(run.code, 1, "{}", run.both());
    assert!(
        run.stdout.contains(&format!(
            "server: switch-to-configuration switch of generation 1 failed (exit code 1): the \
             system profile is at generation 1, /run/current-system is {running}"
        )),
        "{}",
        run.both()
    );
    assert!(
        run.stdout
            .contains("  | error: toy activation of server fails on purpose"),
        "{}",
        run.both()
    );
}

#[test]
fn generations_lists_numbers_dates_paths_and_flags() {
    let (lab, gen1, gen2) = deployed_twice(&["server"]);
    host(&lab, "server").reboot().expect("reboot");
    let rolled = hbdeploy(&lab, &["rollback", "server"]);
    assert_eq!(rolled.code, 0, "{}", rolled.both());

    let run = hbdeploy(&lab, &["generations", "server"]);
    assert_eq!(run.code, 0, "{}", run.both());
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        ["GEN", "CREATED", "(UTC)", "SYSTEM"]
    );
    let one: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(one[0], "1");
    assert!(
        one[1].starts_with("20") && one[2].len() == 8,
        "{}",
        lines[1]
    );
    assert_eq!(one[3], gen1[0]);
    assert_eq!(one[4..], ["current,", "running"]);
    let two: Vec<&str> = lines[2].split_whitespace().collect();
    assert_eq!(two[3], gen2[0]);
    assert_eq!(two[4..], ["booted"]);

    let json = hbdeploy(&lab, &["generations", "server", "--json"]);
    assert_eq!(json.code, 0, "{}", json.both());
    let value: serde_json::Value = serde_json::from_str(&json.stdout).expect("JSON");
    assert_eq!(value["host"], "server");
    let gens = value["generations"].as_array().expect("array");
    assert_eq!(gens.len(), 2);
    assert_eq!(gens[0]["number"], 1);
    assert_eq!(gens[0]["path"], gen1[0].as_str());
    assert_eq!(gens[0]["current"], true);
    assert_eq!(gens[0]["running"], true);
    assert_eq!(gens[0]["booted"], false);
    assert_eq!(gens[1]["booted"], true);
    assert!(gens[1]["created"].as_str().expect("date").ends_with('Z'));

    let unknown = hbdeploy(&lab, &["generations", "sevrer"]);
    assert_eq!(unknown.code, 2);
    assert!(
        unknown.stderr.contains("did you mean `server`?"),
        "{}",
        unknown.both()
    );
}

#[test]
fn status_tells_up_to_date_differs_and_unreachable_apart() {
    let mut lab = Lab::start(&["current", "stale", "fresh"]).expect("lab");
    let extra = format!("\n[hosts.ghost]\naddress = \"{}\"\n", lab.dead_address());
    lab.write_fleet(&[], &extra).expect("fleet");
    lab.set_system("ghost", SystemSpec::default())
        .expect("flake");
    let deployed = hbdeploy(&lab, &["apply", "current", "stale"]);
    assert_eq!(deployed.code, 0, "{}", deployed.both());
    // `stale` now has a newer system in the flake that was not deployed.
    lab.set_system(
        "stale",
        SystemSpec {
            generation: 2,
            ..SystemSpec::default()
        },
    )
    .expect("flake");

    let plain = hbdeploy(&lab, &["status"]);
    assert_eq!(plain.code, 1, "ghost is unreachable: {}", plain.both());
    for name in ["current", "stale"] {
        assert_eq!(row(&plain, name)[1], "yes");
        assert_eq!(
            row(&plain, name).last().map(String::as_str),
            Some("unknown"),
            "not built"
        );
    }
    assert_eq!(row(&plain, "ghost")[1], "no");
    assert!(
        plain.stdout.contains("ghost: cannot reach the host"),
        "{}",
        plain.both()
    );

    let built = hbdeploy(&lab, &["status", "--build", "--json"]);
    assert_eq!(built.code, 1, "{}", built.both());
    let value: serde_json::Value = serde_json::from_str(&built.stdout).expect("JSON on stdout");
    let hosts = value["hosts"].as_array().expect("hosts");
    let by_name = |name: &str| {
        hosts
            .iter()
            .find(|h| h["host"] == name)
            .unwrap_or_else(|| panic!("{name} missing: {value:#}"))
    };
    let current = by_name("current");
    assert_eq!(current["reachable"], true);
    assert_eq!(current["flake"], "up-to-date");
    assert_eq!(current["generation"], 1);
    assert_eq!(current["profile_generation"], 1);
    assert_eq!(current["reboot_needed"], false);
    assert!(
        current["current_system"]
            .as_str()
            .expect("path")
            .starts_with("/nix/store/")
    );
    assert_eq!(current["error"], serde_json::Value::Null);
    let stale = by_name("stale");
    assert_eq!(stale["flake"], "differs");
    assert!(
        stale["flake_system"]
            .as_str()
            .expect("path")
            .contains("toy-2")
    );
    let fresh = by_name("fresh");
    assert_eq!(fresh["reachable"], true);
    assert_eq!(fresh["current_system"], serde_json::Value::Null);
    assert_eq!(fresh["flake"], "differs");
    let ghost = by_name("ghost");
    assert_eq!(ghost["reachable"], false);
    assert!(
        ghost["error"]
            .as_str()
            .expect("why")
            .contains("cannot connect"),
        "{ghost}"
    );
    assert_eq!(ghost["flake"], "unknown");
    // Every host object has the documented keys, no more, no fewer.
    let keys = [
        "booted_system",
        "current_system",
        "error",
        "flake",
        "flake_detail",
        "flake_system",
        "generation",
        "host",
        "profile_generation",
        "reachable",
        "reboot_needed",
        "unconfirmed",
    ];
    for h in hosts {
        let mut got: Vec<&str> = h
            .as_object()
            .expect("object")
            .keys()
            .map(String::as_str)
            .collect();
        got.sort_unstable();
        assert_eq!(got, keys);
    }
}

#[test]
fn status_sees_a_reboot_is_needed() {
    let (lab, _, _) = deployed_twice(&["server"]);
    let h = host(&lab, "server");
    let run = hbdeploy(&lab, &["status", "--json"]);
    let value: serde_json::Value = serde_json::from_str(&run.stdout).expect("JSON");
    // Never booted in the lab: no booted system, so no reboot is due.
    assert_eq!(value["hosts"][0]["reboot_needed"], false, "{}", run.both());
    h.reboot().expect("reboot");
    let rolled = hbdeploy(&lab, &["rollback", "server"]);
    assert_eq!(rolled.code, 0, "{}", rolled.both());
    let run = hbdeploy(&lab, &["status", "--json"]);
    let value: serde_json::Value = serde_json::from_str(&run.stdout).expect("JSON");
    assert_eq!(value["hosts"][0]["reboot_needed"], true, "{}", run.both());
    assert_eq!(value["hosts"][0]["generation"], 1);
}

#[test]
fn a_host_that_never_answers_cannot_make_status_hang() {
    let lab = Lab::start(&["server"]).expect("lab");
    // Something that accepts TCP connections on the ghost's address but never speaks SSH.
    let silent = std::net::TcpListener::bind((lab.dead_address(), hbdeploy_lab::SSH_PORT))
        .expect("bind the silent listener");
    let extra = format!(
        "\n[hosts.ghost]\naddress = \"{}\"\nconnect-timeout = 2\n",
        lab.dead_address()
    );
    lab.write_fleet(&[], &extra).expect("fleet");
    let started = std::time::Instant::now();
    let run = hbdeploy(&lab, &["status"]);
    let took = started.elapsed();
    drop(silent);
    assert_eq!(run.code, 1, "{}", run.both());
    assert_eq!(row(&run, "ghost")[1], "no");
    assert!(
        run.stdout.contains("no answer from root@")
            && run.stdout.contains("within 2s (connect-timeout)"),
        "{}",
        run.both()
    );
    assert_eq!(row(&run, "server")[1], "yes");
    // Bounded by the 2 s timeout, not by anything the silent host does.
    assert!(took < std::time::Duration::from_secs(20), "took {took:?}");
}
