//! The pure shell logic of the remote protocol's scripts, run with `sh` on this machine against
//! a directory of the test's own (no lab, no SSH): what they do, not how their text reads.
//!
//! `decide.sh` is the deployer's side of magic rollback's one decision (ARCHITECTURE.md: whoever
//! creates `DIR/decided` first decides; the watchdog is the other side).

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A deployment directory of the test's own, removed when dropped. Its name is unique, so the
/// `pending-NAME` record that `decide.sh` drops after a confirmation is none that exists.
struct DeploymentDir(PathBuf);

impl DeploymentDir {
    fn new(test: &str) -> DeploymentDir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock after 1970")
            .as_nanos();
        let dir =
            std::env::temp_dir().join(format!("hbdeploy-it-{test}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create the deployment directory");
        DeploymentDir(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }

    fn write(&self, name: &str, text: &str) {
        std::fs::write(self.0.join(name), text).expect("write");
    }
}

impl Drop for DeploymentDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `decide.sh DIR 0 [JOB]` (not on systemd) and returns what it printed.
fn decide(dir: &Path, job: Option<&str>) -> String {
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("crates/hbdeploy-pipeline/src/remote/decide.sh");
    let mut command = Command::new("sh");
    command.arg(&script).arg(dir).arg("0");
    command.args(job);
    let out = command.output().expect("sh runs");
    assert!(
        out.status.success(),
        "decide.sh failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim_end().to_owned()
}

#[test]
fn decide_claims_the_decision_once_and_stops_the_watchdog() {
    let dir = DeploymentDir::new("decide-claim");
    // The watchdog: a process group of its own, as the host's watchdog is.
    let mut watchdog = Command::new("sleep")
        .arg("30")
        .process_group(0)
        .spawn()
        .expect("sleep starts");
    dir.write("watchdog.pid", &format!("{}\n", watchdog.id()));

    assert_eq!(decide(dir.path(), None), "confirmed");
    assert!(dir.path().join("decided").is_dir());
    let ended = watchdog.wait().expect("the watchdog ends");
    assert!(!ended.success(), "the watchdog was not stopped: {ended}");
    // Claimed without a job: no result is written, so a second claim finds the host restoring.
    assert!(!dir.path().join("result").exists());
    assert_eq!(decide(dir.path(), None), "restoring");
}

#[test]
fn decide_reports_what_the_watchdog_decided_first() {
    let dir = DeploymentDir::new("decide-watchdog");
    std::fs::create_dir(dir.path().join("decided")).expect("the watchdog decides");
    assert_eq!(decide(dir.path(), Some("activate")), "restoring");
    dir.write("result", "rolled-back:unconfirmed\n");
    assert_eq!(decide(dir.path(), None), "rolled-back:unconfirmed");
    assert_eq!(
        decide(dir.path(), Some("activate")),
        "rolled-back:unconfirmed"
    );
}

#[test]
fn decide_confirms_a_job_only_once_it_ended_with_success() {
    let dir = DeploymentDir::new("decide-job");
    assert_eq!(
        decide(dir.path(), Some("activate")),
        "undecided:the activate job has not finished"
    );
    dir.write("activate.end", "1\n");
    assert_eq!(
        decide(dir.path(), Some("activate")),
        "undecided:the activate job failed (1)"
    );
    assert!(
        !dir.path().join("decided").exists(),
        "an undecided answer decides nothing"
    );
    dir.write("activate.end", "0\n");
    assert_eq!(decide(dir.path(), Some("activate")), "confirmed");
    let result = std::fs::read_to_string(dir.path().join("result")).expect("result");
    assert_eq!(result, "confirmed\n");
    // Asked again (a lost answer), it says the same.
    assert_eq!(decide(dir.path(), Some("activate")), "confirmed");
}

#[test]
fn decide_on_a_removed_deployment_says_gone() {
    let dir = DeploymentDir::new("decide-gone");
    let path = dir.path().to_owned();
    drop(dir);
    assert_eq!(decide(&path, Some("activate")), "gone");
}
