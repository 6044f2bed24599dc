//! What the integration tests share: running the binary, starting a lab with its fleet, a scratch
//! directory that is removed however the test ends, and the insta filters that make output
//! stable across runs (store hashes, lab addresses and paths, times, IDs, user names). Helpers of
//! one group of modules are in submodules: `lab` (deployments on both kinds of lab host),
//! `install`, `trust`.

use std::path::Path;

pub mod install;
pub mod lab;
pub mod scripts;
pub mod trust;

use hbdeploy_lab::{Lab, LabHost, Run};

/// The binary under test.
pub const HBDEPLOY: &str = env!("CARGO_BIN_EXE_hbdeploy");

/// The binary under test, as a path.
pub fn bin() -> &'static Path {
    Path::new(HBDEPLOY)
}

/// A number no earlier run used, as the `token` of the lab's evaluation barriers and waits: their
/// derivations are then new and must really be built.
pub fn token() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_nanos();
    (nanos as u64) ^ u64::from(std::process::id())
}

/// A lab of `names` with its fleet.toml written (every host, no extra settings).
pub fn fleet_lab(names: &[&str]) -> Lab {
    let lab = Lab::start(names).expect("lab starts (needs root, nix-bin, openssh-server)");
    lab.write_fleet(&[], "").expect("fleet.toml written");
    lab
}

/// `hbdeploy apply ARGS` against the lab's fleet.toml.
pub fn apply(lab: &Lab, args: &[&str]) -> Run {
    let mut all = vec!["apply"];
    all.extend_from_slice(args);
    hbdeploy(lab, &all)
}

/// The SHA256 fingerprint of the public key in `file`, as ssh-keygen prints and sshd logs it.
pub fn fingerprint(file: &Path) -> String {
    let out = std::process::Command::new("ssh-keygen")
        .arg("-lf")
        .arg(file)
        .output()
        .expect("ssh-keygen -l");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .nth(1)
        .expect("fingerprint")
        .to_owned()
}

/// Runs hbdeploy against the lab's fleet.toml.
pub fn hbdeploy(lab: &Lab, args: &[&str]) -> Run {
    lab.hbdeploy(bin(), args).expect("hbdeploy runs")
}

/// Runs hbdeploy against the lab's fleet.toml with the extra environment variables `env`.
pub fn hbdeploy_with_env(lab: &Lab, args: &[&str], env: &[(&str, &str)]) -> Run {
    lab.hbdeploy_with_env(bin(), args, env)
        .expect("hbdeploy runs")
}

/// A lab host.
pub fn host<'a>(lab: &'a Lab, name: &str) -> &'a LabHost {
    lab.host(name).expect("lab host")
}

/// How hbdeploy's SSH crate reaches the lab host `name` as `user`, with the lab's key and
/// known_hosts, no escalation (tests that drive `hbdeploy_ssh` directly).
pub fn ssh_target(lab: &Lab, name: &str, user: &str) -> hbdeploy_ssh::Target {
    hbdeploy_ssh::Target {
        address: host(lab, name).address.to_string(),
        port: hbdeploy_lab::SSH_PORT,
        user: user.to_owned(),
        identity_file: Some(lab.identity_file().to_path_buf()),
        known_hosts: lab.known_hosts().to_path_buf(),
        pinned_keys: Vec::new(),
        accept_new: false,
        connect_timeout: std::time::Duration::from_secs(10),
        jump: None,
        escalation: None,
        keepalive: None,
        compress: false,
    }
}

/// The cells of `host`'s row in the result table on stdout.
pub fn row(run: &Run, host: &str) -> Vec<String> {
    run.stdout
        .lines()
        .find(|l| l.split_whitespace().next() == Some(host))
        .unwrap_or_else(|| panic!("no result row for {host}\n{}", run.both()))
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

/// What the lab's flake evaluates `host`'s system to now (without building it).
pub fn system_path(lab: &Lab, host: &str) -> String {
    let attr = format!(
        "{}#nixosConfigurations.{host}.config.system.build.toplevel.outPath",
        lab.flake_ref()
    );
    let out = std::process::Command::new("nix")
        .args([
            "--extra-experimental-features",
            "nix-command flakes",
            "eval",
            "--raw",
            &attr,
        ])
        .env("NIX_CONFIG", hbdeploy_lab::NIX_CONFIG)
        .output()
        .expect("nix eval runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// An ssh-agent of the test's own on a socket in `dir`, stopped by its PID when dropped,
/// whatever the test's assertions do.
pub struct SshAgent {
    /// Its socket, for `SSH_AUTH_SOCK`.
    pub socket: String,
    pid: u32,
}

impl SshAgent {
    /// Starts an agent.
    pub fn start(dir: &Path) -> SshAgent {
        let socket = dir.join("agent.sock");
        let agent = std::process::Command::new("ssh-agent")
            .arg("-a")
            .arg(&socket)
            .output()
            .expect("ssh-agent (openssh-client)");
        let text = String::from_utf8_lossy(&agent.stdout).into_owned();
        let pid = text
            .split("SSH_AGENT_PID=")
            .nth(1)
            .and_then(|s| s.split(';').next())
            .and_then(|s| s.parse().ok())
            .expect("agent pid");
        SshAgent {
            socket: socket.to_string_lossy().into_owned(),
            pid,
        }
    }
}

impl Drop for SshAgent {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .arg(self.pid.to_string())
            .status();
    }
}

/// Insta settings that replace everything that differs between runs with a placeholder.
pub fn settings(lab: &Lab) -> insta::Settings {
    let mut settings = insta::Settings::clone_current();
    settings.add_filter(&regex_escape(&lab.dir().display().to_string()), "[lab]");
    settings.add_filter(r"/nix/store/[0-9a-z]{32}-", "/nix/store/[hash]-");
    settings.add_filter(r"/nix/store/[0-9a-z]{8}…-", "/nix/store/[hash]…-");
    settings.add_filter(r"\b\d{8}T\d{6}(\.\d{3})?Z-\d+\b", "[id]");
    // IDs differ in length (process IDs): so does the padding after them in tables.
    settings.add_filter(r"(?m)^ID +TIME", "ID  TIME");
    settings.add_filter(r"\[id\] +\[time\]", "[id]  [time]");
    settings.add_filter(r"\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\dZ?", "[time]");
    settings.add_filter(r"\b\d+\.\d+s\b", "[secs]");
    settings.add_filter(
        r#""duration_secs": [0-9.e-]+"#,
        r#""duration_secs": "[secs]""#,
    );
    settings.add_filter(r"127\.77\.\d+\.\d+", "[address]");
    // Who ran it and where, in the ledger's JSON and the history table (not `root@` of SSH).
    let user = regex_escape(&user());
    settings.add_filter(&format!(r#""user": "{user}""#), r#""user": "[user]""#);
    settings.add_filter(&format!(r"(\[time\] +){user}\b"), "$1[user]");
    let machine = regex_escape(&machine());
    settings.add_filter(
        &format!(r#""machine": "{machine}""#),
        r#""machine": "[machine]""#,
    );
    settings.add_filter(r"\(pid \d+\)", "(pid [pid])");
    settings
}

/// As the ledger finds it: `$USER`, `$LOGNAME`, or `unknown`.
fn user() -> String {
    ["USER", "LOGNAME"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| "unknown".to_owned())
}

fn machine() -> String {
    std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "unknown".to_owned())
}

fn regex_escape(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            if "\\.+*?()|[]{}^$#&-~".contains(c) {
                vec!['\\', c]
            } else {
                vec![c]
            }
        })
        .collect()
}

/// Everything about a host that a command which changes nothing must leave alone.
pub fn untouched(h: &LabHost) -> (Option<String>, Option<String>, String, Vec<String>) {
    (
        h.current_system().expect("read"),
        h.profile_system().expect("read"),
        h.generations().expect("read"),
        h.activations().expect("read"),
    )
}

/// Runs hbdeploy in `dir` with `args` (no fleet from the environment, no colour, stdin closed);
/// the exit code and both streams, as one text for a snapshot.
pub(crate) fn answer_in(dir: &Path, args: &[&str]) -> String {
    let output = std::process::Command::new(HBDEPLOY)
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .env_remove("HBDEPLOY_FLEET")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("hbdeploy runs");
    format!(
        "exit: {}\n--- stdout\n{}--- stderr\n{}",
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// [`answer_in`] a fresh directory of its own for `topic`'s `test`, holding `files` (name and
/// text, e.g. `fleet.toml`), removed afterwards. For errors that come before any host is
/// contacted: no lab needed.
pub(crate) fn answer(topic: &str, test: &str, files: &[(&str, &str)], args: &[&str]) -> String {
    let dir = Scratch::fresh(&format!("hbdeploy-{topic}-tests-{test}")).expect("temp dir");
    for (name, text) in files {
        std::fs::write(dir.join(name), text).expect("write a test file");
    }
    answer_in(&dir, args)
}

/// A directory of a test's own, removed however the test ends (the workspace's one guard).
pub use hbdeploy_files::Scratch;
