//! The benchmark of issues 9 and 16: how long `hbdeploy apply --all` takes for N lab hosts, cold
//! (every host gets a new closure) and warm (nothing changed), against the same work done by
//! plain commands; with hbdeploy's peak memory, the SSH logins per host, the CPU a deployment
//! costs the machine per host, and where a cold apply's time goes.
//!
//! The headline (issue 16) is the deployment alone: every contender's closures are built
//! beforehand (untimed), then hbdeploy (evaluating, finding everything built, copying,
//! activating) is timed against the plain commands (`nix copy` + one `ssh` per host, all hosts
//! at once) with the SSH algorithms hbdeploy's russh negotiates and with OpenSSH's defaults; on
//! namespace hosts and on hosts running systemd. Warm, hbdeploy is timed against a no-op
//! `nix build` and against the floor of any tool that logs in to every host: plain `ssh … true`
//! to all hosts at once. The second table keeps issue 9's figures, build included.
//!
//! Every run of a sweep point measures hbdeploy and the plain commands back to back, in an order
//! that alternates between runs, so drift of a shared machine hits both. The binary
//! `hbdeploy-bench` parses the command line and prints; this module measures and returns data.

pub mod baseline;
mod cpu;
pub mod eval;
pub mod machine;
mod measure;
mod output;
pub mod profile;
mod run;
pub mod stats;
mod targets;

use std::path::PathBuf;

pub use machine::Machine;
pub use measure::{Measured, measure};
pub use output::{json, markdown};
pub use run::{keep_user_managers, run_point};
pub use stats::Samples;
pub use targets::{Target, targets};

use crate::HostKind;

/// The documented top-level keys of the JSON report.
pub const JSON_KEYS: [&str; 7] = [
    "schema", "date", "machine", "versions", "config", "points", "failed",
];

/// The documented keys of each sweep point in the JSON report.
pub const POINT_KEYS: [&str; 30] = [
    "lab",
    "hosts",
    "runs",
    "lab_start_s",
    "deploy_hbdeploy_cold_s",
    "deploy_hbdeploy_cold_no_magic_rollback_s",
    "deploy_hbdeploy_cold_evaluating_s",
    "deploy_plain_same_algorithms_s",
    "deploy_plain_openssh_defaults_s",
    "deploy_hbdeploy_cold_parallel_10_s",
    "paired_deploy_cold_over_plain_same_algorithms",
    "paired_deploy_cold_over_plain_openssh_defaults",
    "cpu_s_per_host",
    "hbdeploy_cold_s",
    "hbdeploy_cold_no_magic_rollback_s",
    "hbdeploy_warm_s",
    "hbdeploy_cold_parallel_10_s",
    "plain_parallel_s",
    "plain_sequential_s",
    "nix_build_noop_s",
    "plain_logins_floor_s",
    "paired_warm_minus_plain_logins_s",
    "paired_cold_over_parallel",
    "paired_sequential_over_cold",
    "peak_rss_mib",
    "ssh_logins_per_host",
    "profile_cold_s",
    "profile_warm_s",
    "others_cpu_share",
    "errors",
];

/// What to measure.
#[derive(Debug, Clone)]
pub struct Config {
    /// The sweep: numbers of hosts.
    pub hosts: Vec<usize>,
    /// Runs per sweep point.
    pub runs: usize,
    /// Size of each host's payload (random bytes), in MiB.
    pub payload_mib: u64,
    /// The hbdeploy binary to measure.
    pub hbdeploy: PathBuf,
    /// Also measure with the fleet's default `parallel` (10), for N above 10: the deployment
    /// alone and warm (peak RSS and wall time) and, with the build included, cold.
    pub default_parallel: bool,
    /// The kinds of lab host to sweep, each with every number of hosts.
    pub labs: Vec<HostKind>,
    /// Also measure with the build included (the second table: issue 9's figures).
    pub build_included: bool,
}

/// The name of a lab kind in the reports.
pub fn lab_name(kind: HostKind) -> &'static str {
    match kind {
        HostKind::Namespace => "namespace",
        HostKind::Systemd => "systemd",
    }
}

/// CPU seconds per host a deployment cost: the benchmark's process tree (the deployer and the
/// lab hosts) and the whole machine (other sessions included), per contender.
#[derive(Debug, Clone, Default)]
pub struct Cpu {
    /// The process tree's CPU seconds ÷ hosts.
    pub tree: Samples,
    /// The machine's busy CPU seconds ÷ hosts (`/proc/stat`).
    pub machine: Samples,
}

impl Cpu {
    /// One measurement's `(machine, process tree)` CPU seconds per host.
    pub fn push(&mut self, (machine, tree): (f64, f64)) {
        self.tree.push(tree);
        self.machine.push(machine);
    }
}

/// The measurements of one sweep point (one number of hosts).
#[derive(Debug, Clone, Default)]
pub struct Point {
    /// The kind of lab host.
    pub lab: HostKind,
    /// Number of hosts.
    pub hosts: usize,
    /// Runs done.
    pub runs: usize,
    /// How long the lab took to start (for systemd hosts: to boot every container), seconds.
    pub lab_start_s: f64,
    /// The deployment alone (closures built beforehand): `hbdeploy apply --all --systems FILE
    /// --parallel N`, FILE written beforehand (untimed) by `hbdeploy build --systems-out`, as the
    /// plain commands get the paths built beforehand.
    pub deploy_cold: Samples,
    /// The same with `--no-magic-rollback`.
    pub deploy_no_magic: Samples,
    /// The same without `--systems`: hbdeploy evaluates the fleet again (and finds every system
    /// built), which the plain commands never do.
    pub deploy_evaluating: Samples,
    /// The deployment alone by the plain commands, all hosts at once, with the SSH algorithms
    /// hbdeploy negotiates.
    pub deploy_plain_same: Samples,
    /// The same with OpenSSH's default algorithms.
    pub deploy_plain_defaults: Samples,
    /// The deployment alone by hbdeploy with the fleet's default `--parallel 10`, when measured
    /// (`Config::default_parallel`, above 10 hosts).
    pub deploy_parallel_10: Samples,
    /// Per run, `deploy_cold` ÷ `deploy_plain_same`.
    pub paired_deploy_same: Samples,
    /// Per run, `deploy_cold` ÷ `deploy_plain_defaults`.
    pub paired_deploy_defaults: Samples,
    /// CPU per host of `deploy_cold`.
    pub cpu_hbdeploy: Cpu,
    /// Per run, `cpu_hbdeploy.tree` ÷ `cpu_plain_same.tree`: the CPU target's verdict, as the
    /// deployment's time is judged per run (the pair measured back to back).
    pub paired_cpu_same: Samples,
    /// CPU per host of `deploy_no_magic`.
    pub cpu_no_magic: Cpu,
    /// CPU per host of `deploy_plain_same`.
    pub cpu_plain_same: Cpu,
    /// CPU per host of `deploy_plain_defaults`.
    pub cpu_plain_defaults: Cpu,
    /// `hbdeploy apply --all --parallel N`, every host with a new closure, seconds.
    pub cold: Samples,
    /// The same with the default `--parallel` (10), when measured.
    pub cold_parallel_10: Samples,
    /// The same with `--no-magic-rollback`: no watchdog, no confirmation connection, seconds.
    pub cold_no_magic: Samples,
    /// `hbdeploy apply --all` again, nothing changed, seconds.
    pub warm: Samples,
    /// Plain commands, all hosts at once, seconds.
    pub plain_parallel: Samples,
    /// Plain commands, one host after the other, seconds.
    pub plain_sequential: Samples,
    /// Per run, hbdeploy cold ÷ plain parallel of that same run: pairs measured minutes apart,
    /// so drift of the machine cancels better than in a ratio of medians.
    pub paired_parallel: Samples,
    /// Per run, plain sequential ÷ hbdeploy cold of that same run.
    pub paired_sequential: Samples,
    /// One `nix build` of every host's system when all are built already, seconds.
    pub build_noop: Samples,
    /// The login floor of a warm deployment: plain `ssh … true` to every host at once, with the
    /// SSH algorithms hbdeploy negotiates, seconds. A warm hbdeploy must log in to each host
    /// once to read what it runs, so it cannot be much faster than this (a little: the `ssh`
    /// client processes' own CPU is part of this figure).
    pub logins_floor: Samples,
    /// Per run, `warm` − `logins_floor` of that same run, seconds: hbdeploy's own cost above
    /// the logins.
    pub paired_warm_minus_logins: Samples,
    /// CPU per host of `warm`.
    pub cpu_warm: Cpu,
    /// CPU per host of `logins_floor`.
    pub cpu_logins_floor: Cpu,
    /// hbdeploy's own peak RSS in cold runs, MiB.
    pub rss_cold: Samples,
    /// hbdeploy's own peak RSS in warm runs, MiB.
    pub rss_warm: Samples,
    /// hbdeploy's own peak RSS in cold runs with the default `--parallel 10` (the deployment
    /// alone and, when measured, the build included), MiB.
    pub rss_parallel_10: Samples,
    /// hbdeploy's own peak RSS in warm runs with the default `--parallel 10`, MiB.
    pub rss_warm_parallel_10: Samples,
    /// SSH logins per host: hbdeploy cold.
    pub logins_cold: Samples,
    /// SSH logins per host: hbdeploy cold with `--no-magic-rollback`.
    pub logins_no_magic: Samples,
    /// SSH logins per host: hbdeploy warm.
    pub logins_warm: Samples,
    /// SSH logins per host: plain commands.
    pub logins_plain: Samples,
    /// SSH logins per host: the login floor (`logins_floor`; 1 when it works as meant).
    pub logins_of_floor: Samples,
    /// Per `--timings` column, the median over hosts of each cold run, seconds.
    pub profile: Vec<Samples>,
    /// The `--timings` table of the last cold run.
    pub profile_table: Option<String>,
    /// Per `--timings` column, the median over hosts of each warm run, seconds.
    pub profile_warm: Vec<Samples>,
    /// Per measurement, the share of the machine's CPU capacity that processes outside the
    /// benchmark used meanwhile (0 = none, 1 = every core).
    pub others_cpu_share: Samples,
    /// The 1-minute load average before and after the point.
    pub load: (Option<f64>, Option<f64>),
    /// Runs that failed, with what went wrong.
    pub errors: Vec<String>,
}

/// A whole benchmark: what ran where, and one [`Point`] per number of hosts.
#[derive(Debug, Clone)]
pub struct Bench {
    /// What was asked for.
    pub config: Config,
    /// Where it ran.
    pub machine: Machine,
    /// The sweep's results: per lab of `config.labs`, in the order of `config.hosts`, each
    /// point that was measured.
    pub points: Vec<Point>,
    /// The points that could not be measured at all (their lab did not start, or hbdeploy's
    /// first, unmeasured deployment failed), in sweep order.
    pub failed: Vec<Failed>,
}

/// A sweep point that could not be measured.
#[derive(Debug, Clone)]
pub struct Failed {
    /// The kind of lab host.
    pub lab: HostKind,
    /// How many hosts.
    pub hosts: usize,
    /// Why, with its causes.
    pub error: String,
}

/// Runs the whole sweep. `progress` gets one line per measurement. A point that cannot be
/// measured is recorded in [`Bench::failed`] and the sweep goes on with the next, so that one
/// point (say a lab too large for the machine) does not discard the others' figures.
pub fn run(config: &Config, progress: &mut dyn FnMut(&str)) -> Bench {
    let machine = Machine::detect(&config.hbdeploy);
    let mut points = Vec::new();
    let mut failed = Vec::new();
    for &lab in &config.labs {
        for &hosts in &config.hosts {
            match run_point(config, lab, hosts, progress) {
                Ok(point) => points.push(point),
                Err(err) => {
                    let mut error = err.to_string();
                    for cause in hbdeploy_files::causes(&err) {
                        error.push_str(&format!("\n  caused by: {cause}"));
                    }
                    progress(&format!(
                        "{hosts} {} hosts: not measured: {error}",
                        lab_name(lab)
                    ));
                    failed.push(Failed { lab, hosts, error });
                }
            }
        }
    }
    Bench {
        config: config.clone(),
        machine,
        points,
        failed,
    }
}
