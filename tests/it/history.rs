//! `--json` results of apply and rollback, the deployment ledger, `history` and
//! `rollback --to-deploy` against the lab (issue 6).

use std::path::Path;
use std::time::{Duration, Instant};

use crate::support::{HBDEPLOY, hbdeploy, host, settings};
use hbdeploy_lab::{Lab, SystemSpec};
use serde_json::Value;

fn json(run: &hbdeploy_lab::Run) -> Value {
    serde_json::from_str(&run.stdout)
        .unwrap_or_else(|err| panic!("not JSON ({err}):\n{}", run.both()))
}

fn ids(lab: &Lab) -> Vec<String> {
    let run = hbdeploy(lab, &["history", "--json"]);
    assert_eq!(run.code, 0, "{}", run.both());
    json(&run)["deployments"]
        .as_array()
        .expect("deployments")
        .iter()
        .map(|d| d["id"].as_str().expect("id").to_owned())
        .collect()
}

#[test]
fn json_results_history_and_rollback_to_a_deployment() {
    let mut lab = Lab::start(&["server"]).expect("lab");
    let extra = format!("\n[hosts.ghost]\naddress = \"{}\"\n", lab.dead_address());
    lab.write_fleet(&[], &extra).expect("fleet");
    lab.set_system("ghost", SystemSpec::default())
        .expect("flake");

    let first = hbdeploy(&lab, &["apply", "--all", "--json"]);
    assert_eq!(first.code, 1, "ghost is unreachable: {}", first.both());
    assert!(
        first.stderr.contains("[server] activate"),
        "progress on stderr"
    );
    settings(&lab).bind(|| insta::assert_snapshot!("apply_json", first.stdout));
    let gen1 = host(&lab, "server")
        .current_system()
        .expect("read")
        .expect("deployed");

    lab.set_system(
        "server",
        SystemSpec {
            generation: 2,
            ..SystemSpec::default()
        },
    )
    .expect("flake");
    let second = hbdeploy(&lab, &["apply", "server"]);
    assert_eq!(second.code, 0, "{}", second.both());
    let rolled = hbdeploy(&lab, &["rollback", "server", "--json"]);
    assert_eq!(rolled.code, 0, "{}", rolled.both());
    settings(&lab).bind(|| insta::assert_snapshot!("rollback_json", rolled.stdout));
    assert_eq!(
        host(&lab, "server").current_system().expect("read"),
        Some(gen1.clone())
    );

    let table = hbdeploy(&lab, &["history"]);
    assert_eq!(table.code, 0, "{}", table.both());
    // Column widths follow the user's and the IDs' lengths: compare the cells, not the padding.
    let mut columns = settings(&lab);
    columns.add_filter(r" {2,}", "  ");
    columns.bind(|| insta::assert_snapshot!("history_table", table.stdout));
    let one = hbdeploy(&lab, &["history", "server", "--json", "--limit", "1"]);
    assert_eq!(one.code, 0, "{}", one.both());
    settings(&lab).bind(|| insta::assert_snapshot!("history_json", one.stdout));

    // Back to what the second deployment gave the server: generation 2.
    let recorded = ids(&lab);
    assert_eq!(recorded.len(), 3, "{recorded:?}");
    let run = hbdeploy(&lab, &["rollback", "server", "--to-deploy", &recorded[1]]);
    assert_eq!(run.code, 0, "{}", run.both());
    let now = host(&lab, "server").current_system().expect("read");
    assert!(
        now.as_deref().is_some_and(|p| p.ends_with("toy-2")),
        "{now:?}"
    );
    assert_eq!(ids(&lab).len(), 4, "the rollback is recorded too");

    // The ghost never got a system from the first deployment: refused, nothing changed.
    let refused = hbdeploy(&lab, &["rollback", "ghost", "--to-deploy", &recorded[0]]);
    assert_eq!(refused.code, 2, "{}", refused.both());
    assert!(
        refused
            .stderr
            .contains("did not leave ghost on a new system (it ended `failed`)"),
        "{}",
        refused.both()
    );
    let unknown = hbdeploy(&lab, &["rollback", "server", "--to-deploy", "nope"]);
    assert_eq!(unknown.code, 2, "{}", unknown.both());
    assert!(
        unknown.stderr.contains("no deployment `nope`"),
        "{}",
        unknown.both()
    );
}

#[test]
fn a_run_killed_while_writing_its_record_leaves_the_earlier_records_intact() {
    let lab = Lab::start(&["server"]).expect("lab");
    lab.write_fleet(&[], "").expect("fleet");
    let first = hbdeploy(&lab, &["apply", "--all"]);
    assert_eq!(first.code, 0, "{}", first.both());
    let before = hbdeploy(&lab, &["history", "--json"]);
    assert_eq!(
        json(&before)["deployments"].as_array().map(Vec::len),
        Some(1)
    );

    // The second run stalls halfway through writing its record, and is killed there.
    let mut child = lab
        .spawn_hbdeploy_with_env(
            Path::new(HBDEPLOY),
            &["apply", "--all"],
            &[("HBDEPLOY_TEST_STALL_LEDGER_WRITE", "120")],
        )
        .expect("spawn");
    let dir = lab.dir().join(".hbdeploy/deployments");
    let deadline = Instant::now() + Duration::from_secs(120);
    let partial = loop {
        let temp = std::fs::read_dir(&dir)
            .expect("ledger directory")
            .flatten()
            .map(|e| e.path())
            .find(|p| p.to_string_lossy().ends_with(".json.tmp"));
        if let Some(temp) = temp
            && std::fs::metadata(&temp).is_ok_and(|m| m.len() > 0)
        {
            break temp;
        }
        assert!(Instant::now() < deadline, "the record was never started");
        std::thread::sleep(Duration::from_millis(50));
    };
    child.kill().expect("kill");
    let _ = child.wait();
    let text = std::fs::read_to_string(&partial).expect("partial record");
    assert!(
        serde_json::from_str::<Value>(&text).is_err(),
        "the record was cut off: {text}"
    );

    let after = hbdeploy(&lab, &["history", "--json"]);
    assert_eq!(after.code, 0, "{}", after.both());
    assert_eq!(after.stdout, before.stdout, "earlier records changed");
    assert!(after.stderr.is_empty(), "{}", after.both());

    let third = hbdeploy(&lab, &["apply", "--all"]);
    assert_eq!(third.code, 0, "{}", third.both());
    assert_eq!(ids(&lab).len(), 2, "a later run records as usual");
}

#[test]
fn plain_progress_has_one_line_per_step_and_no_control_characters() {
    let lab = Lab::start(&["server"]).expect("lab");
    lab.write_fleet(&[], "").expect("fleet");
    let run = hbdeploy(&lab, &["apply", "server"]);
    assert_eq!(run.code, 0, "{}", run.both());
    assert!(
        !run.stderr.chars().any(|c| c.is_control() && c != '\n'),
        "{:?}",
        run.stderr
    );
    settings(&lab).bind(|| insta::assert_snapshot!("plain_progress", run.stderr));
}

#[test]
fn live_progress_on_a_terminal_ends_with_every_host_done() {
    let lab = Lab::start(&["server"]).expect("lab");
    lab.write_fleet(&[], "").expect("fleet");
    let run = lab
        .hbdeploy_on_a_terminal(Path::new(HBDEPLOY), &["apply", "server"], "\u{0}", &[])
        .expect("runs");
    assert_eq!(run.code, 0, "{}", run.stdout);
    assert!(run.stdout.contains("✓ server  done"), "{:?}", run.stdout);
    assert!(
        run.stdout.contains("1 done, 0 failed, 0 remaining"),
        "{:?}",
        run.stdout
    );
    // NO_COLOR is set: cursor movement, but no colour codes.
    assert!(!run.stdout.contains("\u{1b}[3"), "{:?}", run.stdout);
}

#[test]
fn a_run_killed_mid_activation_leaves_a_record_that_says_it_never_finished() {
    let mut lab = Lab::start(&["server"]).expect("lab");
    lab.write_fleet(&[], "").expect("fleet");
    let first = hbdeploy(&lab, &["apply", "--all"]);
    assert_eq!(first.code, 0, "{}", first.both());
    lab.set_system(
        "server",
        SystemSpec {
            generation: 2,
            activation: hbdeploy_lab::Activation::Slow(3),
            ..SystemSpec::default()
        },
    )
    .expect("flake");
    let system = crate::support::system_path(&lab, "server");
    crate::support::lab::kill_mid_activation(&lab, "server", &system, &["apply", "--all"]);

    let run = hbdeploy(&lab, &["history", "--json"]);
    assert_eq!(run.code, 0, "{}", run.both());
    let records = json(&run)["deployments"]
        .as_array()
        .expect("records")
        .clone();
    assert_eq!(records.len(), 2, "{}", run.both());
    let killed = &records[1]["hosts"][0];
    assert_eq!(killed["host"], "server");
    assert_eq!(killed["outcome"], "unfinished", "{}", run.both());
    assert!(
        killed["error"]
            .as_str()
            .is_some_and(|e| e.contains("ended before it recorded")),
        "{}",
        run.both()
    );
    let plain = hbdeploy(&lab, &["history"]);
    assert!(plain.stdout.contains("unfinished"), "{}", plain.both());
}
