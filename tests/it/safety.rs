//! Safe activation against the lab (issue 4): magic rollback when the new system breaks sshd,
//! automatic rollback of a failed activation, canaries, the target lock, and Ctrl-C.

use std::path::Path;
use std::time::Duration;

use crate::support::lab::{deployed, running, spec, wait_until};
use crate::support::{HBDEPLOY, hbdeploy, host, row};
use hbdeploy_lab::{Activation, Lab};

#[test]
fn a_system_that_kills_sshd_is_rolled_back_by_the_host_itself() {
    let mut lab = deployed(&["broken", "fine"]);
    let old = running(&lab, "broken");
    lab.set_system("broken", spec(2, Activation::KillSshd))
        .expect("flake");
    lab.set_system("fine", spec(2, Activation::Succeed))
        .expect("flake");

    // Long enough for the healthy host to confirm even on a loaded machine.
    let run = hbdeploy(&lab, &["apply", "--all", "--confirm-timeout", "8"]);
    assert_eq!(run.code, 1, "{}", run.both());
    assert_eq!(
        row(&run, "broken")[1..3],
        ["rolled-back", "activate"],
        "{}",
        run.both()
    );
    assert!(
        run.stdout.contains(
            "broken: rolled back: the new system could not be confirmed over a new SSH connection"
        ),
        "{}",
        run.both()
    );
    assert_eq!(row(&run, "fine")[1], "ok", "{}", run.both());
    assert!(
        run.stdout.contains("2 hosts: 1 succeeded, 1 failed"),
        "{}",
        run.both()
    );

    // The host went back on its own: old system running, profile on generation 1 again, the
    // broken generation gone from the profile, and sshd back (a fresh login works).
    let h = host(&lab, "broken");
    assert_eq!(running(&lab, "broken"), old);
    assert_eq!(h.profile_system().expect("read"), Some(old.clone()));
    let generations = h.generations().expect("read");
    assert_eq!(generations.lines().count(), 1, "{generations}");
    let status = hbdeploy(&lab, &["status", "broken"]);
    assert_eq!(status.code, 0, "sshd is back: {}", status.both());
    assert!(
        h.activations()
            .expect("read")
            .iter()
            .any(|a| a.contains("toy-2"))
    );
}

#[test]
fn a_failed_activation_is_rolled_back_unless_asked_not_to() {
    let mut lab = deployed(&["server"]);
    let old = running(&lab, "server");
    lab.set_system("server", spec(2, Activation::FailAfterSwitch))
        .expect("flake");

    let run = hbdeploy(&lab, &["apply", "--all"]);
    assert_eq!(run.code, 1, "{}", run.both());
    assert_eq!(
        row(&run, "server")[1..3],
        ["rolled-back", "activate"],
        "{}",
        run.both()
    );
    assert_eq!(
        row(&run, "server")[4],
        "1",
        "back on generation 1: {}",
        run.both()
    );
    assert!(
        run.stdout
            .contains("switch-to-configuration switch failed (exit code 4); rolled back"),
        "{}",
        run.both()
    );
    assert!(
        run.stdout
            .contains("  | error: toy activation of server failed after switching"),
        "{}",
        run.both()
    );
    let h = host(&lab, "server");
    assert_eq!(running(&lab, "server"), old);
    assert_eq!(h.profile_system().expect("read"), Some(old.clone()));
    assert_eq!(h.generations().expect("read").lines().count(), 1);

    let kept = hbdeploy(&lab, &["apply", "--all", "--no-auto-rollback"]);
    assert_eq!(kept.code, 1, "{}", kept.both());
    assert_eq!(row(&kept, "server")[1], "FAILED", "{}", kept.both());
    assert!(
        kept.stdout.contains("(automatic rollback is off)"),
        "{}",
        kept.both()
    );
    assert!(
        kept.stdout
            .contains("the system profile already points at the new system"),
        "{}",
        kept.both()
    );
    assert_ne!(
        running(&lab, "server"),
        old,
        "left on the failed generation, as asked"
    );
}

#[test]
fn a_failing_canary_stops_the_other_hosts_from_being_touched() {
    let mut lab = deployed(&["canary", "a", "b"]);
    let logins: Vec<usize> = ["a", "b"].map(|n| host(&lab, n).accepted_logins()).to_vec();
    lab.set_system("canary", spec(2, Activation::Fail))
        .expect("flake");
    lab.bump_all().expect("flake");

    let run = hbdeploy(&lab, &["apply", "--all", "--canary", "canary"]);
    assert_eq!(run.code, 1, "{}", run.both());
    assert_eq!(row(&run, "canary")[1], "rolled-back", "{}", run.both());
    for name in ["a", "b"] {
        assert_eq!(row(&run, name)[1], "skipped", "{}", run.both());
    }
    assert!(
        run.stdout
            .contains("3 hosts: 0 succeeded, 1 failed, 2 skipped"),
        "{}",
        run.both()
    );
    let after: Vec<usize> = ["a", "b"].map(|n| host(&lab, n).accepted_logins()).to_vec();
    assert_eq!(logins, after, "skipped hosts were contacted");

    // Batches: one host per wave; all succeed in order.
    lab.set_system("canary", spec(5, Activation::Succeed))
        .expect("flake");
    let batched = hbdeploy(&lab, &["apply", "--all", "--batch", "1"]);
    assert_eq!(batched.code, 0, "{}", batched.both());
}

#[test]
fn two_deployments_of_one_host_do_not_run_at_once() {
    let mut lab = deployed(&["server"]);
    lab.set_system("server", spec(2, Activation::Gate))
        .expect("flake");
    let first = lab
        .spawn_hbdeploy(Path::new(HBDEPLOY), &["apply", "--all"])
        .expect("start the first apply");
    let h = host(&lab, "server");
    assert!(
        wait_until(Duration::from_secs(60), || h
            .activations()
            .expect("read")
            .len()
            == 2),
        "the first apply never started activating"
    );
    let second = hbdeploy(&lab, &["apply", "--all", "--reactivate"]);
    lab.open_gate().expect("gate");
    let first = hbdeploy_lab::finish(first).expect("first apply ends");
    assert_eq!(first.code, 0, "{}", first.both());
    assert_eq!(second.code, 1, "{}", second.both());
    assert_eq!(
        row(&second, "server")[1..3],
        ["FAILED", "connect"],
        "{}",
        second.both()
    );
    assert!(
        second
            .stdout
            .contains("server: the host is locked by another deployment (hbdeploy apply by "),
        "{}",
        second.both()
    );
    assert_eq!(
        h.activations().expect("read").len(),
        2,
        "the second apply activated"
    );

    // The lock died with the first deployment: a third apply goes through.
    let third = hbdeploy(&lab, &["rollback", "server"]);
    assert_eq!(third.code, 0, "{}", third.both());
}

/// A one-shot HTTP server answering `status` to every request, on `address`.
fn http_server(address: std::net::SocketAddr, status: &'static str) -> std::thread::JoinHandle<()> {
    let listener = std::net::TcpListener::bind(address).expect("bind the HTTP stand-in");
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        for mut socket in listener.incoming().take(4).flatten() {
            let mut request = [0u8; 1024];
            let _ = socket.read(&mut request);
            let _ = socket
                .write_all(format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n").as_bytes());
        }
    })
}

#[test]
fn a_failing_health_check_rolls_back_only_that_host() {
    let mut lab = Lab::start(&["checked", "other"]).expect("lab");
    let web = std::net::SocketAddr::from((lab.dead_address(), 8080));
    let _server = http_server(web, "200 OK");
    let other = lab.host("other").expect("other").address;
    let extra = format!(
        "\n[[health]]\nhttp = \"http://{web}/health\"\nretries = 0\n\
         \n[[hosts.checked.health]]\ncommand = \"grep -q toy-1 /run/current-system/nixos-version\"\nretries = 1\ntimeout = 5\n\
         \n[[hosts.other.health]]\ntcp = \"{other}:{}\"\n",
        hbdeploy_lab::SSH_PORT
    );
    lab.write_fleet(&[], &extra).expect("fleet");
    let first = hbdeploy(&lab, &["apply", "--all"]);
    assert_eq!(
        first.code,
        0,
        "generation 1 passes its checks: {}",
        first.both()
    );
    let old = running(&lab, "checked");

    lab.bump_all().expect("generation 2");
    let run = hbdeploy(&lab, &["apply", "--all"]);
    assert_eq!(run.code, 1, "{}", run.both());
    assert_eq!(
        row(&run, "checked")[1..3],
        ["rolled-back", "check"],
        "{}",
        run.both()
    );
    assert!(
        run.stdout.contains(
            "checked: health check command `grep -q toy-1 /run/current-system/nixos-version` \
             failed after 2 attempts (exit code 1); rolled back"
        ),
        "{}",
        run.both()
    );
    assert_eq!(running(&lab, "checked"), old);
    assert_eq!(
        host(&lab, "checked")
            .generations()
            .expect("read")
            .lines()
            .count(),
        1
    );
    assert_eq!(row(&run, "other")[1], "ok", "{}", run.both());
    assert!(running(&lab, "other").contains("toy-2"));
}

#[test]
fn check_runs_the_checks_on_demand_and_changes_nothing() {
    let lab = deployed(&["server"]);
    let web = std::net::SocketAddr::from((lab.dead_address(), 8081));
    let _server = http_server(web, "503 Service Unavailable");
    let server = lab.host("server").expect("server").address;
    let extra = format!(
        "\n[[hosts.server.health]]\ntcp = \"{server}:{port}\"\nretries = 0\n\
         \n[[hosts.server.health]]\ntcp = \"{dead}:9\"\nretries = 0\ntimeout = 2\n\
         \n[[hosts.server.health]]\nhttp = \"http://{web}/\"\nretries = 0\n\
         \n[[hosts.server.health]]\nhttp = \"http://{web}/\"\nstatus = 503\nretries = 0\n",
        port = hbdeploy_lab::SSH_PORT,
        dead = lab.dead_address(),
    );
    lab.write_fleet(&[], &extra).expect("fleet");
    let activations = host(&lab, "server").activations().expect("read").len();
    let run = hbdeploy(&lab, &["check"]);
    assert_eq!(run.code, 1, "{}", run.both());
    let results: Vec<&str> = run
        .stdout
        .lines()
        .filter(|l| l.starts_with("server "))
        .map(|l| l.split_whitespace().last().unwrap_or(""))
        .collect();
    assert_eq!(results, ["ok", "FAILED", "FAILED", "ok"], "{}", run.both());
    assert!(run.stdout.contains("http http://127.77."), "{}", run.both());
    assert!(run.stdout.contains("/ (status 503)  ok"), "{}", run.both());
    assert!(
        run.stdout.contains("HTTP status 503, expected 2xx"),
        "{}",
        run.both()
    );
    assert!(run.stdout.contains("cannot connect"), "{}", run.both());
    assert_eq!(
        host(&lab, "server").activations().expect("read").len(),
        activations
    );
}
