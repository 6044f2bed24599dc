//! `lock.sh` and `settle.sh` look for the same things: `lock.sh` says, in the lock's one round
//! trip, whether `settle.sh` needs to run at all, so anything `settle.sh` would find that
//! `lock.sh` missed would be left to act on the host. Both scripts' paths are fixed
//! (`/run/hbdeploy`, `/nix/var/hbdeploy`): they run in a mount namespace of their own with an
//! empty `/run` and `/nix/var` (`unshare`, as root), against what the test leaves there.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

/// What an earlier deployment may have left on a host, for `lock.sh` and `settle.sh`.
#[derive(Debug, Clone, Copy)]
enum Left {
    Nothing,
    /// `JOB.pid` of a process still running this deployment's scripts.
    RunningJob(&'static str),
    /// `JOB.pid` of a process that has ended.
    EndedJob(&'static str),
    /// An armed watchdog, nothing decided.
    UndecidedWatchdog,
    /// An armed watchdog that ended (killed) before anything was decided.
    UndecidedEndedWatchdog,
    /// A watchdog that decided and still runs (it is restoring).
    DecidedLiveWatchdog,
    /// A watchdog that decided and ended.
    DecidedEndedWatchdog,
    /// A record of a deployment armed in an earlier boot (its directory went with the reboot),
    /// with the change its restore makes.
    Record(&'static str),
}

/// Runs `script ARGS` (a remote script) with `/run` and `/nix/var` replaced by empty ones in a
/// mount namespace of its own, after `setup` (shell) made the state there; returns its output.
fn in_private_host(setup: &str, script: &str, args: &str) -> String {
    let remote = Path::new(env!("CARGO_MANIFEST_DIR")).join("crates/hbdeploy-pipeline/src/remote");
    let inner = format!(
        "mount -t tmpfs hbdeploy-test /run && mount -t tmpfs hbdeploy-test /nix/var && \
         mkdir -p /run/hbdeploy /nix/var/hbdeploy && {setup} && sh {}/{script} {args} </dev/null",
        remote.display()
    );
    let out = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-ec", &inner])
        .output()
        .expect("unshare runs");
    assert!(
        out.status.success(),
        "{script} in a private /run failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A process of the test's own (its own process group, so that `stop.sh` stops only it) whose
/// command line names `dir`, as a job's `run.sh` does.
fn job_process(dir: &str) -> std::process::Child {
    Command::new("sh")
        .args(["-c", "sleep 60; :"])
        .arg(format!("{dir}/run.sh"))
        .process_group(0)
        .spawn()
        .expect("sh starts")
}

#[test]
fn lock_says_settle_whenever_settle_finds_something_and_clear_when_nothing_can_act() {
    let cases = [
        Left::Nothing,
        Left::RunningJob("activate"),
        Left::RunningJob("restore"),
        Left::RunningJob("rollback"),
        Left::RunningJob("watchdog-restore"),
        Left::EndedJob("activate"),
        Left::UndecidedWatchdog,
        Left::UndecidedEndedWatchdog,
        Left::DecidedLiveWatchdog,
        Left::DecidedEndedWatchdog,
        Left::Record("restore set /nix/store/00000000000000000000000000000000-old switch 3"),
        Left::Record("set /nix/store/00000000000000000000000000000000-new test"),
    ];
    // A pid that ran once and has ended.
    let mut ended = Command::new("true").spawn().expect("true starts");
    ended.wait().expect("true ends");
    let ended = ended.id();
    for (i, case) in cases.iter().enumerate() {
        let token = format!("{:016x}", 0x7e57_0000 + i);
        let dir = format!("/run/hbdeploy/{token}");
        let mut live = None;
        let mut setup = format!("mkdir -p {dir}");
        match case {
            Left::Nothing => {}
            Left::RunningJob(job) => {
                let process = job_process(&dir);
                setup.push_str(&format!(" && echo {} > {dir}/{job}.pid", process.id()));
                live = Some(process);
            }
            Left::EndedJob(job) => setup.push_str(&format!(" && echo {ended} > {dir}/{job}.pid")),
            Left::UndecidedWatchdog => {
                let process = job_process(&dir);
                setup.push_str(&format!(" && echo {} > {dir}/watchdog.pid", process.id()));
                live = Some(process);
            }
            Left::UndecidedEndedWatchdog => {
                setup.push_str(&format!(" && echo {ended} > {dir}/watchdog.pid"));
            }
            Left::DecidedLiveWatchdog => {
                let process = job_process(&dir);
                setup.push_str(&format!(
                    " && echo {} > {dir}/watchdog.pid && mkdir {dir}/decided",
                    process.id()
                ));
                live = Some(process);
            }
            Left::DecidedEndedWatchdog => setup.push_str(&format!(
                " && echo {ended} > {dir}/watchdog.pid && mkdir {dir}/decided"
            )),
            Left::Record(change) => {
                // Armed in an earlier boot: its directory in /run is gone.
                setup = format!(
                    "printf '%s\\n%s\\n3\\n' old-boot '{change}' > /nix/var/hbdeploy/pending-{token}"
                );
            }
        }
        let locked = in_private_host(&setup, "lock.sh", "test-holder");
        // settle.sh may stop a running job (after waiting 0 s): asked last.
        let settled = in_private_host(&setup, "settle.sh", "0");
        if let Some(mut process) = live {
            let _ = process.kill();
            let _ = process.wait();
        }
        let verdict = locked
            .lines()
            .next()
            .and_then(|l| l.split('\t').nth(1))
            .unwrap_or_default()
            .to_owned();
        assert!(
            settled.trim().is_empty() || verdict == "settle",
            "{case:?}: settle.sh found\n{settled}\nbut lock.sh said {locked:?}"
        );
        let nothing_can_act = matches!(
            case,
            Left::Nothing | Left::EndedJob(_) | Left::DecidedEndedWatchdog
        );
        if nothing_can_act {
            assert_eq!(verdict, "clear", "{case:?}: lock.sh said {locked:?}");
        } else if !matches!(case, Left::Record(change) if !change.starts_with("restore ")) {
            // Everything else that can act is found by settle.sh (a `test` deployment's record
            // is dropped silently: the reboot already undid it).
            assert!(
                !settled.trim().is_empty(),
                "{case:?}: settle.sh found nothing"
            );
        }
    }
}
