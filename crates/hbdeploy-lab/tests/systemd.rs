//! The lab's systemd hosts: systemd is PID 1, units run over a real SSH session, each host has
//! its own store, a reboot is real, labs in parallel are apart, and a dropped lab leaves no
//! process and no mount behind.
//!
//! The first run on a machine makes the hosts' base root with debootstrap (a minute or two, and
//! the Debian archive must be reachable); it is cached in /var/cache/hbdeploy-lab for every
//! later run, where a host boots in a second or two.

// Test helpers panic with a message on purpose: that is how a test fails.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;

use hbdeploy_lab::{HostKind, Lab, LabHost, NIX_CONFIG, SSH_PORT};

/// Runs `script` on `host` through the `ssh` client with the lab's key and known_hosts (strict).
fn ssh(lab: &Lab, host: &LabHost, script: &str) -> std::process::Output {
    Command::new("ssh")
        .args(["-p", &SSH_PORT.to_string(), "-i"])
        .arg(lab.identity_file())
        .arg("-o")
        .arg(format!(
            "UserKnownHostsFile={}",
            lab.known_hosts().display()
        ))
        .args(["-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes"])
        .args(["-o", "ConnectTimeout=5"])
        .arg(format!("root@{}", host.address))
        .arg(script)
        .output()
        .expect("ssh runs")
}

fn ssh_ok(lab: &Lab, host: &LabHost, script: &str) -> String {
    let out = ssh(lab, host, script);
    assert!(
        out.status.success(),
        "ssh {script:?} on {}: {}\n{}",
        host.name,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn nix(args: &[&str], env: &[(&str, String)]) -> String {
    let out = Command::new("nix")
        .args(["--extra-experimental-features", "nix-command flakes"])
        .args(args)
        .env("NIX_CONFIG", NIX_CONFIG)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .expect("nix runs");
    assert!(
        out.status.success(),
        "nix {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Processes still running, of `pids`.
fn running(pids: &[u32]) -> Vec<u32> {
    pids.iter()
        .copied()
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
                stat.rsplit_once(") ")
                    .is_some_and(|(_, s)| !s.starts_with('Z'))
            })
        })
        .collect()
}

fn mounts_under(dir: &Path) -> Vec<String> {
    let dir = dir.to_string_lossy();
    std::fs::read_to_string("/proc/self/mountinfo")
        .expect("mountinfo")
        .lines()
        .filter(|line| line.contains(dir.as_ref()))
        .map(str::to_owned)
        .collect()
}

#[test]
fn systemd_hosts_run_units_over_ssh_own_their_store_and_reboot() {
    let mut lab = Lab::start_systemd(&["a", "b"]).expect("systemd lab starts");
    for name in ["a", "b"] {
        let host = lab.host(name).expect("host");
        assert_eq!(host.kind(), HostKind::Systemd);
        assert_eq!(host.sh("cat /proc/1/comm").expect("sh").trim(), "systemd");
        let state = host.sh("systemctl is-system-running || true").expect("sh");
        assert!(
            matches!(state.trim(), "running" | "degraded"),
            "{name}: {state}"
        );
        // Over a real SSH session: PID 1, the hostname, and a transient unit through dbus.
        let out = ssh_ok(
            &lab,
            host,
            "cat /proc/1/comm; hostname; systemd-run --wait --pipe --quiet true && echo unit-ok",
        );
        assert_eq!(out, format!("systemd\n{name}\nunit-ok\n"));
    }
    assert_eq!(lab.host("a").unwrap().accepted_logins(), 1);
    // A login's PAM session as on NixOS: a logind session (pam_systemd), and neither Debian's
    // motd scripts nor its mail check.
    let a = lab.host("a").unwrap();
    let out = ssh_ok(
        &lab,
        a,
        "echo \"session ${XDG_SESSION_ID:+yes}\"; grep -cE 'pam_(motd|mail)' /etc/pam.d/sshd || true",
    );
    assert_eq!(out, "session yes\n0\n");

    // A toy system goes into a's own store only, and its switch works there as on the lab's
    // other hosts.
    let attr = format!(
        "{}#nixosConfigurations.a.config.system.build.toplevel",
        lab.flake_ref()
    );
    let json = nix(&["build", "--json", "--no-link", &attr], &[]);
    let system = json
        .split("\"out\":\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("out path")
        .to_owned();
    let a = lab.host("a").unwrap();
    let opts = format!(
        "-p {SSH_PORT} -i {} -o UserKnownHostsFile={} -o StrictHostKeyChecking=yes -o BatchMode=yes",
        lab.identity_file().display(),
        lab.known_hosts().display()
    );
    nix(
        &[
            "copy",
            "--no-check-sigs",
            "--to",
            &format!("ssh-ng://root@{}", a.address),
            &system,
        ],
        &[("NIX_SSHOPTS", opts)],
    );
    assert!(a.has_store_path(&system).unwrap());
    assert!(!lab.host("b").unwrap().has_store_path(&system).unwrap());
    ssh_ok(
        &lab,
        a,
        &format!(
            "nix-env -p /nix/var/nix/profiles/system --set {system} && \
             systemd-run --wait --pipe --quiet {system}/bin/switch-to-configuration switch"
        ),
    );
    assert_eq!(
        a.current_system().unwrap().as_deref(),
        Some(system.as_str())
    );
    assert_eq!(
        a.profile_system().unwrap().as_deref(),
        Some(system.as_str())
    );
    assert_eq!(a.activations().unwrap(), vec![format!("switch {system}")]);

    // A real reboot: a new init, /run afresh, and the boot default running again.
    let before = a.pids();
    a.reboot().expect("a reboots");
    let after = a.pids();
    assert_eq!(before[0], after[0], "the same holder boots it again");
    assert_ne!(before.last(), after.last(), "a new init");
    assert_eq!(
        a.current_system().unwrap().as_deref(),
        Some(system.as_str())
    );
    assert_eq!(a.sh("cat /proc/1/comm").unwrap().trim(), "systemd");
    assert!(ssh_ok(&lab, a, "systemctl is-system-running || true").contains("running"));

    // Stopping and starting sshd works through its unit.
    let sshd = lab.host("b").unwrap().sshd_pid().expect("b's sshd");
    assert!(!running(&[sshd]).is_empty());
    let b = lab.host_mut("b").unwrap();
    b.stop_sshd();
    assert!(running(&[sshd]).is_empty(), "sshd stopped by its unit");
    b.start_sshd(SSH_PORT).expect("sshd starts again");
    assert!(lab.host("b").unwrap().sshd_pid().is_some());

    let dir = lab.dir().to_path_buf();
    let pids: Vec<u32> = lab.hosts().flat_map(LabHost::pids).collect();
    assert_eq!(pids.len(), 6, "holder, nspawn and init per host: {pids:?}");
    assert!(!mounts_under(&dir).is_empty(), "the overlays are mounted");
    drop(lab);
    assert_eq!(running(&pids), Vec::<u32>::new(), "processes left");
    assert_eq!(mounts_under(&dir), Vec::<String>::new(), "mounts left");
    assert!(!dir.exists());
}

#[test]
fn systemd_labs_in_parallel_do_not_see_each_other() {
    let labs: Vec<Lab> = std::thread::scope(|scope| {
        let starts: Vec<_> = (0..2)
            .map(|_| scope.spawn(|| Lab::start_systemd(&["web"]).expect("lab starts")))
            .collect();
        starts.into_iter().map(|s| s.join().unwrap()).collect()
    });
    let (one, two) = (&labs[0], &labs[1]);
    let (web1, web2) = (one.host("web").unwrap(), two.host("web").unwrap());
    assert_ne!(web1.address, web2.address);
    assert_ne!(one.dir(), two.dir());

    ssh_ok(one, web1, "touch /root/only-in-one");
    assert_eq!(web1.sh("ls /root").unwrap().trim(), "only-in-one");
    assert_eq!(web2.sh("ls /root").unwrap().trim(), "");
    // One lab's key and known_hosts do not open the other lab's host.
    assert!(!ssh(one, web2, "true").status.success());
    // Each container's processes are its own: one sshd listener each.
    for web in [web1, web2] {
        let listeners = web.sh("pgrep -c -f '^sshd: .*listener' || true").unwrap();
        assert_eq!(listeners.trim(), "1", "{}", web.name);
    }

    let pids: Vec<u32> = labs
        .iter()
        .flat_map(|l| l.hosts().flat_map(LabHost::pids))
        .collect();
    let dirs: Vec<_> = labs.iter().map(|l| l.dir().to_path_buf()).collect();
    drop(labs);
    assert_eq!(running(&pids), Vec::<u32>::new(), "processes left");
    for dir in dirs {
        assert_eq!(mounts_under(&dir), Vec::<String>::new(), "mounts left");
    }
}

/// The benchmark keeps root's user manager running on systemd hosts (docs/benchmarks.md, "What
/// is measured"): there it outlives a login by more than logind's 10 s; on a host left as it is,
/// logind stops it.
#[test]
fn the_benchmark_keeps_roots_user_manager_running_past_the_last_login() {
    let lab = Lab::start_systemd(&["kept", "as-is"]).expect("lab starts");
    let (kept, as_is) = (lab.host("kept").unwrap(), lab.host("as-is").unwrap());
    hbdeploy_lab::bench::keep_user_managers([kept]).expect("lingering");
    for host in [kept, as_is] {
        ssh_ok(&lab, host, "true");
    }
    std::thread::sleep(std::time::Duration::from_secs(13));
    let state = |host: &LabHost| {
        host.sh("systemctl is-active user@0.service || true")
            .unwrap()
            .trim()
            .to_owned()
    };
    assert_eq!(state(kept), "active");
    assert_eq!(state(as_is), "inactive");
}

#[test]
fn one_lab_holds_both_kinds() {
    let lab = Lab::start_hosts(&[("ns", HostKind::Namespace), ("sd", HostKind::Systemd)])
        .expect("mixed lab starts");
    let ns = lab.host("ns").unwrap();
    let sd = lab.host("sd").unwrap();
    assert_eq!(ns.kind(), HostKind::Namespace);
    assert_ne!(ns.sh("cat /proc/1/comm").unwrap().trim(), "systemd");
    assert_eq!(sd.sh("cat /proc/1/comm").unwrap().trim(), "systemd");
    assert_eq!(ssh_ok(&lab, sd, "hostname"), "sd\n");
    assert_eq!(ssh_ok(&lab, ns, "hostname"), "ns\n");
}
