//! Helpers of the deployment tests on both kinds of lab host: toy systems, waiting, reading a
//! host, and killing or interrupting the deployer mid-activation (by its PID).

use std::path::Path;
use std::sync::mpsc::Receiver;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hbdeploy_lab::{Activation, HostKind, Lab, LabUser, Run, Sudo, SystemSpec};

use super::{HBDEPLOY, hbdeploy, host};

/// Waits until `check` holds, for at most `limit`.
pub fn wait_until(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    check()
}

/// The system `name` runs (`/run/current-system`).
pub fn running(lab: &Lab, name: &str) -> String {
    host(lab, name)
        .current_system()
        .expect("read")
        .expect("a running system")
}

/// A lab of one host `box` of `kind`, with the user `deploy` whose sudo wants `password` and
/// whom the host's nix does not trust: for running hbdeploy inside the host (`Lab::inside`).
pub fn one_box_with_a_sudo_user(kind: HostKind, password: &str) -> Lab {
    let mut lab = Lab::start_hosts(&[("box", kind)]).expect("lab starts");
    lab.add_user(&LabUser {
        name: "deploy".to_owned(),
        sudo: Sudo::Password(password.to_owned()),
        trusted: false,
    })
    .expect("user added");
    lab
}

/// Gives `box` a system of a generation no other lab builds, whose store paths are new to every
/// store on the machine (one valid in a store was built there), activating as `activation`;
/// returns its path.
pub fn fresh_box_system(lab: &mut Lab, activation: Activation) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .subsec_nanos();
    lab.set_system("box", spec(1000 + nanos % 1_000_000_000, activation))
        .expect("flake");
    super::system_path(lab, "box")
}

/// A toy system of `generation` whose activation behaves as `activation`.
pub fn spec(generation: u32, activation: Activation) -> SystemSpec {
    SystemSpec {
        generation,
        activation,
        ..SystemSpec::default()
    }
}

/// `lab` after a first, successful `apply --all`: its hosts all run generation 1.
pub fn deployed_once(lab: Lab) -> Lab {
    lab.write_fleet(&[], "").expect("fleet");
    let first = hbdeploy(&lab, &["apply", "--all"]);
    assert_eq!(first.code, 0, "{}", first.both());
    lab
}

/// A lab of namespace hosts `names` that all run generation 1 (deployed once, successfully).
pub fn deployed(names: &[&str]) -> Lab {
    deployed_once(Lab::start(names).expect("lab starts"))
}

/// A lab of systemd hosts `names` that all run generation 1.
pub fn deployed_systemd(names: &[&str]) -> Lab {
    deployed_once(Lab::start_systemd(names).expect("systemd lab starts"))
}

/// The systems of `name`'s profile generations, oldest first.
pub fn generation_systems(lab: &Lab, name: &str) -> Vec<String> {
    host(lab, name)
        .sh("for l in $(ls -dv /nix/var/nix/profiles/system-*-link); do readlink -f \"$l\"; done")
        .expect("sh")
        .lines()
        .map(str::to_owned)
        .collect()
}

/// hbdeploy's own transient units still loaded on systemd host `name` (none may outlive a
/// deployment).
pub fn hbdeploy_units(lab: &Lab, name: &str) -> String {
    host(lab, name)
        .sh("systemctl list-units --all --no-legend --plain 'hbdeploy-*' | grep -v hbdeploy-lab || true")
        .expect("sh")
}

/// Waits until host `name` has started activating `system`.
pub fn activation_started(lab: &Lab, name: &str, system: &str) -> bool {
    wait_until(Duration::from_secs(120), || {
        host(lab, name)
            .activations()
            .expect("read")
            .contains(&format!("switch {system}"))
    })
}

/// Sends `signal` to the process `pid`.
pub fn signal(signal: &str, pid: u32) {
    let sent = std::process::Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .expect("kill runs");
    assert!(sent.success(), "kill -{signal} {pid}");
}

/// Starts `hbdeploy args` and SIGKILLs it (by its PID) once `host` has started activating
/// `system`: the deployer dies mid-activation, without a chance to clean up.
pub fn kill_mid_activation(lab: &Lab, name: &str, system: &str, args: &[&str]) {
    let mut child = lab
        .spawn_hbdeploy(Path::new(HBDEPLOY), args)
        .expect("start apply");
    let started = activation_started(lab, name, system);
    signal("KILL", child.id());
    let _ = child.wait();
    assert!(started, "the activation never started");
}

/// A running hbdeploy whose stderr is read line by line as it comes, to know when it has taken
/// an interrupt in.
pub struct Watched {
    child: std::process::Child,
    lines: Receiver<String>,
    reader: JoinHandle<String>,
}

impl Watched {
    pub fn spawn(lab: &Lab, args: &[&str]) -> Watched {
        let mut child = lab
            .spawn_hbdeploy(Path::new(HBDEPLOY), args)
            .expect("start hbdeploy");
        let stderr = child.stderr.take().expect("stderr is piped");
        let (tx, lines) = std::sync::mpsc::channel::<String>();
        let reader = std::thread::spawn(move || {
            use std::io::BufRead;
            let mut all = String::new();
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                all.push_str(&line);
                all.push('\n');
                let _ = tx.send(line);
            }
            all
        });
        Watched {
            child,
            lines,
            reader,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits (at most `limit`) for a line of stderr that starts with `prefix`.
    pub fn wait_for_line(&self, prefix: &str, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.starts_with(prefix) => return,
                Ok(_) => continue,
                Err(_) => panic!("hbdeploy never printed `{prefix}`"),
            }
        }
    }

    /// Waits for hbdeploy to end.
    pub fn finish(self) -> Run {
        let output = self.child.wait_with_output().expect("hbdeploy ends");
        Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: self.reader.join().expect("reader"),
        }
    }
}

/// The script the NixOS module runs at boot.
const BOOT_RESTORE: &str = include_str!("../../../nixos/modules/hbdeploy/boot-restore.sh");

/// Installs the boot-time restore on `name` as `services.hbdeploy.magicRollback` does: a
/// oneshot unit wanted by multi-user.target, after it, when a pending record exists.
pub(crate) fn install_boot_restore(lab: &Lab, name: &str) {
    host(lab, name)
        .sh(&format!(
            "mkdir -p /usr/local/sbin && cat >/usr/local/sbin/hbdeploy-boot-restore <<'HBDEPLOY_EOF'\n\
             {BOOT_RESTORE}HBDEPLOY_EOF\n\
             cat >/etc/systemd/system/hbdeploy-boot-restore.service <<'HBDEPLOY_EOF'\n\
             [Unit]\nAfter=multi-user.target\nConditionPathExistsGlob=/nix/var/hbdeploy/pending-*\n\
             [Service]\nType=oneshot\nExecStart=/bin/sh /usr/local/sbin/hbdeploy-boot-restore\n\
             [Install]\nWantedBy=multi-user.target\nHBDEPLOY_EOF\n\
             systemctl enable hbdeploy-boot-restore.service 2>&1"
        ))
        .expect("install the boot-time restore");
}
