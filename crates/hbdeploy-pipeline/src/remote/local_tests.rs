//! The scripts that need no host, run on this machine with `/bin/sh` in a directory of the
//! test's own (nothing here needs root):
//! - `run.sh`, the wrapper of every detached job: the log it keeps of a job's output is capped
//!   (README and ARCHITECTURE.md: at most 1 MiB per job, the latest output kept), and the job's
//!   script, read by run.sh's own shell, gets the arguments a run of its own would;
//! - `check-validity.sh`, with a `nix-store` of the test's own first on `PATH`: it has no
//!   `timeout` around it as a whole (the lock's holder runs it in its own shell), so the one
//!   program that may wait (`nix-store`, for the store's locks) is stopped at the limit it is
//!   given.

use std::path::Path;
use std::time::{Duration, Instant};

use hbdeploy_files::Scratch;

use super::Script;

const CAP: u64 = 524_288;

/// A new, empty directory of this test's own, removed when dropped (a failed test's too).
pub(super) fn scratch(name: &str) -> Scratch {
    Scratch::fresh(&format!("hbdeploy-{name}")).unwrap()
}

/// A deployment directory holding run.sh and the job script `job.sh`.
fn deployment(name: &str, job: &str) -> Scratch {
    let deployment = scratch(&format!("run-{name}"));
    std::fs::write(deployment.join("run.sh"), Script::Run.text()).unwrap();
    std::fs::write(deployment.join("job.sh"), job).unwrap();
    deployment
}

/// `run.sh DIR spew job.sh ARGS…`, to its end.
fn run(dir: &Path, args: &[&str]) {
    let status = std::process::Command::new("/bin/sh")
        .arg(dir.join("run.sh"))
        .arg(dir)
        .args(["spew", "job.sh"])
        .args(args)
        .status()
        .unwrap();
    assert!(status.success(), "{status}");
}

fn size(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

#[test]
fn a_job_that_prints_lines_without_end_keeps_its_latest_output_within_the_cap() {
    // 1.5 MiB of lines, then a last one; and the arguments the job got.
    let job = "printf '%s\\n' \"$@\" >\"$1/args\"\n\
               yes 'a line the job prints again and again' | head -c 1572864\n\
               echo the-last-line\n";
    let deployment = deployment("lines", job);
    let dir = deployment.path();
    run(dir, &["one arg", "two"]);
    let (log, old) = (dir.join("logs/spew.log"), dir.join("logs/spew.log.1"));
    assert_eq!(size(&old), CAP);
    assert!(size(&log) + size(&old) <= 2 * CAP);
    let latest = std::fs::read_to_string(&log).unwrap();
    assert!(latest.ends_with("the-last-line\n"), "{latest:?}");
    let args = std::fs::read_to_string(dir.join("args")).unwrap();
    assert_eq!(args, format!("{}\nspew\none arg\ntwo\n", dir.display()));
    // Its pid and its job's, as settling and stop.sh find them.
    for file in ["spew.pid", "spew.live"] {
        let pid = std::fs::read_to_string(dir.join(file)).unwrap();
        assert!(pid.trim().parse::<u32>().is_ok(), "{file}: {pid:?}");
    }
}

#[test]
fn a_job_that_prints_without_a_newline_is_capped_too() {
    let job = "head -c 1600000 /dev/zero | tr '\\0' x\n";
    let deployment = deployment("bytes", job);
    let dir = deployment.path();
    run(dir, &[]);
    let (log, old) = (dir.join("logs/spew.log"), dir.join("logs/spew.log.1"));
    assert_eq!(size(&old), CAP);
    assert_eq!(size(&log), 1_600_000 - 3 * CAP);
}

#[test]
fn a_nix_store_that_never_answers_is_stopped_at_the_limit() {
    let scratch = scratch("validity");
    let bin = scratch.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let nix_store = bin.join("nix-store");
    std::fs::write(&nix_store, "#!/bin/sh\nexec sleep 30\n").unwrap();
    std::fs::set_permissions(
        &nix_store,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    // The first path is on disk: only nix-store may say what is missing.
    let input = format!("{}\n/nix/store/not-there\n", scratch.display());
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let started = Instant::now();
    let mut child = std::process::Command::new("/bin/sh")
        .args(["-c", Script::CheckValidity.text(), "hbdeploy", "1"])
        .env("PATH", path)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), input.as_bytes()).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(124), "{status}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
}
