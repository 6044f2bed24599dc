//! One sweep point: start N lab hosts, deploy them once untimed, then K runs, each measuring
//! hbdeploy (cold, warm, and the no-op `nix build` floor) and the plain commands (all at once,
//! one after the other), in an order that alternates between runs.

use std::path::Path;
use std::process::Command;

use super::baseline::{Baseline, Mode};
use super::cpu::CpuSnapshot;
use super::machine::load_average;
use super::measure::{Measured, measure};
use super::profile::{self, COLUMNS};
use super::{Config, Point, Samples};
use crate::{Lab, LabError, NIX_CONFIG, SystemSpec};

const MIB: f64 = 1024.0 * 1024.0;

/// The prefix of this process's bench hosts' names: `b<pid>h`. The names are part of the systems'
/// store paths, which is how [`forget_built`] finds exactly what this process built.
fn prefix() -> String {
    format!("b{}h", std::process::id())
}

/// The names of a bench lab's hosts: `<prefix>001`, `<prefix>002`, …
fn names(prefix: &str, hosts: usize) -> Vec<String> {
    (1..=hosts).map(|i| format!("{prefix}{i:03}")).collect()
}

/// Everything one point's runs share.
struct Bed<'a> {
    config: &'a Config,
    lab: Lab,
    fleet: std::path::PathBuf,
    baseline: Baseline,
    hosts: usize,
    cores: usize,
}

impl Bed<'_> {
    fn hbdeploy(&self, parallel: usize, extra: &[&str]) -> Command {
        let mut command = Command::new(&self.config.hbdeploy);
        command
            .arg("--fleet")
            .arg(&self.fleet)
            .args(["apply", "--all", "--timings", "--parallel"])
            .arg(parallel.to_string())
            .args(extra)
            .env("NIX_CONFIG", NIX_CONFIG)
            .env("NO_COLOR", "1")
            .env_remove("HBDEPLOY_FLEET");
        command
    }

    /// Logins accepted by all hosts' sshd so far.
    fn logins(&self) -> usize {
        self.lab.hosts().map(|h| h.accepted_logins()).sum()
    }

    /// Runs `command`, returning the measurement and the SSH logins per host it caused; a
    /// failed run is recorded in `point.errors` and yields `None`.
    fn timed(
        &self,
        point: &mut Point,
        label: &str,
        command: &mut Command,
        rss: bool,
    ) -> Result<Option<(Measured, f64)>, LabError> {
        let before = self.logins();
        let cpu = CpuSnapshot::take();
        let measured = measure(command, rss.then_some("hbdeploy"))?;
        let (others, _) = cpu.since(CpuSnapshot::take());
        let capacity = self.cores as f64 * measured.wall.as_secs_f64();
        if capacity > 0.0 {
            point.others_cpu_share.push(others / capacity);
        }
        let logins = (self.logins() - before) as f64 / self.hosts as f64;
        match measured.clone().check(label) {
            Ok(_) => Ok(Some((measured, logins))),
            Err(err) => {
                point.errors.push(format!("run {}: {err}", point.runs + 1));
                Ok(None)
            }
        }
    }

    /// hbdeploy cold, warm, then the no-op build floor; then cold without magic rollback, and
    /// cold with `--parallel 10`.
    fn hbdeploy_block(
        &mut self,
        point: &mut Point,
        say: &mut dyn FnMut(&str),
    ) -> Result<(), LabError> {
        self.lab.bump_all()?;
        let mut cold = self.hbdeploy(self.hosts, &[]);
        if let Some((m, logins)) = self.timed(point, "hbdeploy apply (cold)", &mut cold, true)? {
            record(&mut point.cold, &m, say, "hbdeploy cold");
            record_rss(&mut point.rss_cold, &m);
            point.logins_cold.push(logins);
            if let Some(profile) = profile::parse(&m.stdout) {
                for (samples, value) in point.profile.iter_mut().zip(&profile.median) {
                    if let Some(value) = value {
                        samples.push(*value);
                    }
                }
                point.profile_table = Some(profile.table);
            }
        }
        let mut warm = self.hbdeploy(self.hosts, &[]);
        if let Some((m, logins)) = self.timed(point, "hbdeploy apply (warm)", &mut warm, true)? {
            record(&mut point.warm, &m, say, "hbdeploy warm");
            record_rss(&mut point.rss_warm, &m);
            point.logins_warm.push(logins);
        }
        let mut build = self.baseline.command(Mode::Build);
        if let Some((m, _)) = self.timed(point, "nix build (no-op)", &mut build, false)? {
            record(&mut point.build_noop, &m, say, "nix build (no-op)");
        }
        self.lab.bump_all()?;
        let mut plain = self.hbdeploy(self.hosts, &["--no-magic-rollback"]);
        let label = "hbdeploy --no-magic-rollback";
        if let Some((m, logins)) = self.timed(point, label, &mut plain, true)? {
            record(
                &mut point.cold_no_magic,
                &m,
                say,
                "hbdeploy cold --no-magic-rollback",
            );
            point.logins_no_magic.push(logins);
        }
        if self.config.default_parallel && self.hosts > 10 {
            self.lab.bump_all()?;
            let mut cold = self.hbdeploy(10, &[]);
            if let Some((m, _)) = self.timed(point, "hbdeploy --parallel 10", &mut cold, true)? {
                record(
                    &mut point.cold_parallel_10,
                    &m,
                    say,
                    "hbdeploy cold --parallel 10",
                );
            }
        }
        Ok(())
    }

    /// The plain commands, all hosts at once, then one after the other; each with new closures.
    fn plain_block(
        &mut self,
        point: &mut Point,
        say: &mut dyn FnMut(&str),
    ) -> Result<(), LabError> {
        self.lab.bump_all()?;
        let mut parallel = self.baseline.command(Mode::Parallel);
        if let Some((m, logins)) = self.timed(point, "plain parallel", &mut parallel, false)? {
            record(&mut point.plain_parallel, &m, say, "plain parallel");
            point.logins_plain.push(logins);
        }
        self.lab.bump_all()?;
        let mut sequential = self.baseline.command(Mode::Sequential);
        if let Some((m, logins)) = self.timed(point, "plain sequential", &mut sequential, false)? {
            record(&mut point.plain_sequential, &m, say, "plain sequential");
            point.logins_plain.push(logins);
        }
        Ok(())
    }
}

/// Adds this run's paired ratios, for the variants that succeeded in it (`before` holds the
/// sample counts of hbdeploy cold, plain parallel and plain sequential before the run).
fn pair(point: &mut Point, before: (usize, usize, usize)) {
    let new = |samples: &Samples, count: usize| {
        (samples.0.len() == count + 1)
            .then(|| samples.0.last().copied())
            .flatten()
    };
    if let Some(cold) = new(&point.cold, before.0) {
        if let Some(parallel) = new(&point.plain_parallel, before.1) {
            point.paired_parallel.push(cold / parallel);
        }
        if let Some(sequential) = new(&point.plain_sequential, before.2) {
            point.paired_sequential.push(sequential / cold);
        }
    }
}

fn record(samples: &mut Samples, m: &Measured, say: &mut dyn FnMut(&str), label: &str) {
    let secs = m.wall.as_secs_f64();
    samples.push(secs);
    let rss = m
        .peak_rss_kib
        .map(|kib| format!(", peak RSS {:.1} MiB", kib as f64 / 1024.0))
        .unwrap_or_default();
    say(&format!("  {label}: {secs:.2}s{rss}"));
}

fn record_rss(samples: &mut Samples, m: &Measured) {
    if let Some(kib) = m.peak_rss_kib {
        samples.push(kib as f64 * 1024.0 / MIB);
    }
}

/// Measures one sweep point of `hosts` hosts.
pub fn run_point(
    config: &Config,
    hosts: usize,
    say: &mut dyn FnMut(&str),
) -> Result<Point, LabError> {
    say(&format!("{hosts} hosts: starting the lab"));
    let names = names(&prefix(), hosts);
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut lab = Lab::start(&refs)?;
    let spec = SystemSpec {
        payload_bytes: config.payload_mib * 1024 * 1024,
        ..SystemSpec::default()
    };
    lab.set_systems(refs.iter().map(|name| (*name, spec.clone())))?;
    let fleet = lab.write_fleet(&[], "")?;
    let baseline = Baseline::write(&lab)?;
    let mut bed = Bed {
        config,
        lab,
        fleet,
        baseline,
        hosts,
        cores: std::thread::available_parallelism().map_or(1, usize::from),
    };
    let mut point = Point {
        hosts,
        profile: vec![Samples::default(); COLUMNS.len()],
        load: (load_average(), None),
        ..Point::default()
    };
    // The first deployment is not measured: afterwards every host runs a system, as real ones do.
    say(&format!("{hosts} hosts: first deployment (not measured)"));
    measure(&mut bed.hbdeploy(hosts, &[]), None)?.check("hbdeploy apply (first deployment)")?;

    for run in 0..config.runs {
        say(&format!("{hosts} hosts: run {}/{}", run + 1, config.runs));
        let before = (
            point.cold.0.len(),
            point.plain_parallel.0.len(),
            point.plain_sequential.0.len(),
        );
        if run % 2 == 0 {
            bed.hbdeploy_block(&mut point, say)?;
            bed.plain_block(&mut point, say)?;
        } else {
            bed.plain_block(&mut point, say)?;
            bed.hbdeploy_block(&mut point, say)?;
        }
        pair(&mut point, before);
        point.runs += 1;
    }
    point.load.1 = load_average();
    drop(bed);
    match forget_built(&prefix()) {
        Ok(0) => {}
        Ok(n) => say(&format!(
            "{hosts} hosts: deleted {n} bench paths from the local store"
        )),
        Err(err) => say(&format!(
            "{hosts} hosts: could not delete the bench's store paths: {err}"
        )),
    }
    Ok(point)
}

/// Whether a store entry was built for a bench host named `<prefix>NNN`
/// (`…-lab-payload-b42h007-3`, …).
fn is_bench_path(prefix: &str, entry: &str) -> bool {
    ["-lab-payload-", "-lab-etc-", "-nixos-system-"]
        .iter()
        .any(|kind| entry.contains(&format!("{kind}{prefix}")))
}

/// Deletes the systems this process's bench hosts got from the local store (random data nobody
/// else uses, 10 MiB a host a run), so a sweep does not fill the disk. Returns how many paths
/// went.
fn forget_built(prefix: &str) -> Result<usize, LabError> {
    let store = Path::new("/nix/store");
    let entries = std::fs::read_dir(store).map_err(|source| LabError::Io {
        what: "list /nix/store".to_owned(),
        source,
    })?;
    let paths: Vec<std::path::PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| is_bench_path(prefix, &n.to_string_lossy()))
        })
        .collect();
    if paths.is_empty() {
        return Ok(0);
    }
    crate::host::run(
        Command::new("nix-store").arg("--delete").args(&paths),
        "nix-store --delete (bench systems)",
    )?;
    Ok(paths.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_pair_only_what_succeeded_in_them() {
        let mut point = Point {
            cold: Samples(vec![2.0]),
            plain_parallel: Samples(vec![1.0]),
            ..Point::default()
        };
        pair(&mut point, (0, 0, 0));
        assert_eq!(point.paired_parallel, Samples(vec![2.0]));
        assert_eq!(point.paired_sequential, Samples::default());
        // A run whose cold apply failed pairs nothing.
        point.plain_parallel.push(4.0);
        pair(&mut point, (1, 1, 0));
        assert_eq!(point.paired_parallel, Samples(vec![2.0]));
    }

    #[test]
    fn bench_paths_are_recognised_by_name() {
        assert_eq!(names("b42h", 2), ["b42h001", "b42h002"]);
        assert!(is_bench_path("b42h", "abc-lab-payload-b42h007-3"));
        assert!(is_bench_path("b42h", "abc-nixos-system-b42h007-toy-3.drv"));
        assert!(!is_bench_path("b42h", "abc-nixos-system-b421h007-toy-3"));
        assert!(!is_bench_path("b42h", "abc-nixos-system-desktop-toy-1"));
    }
}
