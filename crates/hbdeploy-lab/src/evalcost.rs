//! What a toy system's evaluation costs: [`eval_cost`] turns a CPU time into the number of 1 MiB
//! SHA-256 hashes that take that long in `nix eval` on this machine, measured once per process.
//!
//! The measurement is the CPU time (user + system) of one `nix eval` doing [`PROBE_HASHES`]
//! hashes minus one doing none, read as the children's times of a `sh` whose only child was
//! that nix (`/proc/$$/stat`), so other processes on the machine do not count, only how fast a
//! core of it hashes.

use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use crate::flake::Evaluation;
use crate::{LabError, NIX_CONFIG};

/// Hashes of the probe.
pub const PROBE_HASHES: u64 = 600;

/// The expression of `hashes` hashes of a 1 MiB string, as the lab's flake does them.
fn probe_expr(hashes: u64) -> String {
    format!(
        "let double = s: s + s; oneMib = builtins.foldl' (s: i: double s) \"x\" \
         (builtins.genList (i: i) 20); in builtins.foldl' (a: i: builtins.seq \
         (builtins.hashString \"sha256\" oneMib) (a + 1)) 0 (builtins.genList (i: i) {hashes})"
    )
}

/// CPU seconds of one `nix eval` of `expr`.
fn cpu_seconds(expr: &str) -> Result<f64, LabError> {
    let script = "nix eval --expr \"$1\" >/dev/null || exit 1; \
                  set -- $(cut -d' ' -f16,17 /proc/$$/stat); \
                  echo \"$1 $2 $(getconf CLK_TCK)\"";
    let output = Command::new("sh")
        .args(["-c", script, "sh", expr])
        .env("NIX_CONFIG", NIX_CONFIG)
        .stdin(Stdio::null())
        .output()
        .map_err(|source| LabError::Io {
            what: "run nix eval to measure its CPU time".to_owned(),
            source,
        })?;
    let text = String::from_utf8_lossy(&output.stdout);
    let numbers: Vec<f64> = text
        .split_whitespace()
        .filter_map(|n| n.parse().ok())
        .collect();
    match numbers.as_slice() {
        [user, system, ticks] if output.status.success() && *ticks > 0.0 => {
            Ok((user + system) / ticks)
        }
        _ => Err(LabError::Command {
            what: "nix eval (measuring hash speed)".to_owned(),
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }),
    }
}

/// Hashes of 1 MiB per CPU-second of `nix eval` on this machine (measured once per process).
pub fn hashes_per_cpu_second() -> Result<f64, LabError> {
    static RATE: OnceLock<f64> = OnceLock::new();
    if let Some(rate) = RATE.get() {
        return Ok(*rate);
    }
    let base = cpu_seconds(&probe_expr(0))?;
    let probe = cpu_seconds(&probe_expr(PROBE_HASHES))?;
    // A clock tick is 10 ms; a probe of well over that keeps the rounding small.
    let rate = PROBE_HASHES as f64 / (probe - base).max(0.05);
    Ok(*RATE.get_or_init(|| rate))
}

/// An [`Evaluation`] that costs about `cpu` of CPU time here and holds `memory_mib` MiB.
pub fn eval_cost(cpu: Duration, memory_mib: u64) -> Result<Evaluation, LabError> {
    let rate = hashes_per_cpu_second()?;
    Ok(Evaluation::Costs {
        hashes: (cpu.as_secs_f64() * rate).round() as u64,
        memory_mib,
    })
}
