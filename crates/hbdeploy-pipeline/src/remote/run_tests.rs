//! `run.sh`, the wrapper of every detached job, run on this machine with `/bin/sh`: the log it
//! keeps of a job's output is capped (README and ARCHITECTURE.md: at most 1 MiB per job, the
//! latest output kept), and the job's script, read by run.sh's own shell, gets the arguments a
//! run of its own would. Nothing here needs root or a host: run.sh only writes into the
//! deployment directory it is given.

use std::path::{Path, PathBuf};

use super::Script;

const CAP: u64 = 524_288;

/// A deployment directory of this test's own, removed when dropped (a failed test too).
struct Deployment(PathBuf);

impl Drop for Deployment {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A deployment directory holding run.sh and the job script `job.sh`.
fn deployment(name: &str, job: &str) -> Deployment {
    let dir = std::env::temp_dir().join(format!("hbdeploy-run-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("run.sh"), Script::Run.text()).unwrap();
    std::fs::write(dir.join("job.sh"), job).unwrap();
    Deployment(dir)
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
    let dir = &deployment.0;
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
    let dir = &deployment.0;
    run(dir, &[]);
    let (log, old) = (dir.join("logs/spew.log"), dir.join("logs/spew.log.1"));
    assert_eq!(size(&old), CAP);
    assert_eq!(size(&log), 1_600_000 - 3 * CAP);
}
