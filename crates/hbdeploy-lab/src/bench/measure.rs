//! Running one measured command: its wall time, its output and, for hbdeploy, the peak resident
//! memory of the hbdeploy process itself.
//!
//! The peak is the kernel's high-water mark `VmHWM` of `/proc/<pid>/status`, sampled while the
//! process runs. `ru_maxrss` from `wait4` would not do: Linux folds the peak of every reaped
//! descendant into it, so it reports the largest `nix` process hbdeploy started (a `nix eval`
//! of the whole fleet), not hbdeploy. A high-water mark only grows, so sampling misses at most
//! the growth of the last interval before exit, when hbdeploy prints its tables.

use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::LabError;

/// How often the high-water mark is read.
const SAMPLE_EVERY: Duration = Duration::from_millis(5);

/// What one measured command did.
#[derive(Debug, Clone)]
pub struct Measured {
    /// From spawn until it was reaped.
    pub wall: Duration,
    /// Its exit code (-1 if killed by a signal).
    pub code: i32,
    /// Everything it printed on stdout.
    pub stdout: String,
    /// Everything it printed on stderr.
    pub stderr: String,
    /// The largest `VmHWM` seen, in KiB, when sampling was asked for.
    pub peak_rss_kib: Option<u64>,
}

impl Measured {
    /// An error naming `what` when the command failed, with the end of its output.
    pub fn check(self, what: &str) -> Result<Measured, LabError> {
        if self.code == 0 {
            return Ok(self);
        }
        let tail = |text: &str| {
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(15)..].join("\n")
        };
        // The tails may not hold what went wrong (hbdeploy prints its tables last): the lines
        // that say why (`caused by: …` under a host's failure) come first, then those that say
        // `failed` or `error` (many of them may be rows of a table that name no cause).
        let lines = || self.stdout.lines().chain(self.stderr.lines());
        let telling: Vec<&str> = lines()
            .filter(|l| l.contains("caused by:"))
            .take(5)
            .chain(
                lines()
                    .filter(|l| {
                        let l = l.to_lowercase();
                        l.contains("failed") || l.contains("error")
                    })
                    .take(10),
            )
            .collect();
        Err(LabError::Command {
            what: what.to_owned(),
            status: format!("exit code {}", self.code),
            stderr: format!(
                "{}\n{}\n{}",
                telling.join("\n"),
                tail(&self.stdout),
                tail(&self.stderr)
            ),
        })
    }
}

/// `VmHWM` of `pid` in KiB, if `pid` is still a live process named `name`. (The name check
/// keeps a recycled PID from being measured after the process was reaped.)
fn vm_hwm(pid: u32, name: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let mut lines = status.lines();
    let own = lines.next()?.strip_prefix("Name:")?.trim();
    if !name.starts_with(own) {
        return None;
    }
    let hwm = lines.find_map(|l| l.strip_prefix("VmHWM:"))?;
    hwm.trim().trim_end_matches("kB").trim().parse().ok()
}

fn drain(pipe: Option<impl Read + Send + 'static>) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(mut pipe) = pipe {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            text = String::from_utf8_lossy(&bytes).into_owned();
        }
        text
    })
}

/// Runs `command` to completion (stdin closed, output captured), timing it. With
/// `sample_rss_of`, samples the peak memory of the spawned process, whose name must begin with
/// the given one.
pub fn measure(command: &mut Command, sample_rss_of: Option<&str>) -> Result<Measured, LabError> {
    let program = command.get_program().to_string_lossy().into_owned();
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let start = Instant::now();
    let mut child = command.spawn().map_err(|source| LabError::Io {
        what: format!("run {program}"),
        source,
    })?;
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());

    let done = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicU64::new(0));
    let sampler = sample_rss_of.map(|name| {
        let (pid, name) = (child.id(), name.to_owned());
        let (done, peak) = (Arc::clone(&done), Arc::clone(&peak));
        std::thread::spawn(move || {
            while !done.load(Ordering::SeqCst) {
                if let Some(kib) = vm_hwm(pid, &name) {
                    peak.fetch_max(kib, Ordering::SeqCst);
                }
                std::thread::sleep(SAMPLE_EVERY);
            }
        })
    });
    let status = child.wait().map_err(|source| LabError::Io {
        what: format!("wait for {program}"),
        source,
    })?;
    let wall = start.elapsed();
    done.store(true, Ordering::SeqCst);
    if let Some(sampler) = sampler {
        let _ = sampler.join();
    }
    Ok(Measured {
        wall,
        code: status.code().unwrap_or(-1),
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
        peak_rss_kib: sample_rss_of
            .map(|_| peak.load(Ordering::SeqCst))
            .filter(|kib| *kib > 0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measures_wall_time_output_and_exit_code() {
        let run = measure(
            Command::new("/bin/sh").args(["-c", "echo out; echo err >&2; sleep 0.1; exit 3"]),
            None,
        )
        .expect("sh runs");
        assert_eq!((run.code, run.stdout.as_str()), (3, "out\n"));
        assert_eq!(run.stderr, "err\n");
        assert!(run.wall >= Duration::from_millis(100));
        let err = run.check("sh").expect_err("exit 3 fails");
        assert!(err.to_string().contains("exit code 3"), "{err}");
        let run = measure(
            Command::new("/bin/sh").args(["-c", "echo 'h1 failed: no route'; seq 30; exit 1"]),
            None,
        )
        .expect("sh runs");
        let err = run.check("sh").expect_err("exit 1 fails").to_string();
        assert!(err.contains("h1 failed: no route"), "{err}");
        // A cause printed after many rows that say FAILED is kept, ahead of them.
        let run = measure(
            Command::new("/bin/sh").args([
                "-c",
                "for i in $(seq 20); do echo \"h$i FAILED connect\"; done; \
                 echo 'h1: cannot reach the host'; echo '  caused by: timed out after 5s'; exit 1",
            ]),
            None,
        )
        .expect("sh runs");
        let err = run.check("sh").expect_err("exit 1 fails").to_string();
        assert!(err.contains("caused by: timed out after 5s"), "{err}");
    }

    #[test]
    fn samples_the_peak_of_the_process_itself() {
        let run = measure(Command::new("/bin/sleep").arg("0.2"), Some("sleep")).expect("runs");
        let kib = run.peak_rss_kib.expect("sampled");
        assert!(kib > 0 && kib < 64 * 1024, "{kib} KiB for sleep");
    }
}
