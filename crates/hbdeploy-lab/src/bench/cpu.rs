//! How much of the machine other processes took while a measurement ran: the noise a shared
//! machine puts into the figures, measured instead of guessed.
//!
//! The machine's busy CPU time comes from `/proc/stat`. The benchmark's own is the CPU time of
//! its process tree: every live descendant's own and reaped children's time from
//! `/proc/<pid>/stat` (the lab hosts' sshd listeners collect their sessions' time this way, a
//! systemd host's init that of its nix-daemon and units), plus what the benchmark itself reaped
//! (hbdeploy, the scripts, and everything they reaped) — but not the benchmark process's own
//! time (its memory sampler), which is neither the deployer's nor the hosts'. The difference is
//! what other processes used.
//!
//! The tree's delta is the CPU a deployment cost the machine, deployer and hosts together, with
//! other sessions' work left out: time moves from a process to its parent's reaped-children
//! time when it exits, so the sum over the tree loses nothing as long as every process is
//! reaped by one inside the tree (sshd, systemd and the namespace hosts' first process reap
//! theirs). The figure has the kernel's tick granularity (10 ms per process).

use std::collections::{HashMap, HashSet};

/// Clock ticks per second of `/proc`'s times (`USER_HZ`, 100 on every Linux).
const TICKS: f64 = 100.0;

/// A snapshot of busy CPU time, in ticks: the whole machine's and this process tree's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CpuSnapshot {
    machine: u64,
    tree: u64,
}

/// The machine's busy time: every field of `/proc/stat`'s `cpu` line except idle and iowait.
fn machine_busy() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let fields: Vec<u64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    let total: u64 = fields.iter().take(8).sum();
    Some(total - fields.get(3)? - fields.get(4)?)
}

/// `(ppid, utime + stime + cutime + cstime)` of a process, from `/proc/<pid>/stat`; with
/// `reaped_only`, only `cutime + cstime`.
fn process(pid: u32, reaped_only: bool) -> Option<(u32, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses; the fields start after the last `)`.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ppid = fields.get(1)?.parse().ok()?;
    let times: u64 = fields
        .get(if reaped_only { 13..15 } else { 11..15 })?
        .iter()
        .filter_map(|f| f.parse::<u64>().ok())
        .sum();
    Some((ppid, times))
}

/// The CPU time of this process and all its live descendants, reaped children included.
fn tree_busy() -> u64 {
    let me = std::process::id();
    let mut table: HashMap<u32, (u32, u64)> = HashMap::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.filter_map(Result::ok) {
            let pid = entry.file_name().to_string_lossy().parse::<u32>();
            if let Ok(pid) = pid
                && let Some(info) = process(pid, pid == me)
            {
                table.insert(pid, info);
            }
        }
    }
    let mut ours: HashSet<u32> = HashSet::from([me]);
    // Parents may be listed after their children: repeat until nothing joins.
    loop {
        let before = ours.len();
        for (pid, (ppid, _)) in &table {
            if ours.contains(ppid) {
                ours.insert(*pid);
            }
        }
        if ours.len() == before {
            break;
        }
    }
    ours.iter()
        .filter_map(|pid| table.get(pid))
        .map(|(_, t)| t)
        .sum()
}

impl CpuSnapshot {
    /// Now.
    pub fn take() -> CpuSnapshot {
        CpuSnapshot {
            machine: machine_busy().unwrap_or(0),
            tree: tree_busy(),
        }
    }

    /// The CPU seconds since `self`: `(machine, ours)`, the whole machine's busy time and the
    /// benchmark's process tree's.
    pub fn usage(self, later: CpuSnapshot) -> (f64, f64) {
        let machine = later.machine.saturating_sub(self.machine);
        let ours = later.tree.saturating_sub(self.tree);
        (machine as f64 / TICKS, ours as f64 / TICKS)
    }

    /// The CPU seconds other processes used since `self`: `(others, ours)`.
    pub fn since(self, later: CpuSnapshot) -> (f64, f64) {
        let machine = later.machine.saturating_sub(self.machine);
        let ours = later.tree.saturating_sub(self.tree);
        (
            machine.saturating_sub(ours) as f64 / TICKS,
            ours as f64 / TICKS,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_child_s_cpu_counts_as_ours() {
        let before = CpuSnapshot::take();
        let status = std::process::Command::new("/bin/sh")
            .args(["-c", "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done"])
            .status()
            .expect("sh runs");
        assert!(status.success());
        let (_, ours) = before.since(CpuSnapshot::take());
        assert!(ours > 0.05, "the busy loop took {ours} CPU seconds");
    }

    #[test]
    fn names_with_parentheses_parse() {
        let me = process(std::process::id(), false).expect("own stat");
        assert!(me.0 > 0);
    }
}
