//! What the benchmark ran on and with: cores, memory, CPU, kernel, the load average, and the
//! versions of hbdeploy, nix and OpenSSH, so a recorded table says where it came from.

use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};

/// The machine and the versions of the programs measured.
#[derive(Debug, Clone, PartialEq)]
pub struct Machine {
    /// Logical CPUs available to the benchmark.
    pub cores: usize,
    /// The CPU's model name, from `/proc/cpuinfo`.
    pub cpu: String,
    /// Total memory in MiB, from `/proc/meminfo`.
    pub memory_mib: u64,
    /// The kernel release.
    pub kernel: String,
    /// `hbdeploy --version`.
    pub hbdeploy: String,
    /// `nix --version`.
    pub nix: String,
    /// `ssh -V`.
    pub ssh: String,
    /// The git commit of the working directory, with `-dirty` when it has changes.
    pub commit: String,
    /// When the benchmark started, UTC.
    pub date: String,
}

/// The first line a command prints (stdout, else stderr), or `unknown`.
fn first_line(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .ok()
        .and_then(|out| {
            let text = if out.stdout.is_empty() {
                out.stderr
            } else {
                out.stdout
            };
            String::from_utf8_lossy(&text)
                .lines()
                .next()
                .map(|l| l.trim().to_owned())
        })
        .filter(|l| !l.is_empty())
        .unwrap_or_else(|| "unknown".to_owned())
}

/// The value of `key:` in a `/proc` file of `key: value` lines.
fn proc_field(path: &str, key: &str) -> Option<String> {
    std::fs::read_to_string(path).ok()?.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k.trim() == key).then(|| v.trim().to_owned())
    })
}

/// The 1-minute load average, a hint of what else the machine was doing.
pub fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

impl Machine {
    /// Reads the machine; `hbdeploy` is the binary measured.
    pub fn detect(hbdeploy: &Path) -> Machine {
        let commit = first_line("git", &["rev-parse", "--short", "HEAD"]);
        let dirty = Command::new("git")
            .args(["status", "--porcelain", "--untracked-files=no"])
            .output()
            .is_ok_and(|o| !o.stdout.is_empty());
        Machine {
            cores: std::thread::available_parallelism().map_or(1, usize::from),
            cpu: proc_field("/proc/cpuinfo", "model name").unwrap_or_else(|| "unknown".to_owned()),
            memory_mib: proc_field("/proc/meminfo", "MemTotal")
                .and_then(|v| v.trim_end_matches("kB").trim().parse::<u64>().ok())
                .map_or(0, |kib| kib / 1024),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map_or_else(|_| "unknown".to_owned(), |v| v.trim().to_owned()),
            hbdeploy: first_line(&hbdeploy.to_string_lossy(), &["--version"]),
            nix: first_line("nix", &["--version"]),
            ssh: first_line("ssh", &["-V"]),
            commit: if dirty {
                format!("{commit}-dirty")
            } else {
                commit
            },
            date: first_line("date", &["-u", "+%Y-%m-%dT%H:%M:%SZ"]),
        }
    }

    /// The JSON object of `machine` and `versions`.
    pub fn to_json(&self) -> (Value, Value) {
        (
            json!({
                "cores": self.cores,
                "cpu": self.cpu,
                "memory_mib": self.memory_mib,
                "kernel": self.kernel,
            }),
            json!({
                "hbdeploy": self.hbdeploy,
                "nix": self.nix,
                "ssh": self.ssh,
                "commit": self.commit,
            }),
        )
    }

    /// One line for the markdown report.
    pub fn describe(&self) -> String {
        format!(
            "{} cores ({}), {} MiB memory, Linux {}; {}, {}, {}; commit {}; {}",
            self.cores,
            self.cpu,
            self.memory_mib,
            self.kernel,
            self.hbdeploy,
            self.nix,
            self.ssh,
            self.commit,
            self.date
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_machine() {
        let machine = Machine::detect(Path::new("/bin/true"));
        assert!(machine.cores >= 1);
        assert!(machine.memory_mib > 0);
        assert!(load_average().is_some());
        let (m, v) = machine.to_json();
        assert!(m["cores"].is_number() && v["nix"].is_string());
    }
}
