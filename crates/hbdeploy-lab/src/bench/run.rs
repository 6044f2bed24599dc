//! One sweep point: start N lab hosts of one kind, deploy them once untimed, then K runs, each
//! measuring the deployment alone (closures built beforehand: hbdeploy with and without magic
//! rollback, the plain commands with hbdeploy's SSH algorithms and with OpenSSH's defaults),
//! hbdeploy warm, the login floor (plain `ssh … true` to every host at once) and the no-op
//! `nix build` floor, and, when asked, everything again with the
//! build included (hbdeploy cold; the plain commands all at once and one after the other); in an
//! order that alternates between runs.

use std::path::Path;
use std::process::Command;

use super::baseline::{Algorithms, Baseline, Mode, same_algorithms};
use super::cpu::CpuSnapshot;
use super::machine::load_average;
use super::measure::{Measured, measure};
use super::profile::{self, COLUMNS};
use super::{Config, Point, Samples, lab_name};
use crate::{HostKind, Lab, LabError, LabHost, NIX_CONFIG, SystemSpec};

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
    /// The key exchange and cipher hbdeploy's russh negotiates.
    same: (String, String),
}

/// A successful measurement, the SSH logins per host it caused, and the CPU seconds per host it
/// cost: `(machine, process tree)`.
type Timed = (Measured, f64, (f64, f64));

/// One contender of the deployment-alone block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Contender {
    /// `hbdeploy apply --systems FILE` of the systems built beforehand.
    Hbdeploy,
    HbdeployNoMagic,
    /// hbdeploy with the fleet's default `--parallel 10`.
    HbdeployParallel10,
    /// `hbdeploy apply` evaluating the fleet (and finding every system built).
    HbdeployEvaluating,
    PlainSame,
    PlainDefaults,
}

impl Bed<'_> {
    /// Whether this point also measures the fleet's default `--parallel 10`.
    fn default_parallel(&self) -> bool {
        self.config.default_parallel && self.hosts > 10
    }

    /// hbdeploy on the lab's fleet, in the benchmark's environment, with `args`.
    fn hbdeploy_with(&self, args: &[&str]) -> Command {
        let mut command = Command::new(&self.config.hbdeploy);
        command
            .arg("--fleet")
            .arg(&self.fleet)
            .args(args)
            .env("NIX_CONFIG", NIX_CONFIG)
            .env("NO_COLOR", "1")
            .env_remove("HBDEPLOY_FLEET");
        command
    }

    fn hbdeploy(&self, parallel: usize, extra: &[&str]) -> Command {
        let mut command = self.hbdeploy_with(&["apply", "--all", "--timings", "--parallel"]);
        command.arg(parallel.to_string()).args(extra);
        command
    }

    /// `hbdeploy apply` of the closures just built, nothing evaluated or built: first (untimed,
    /// as the plain commands' `nix build --json`) `hbdeploy build --all --systems-out FILE`,
    /// which evaluates the fleet and finds them built, then the command with `--systems FILE`.
    fn hbdeploy_built(&self, parallel: usize, extra: &[&str]) -> Result<Command, LabError> {
        let systems = self.lab.dir().join("bench-systems.json");
        let mut build = self.hbdeploy_with(&["build", "--all", "--systems-out"]);
        build.arg(&systems);
        crate::files::run(
            &mut build,
            "hbdeploy build --systems-out (systems built beforehand)",
        )?;
        let mut command = self.hbdeploy(parallel, extra);
        command.arg("--systems").arg(systems);
        Ok(command)
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
        Ok(self
            .timed_cpu(point, label, command, rss)?
            .map(|(m, logins, _)| (m, logins)))
    }

    /// [`Bed::timed`], with the CPU seconds per host it cost: `(machine, process tree)`.
    fn timed_cpu(
        &self,
        point: &mut Point,
        label: &str,
        command: &mut Command,
        rss: bool,
    ) -> Result<Option<Timed>, LabError> {
        let before = self.logins();
        let cpu = CpuSnapshot::take();
        // Sampled by the name the binary runs under (`--hbdeploy` may name a copy such as
        // `hbdeploy-before`), not by "hbdeploy": else a renamed binary's peak went unmeasured.
        let program = std::path::Path::new(command.get_program())
            .file_name()
            .map(|name| name.to_string_lossy().into_owned());
        let measured = measure(command, program.as_deref().filter(|_| rss))?;
        let after = CpuSnapshot::take();
        let (others, _) = cpu.since(after);
        let (machine, ours) = cpu.usage(after);
        let capacity = self.cores as f64 * measured.wall.as_secs_f64();
        if capacity > 0.0 {
            point.others_cpu_share.push(others / capacity);
        }
        let logins = (self.logins() - before) as f64 / self.hosts as f64;
        let per_host = (machine / self.hosts as f64, ours / self.hosts as f64);
        match measured.clone().check(label) {
            Ok(_) => Ok(Some((measured, logins, per_host))),
            Err(err) => {
                point.errors.push(format!("run {}: {err}", point.runs + 1));
                Ok(None)
            }
        }
    }

    /// Build included: hbdeploy cold, then cold without magic rollback, and cold with
    /// `--parallel 10`.
    fn hbdeploy_block(
        &mut self,
        point: &mut Point,
        say: &mut dyn FnMut(&str),
    ) -> Result<(), LabError> {
        self.lab.bump_all()?;
        let mut cold = self.hbdeploy(self.hosts, &[]);
        if let Some((m, _)) = self.timed(point, "hbdeploy apply (cold)", &mut cold, true)? {
            record(&mut point.cold, &m, say, "hbdeploy cold, build included");
            record_rss(&mut point.rss_cold, &m);
        }
        self.lab.bump_all()?;
        let mut plain = self.hbdeploy(self.hosts, &["--no-magic-rollback"]);
        let label = "hbdeploy --no-magic-rollback";
        if let Some((m, _)) = self.timed(point, label, &mut plain, true)? {
            record(
                &mut point.cold_no_magic,
                &m,
                say,
                "hbdeploy cold --no-magic-rollback, build included",
            );
        }
        if self.default_parallel() {
            self.lab.bump_all()?;
            let mut cold = self.hbdeploy(10, &[]);
            if let Some((m, _)) = self.timed(point, "hbdeploy --parallel 10", &mut cold, true)? {
                record(
                    &mut point.cold_parallel_10,
                    &m,
                    say,
                    "hbdeploy cold --parallel 10",
                );
                record_rss(&mut point.rss_parallel_10, &m);
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
        if let Some((m, _)) = self.timed(point, "plain parallel", &mut parallel, false)? {
            record(
                &mut point.plain_parallel,
                &m,
                say,
                "plain parallel, build included",
            );
        }
        self.lab.bump_all()?;
        let mut sequential = self.baseline.command(Mode::Sequential);
        if let Some((m, _)) = self.timed(point, "plain sequential", &mut sequential, false)? {
            record(
                &mut point.plain_sequential,
                &m,
                say,
                "plain sequential, build included",
            );
        }
        Ok(())
    }

    /// The deployment alone: per contender, new closures built beforehand (untimed), then the
    /// contender timed; `reverse` runs the contenders in the opposite order. Then hbdeploy
    /// warm and the login floor (in the opposite order when `reverse`), warm with
    /// `--parallel 10` (when measured) and the no-op build floor.
    fn deploy_block(
        &mut self,
        point: &mut Point,
        reverse: bool,
        say: &mut dyn FnMut(&str),
    ) -> Result<(), LabError> {
        let mut order = vec![
            Contender::Hbdeploy,
            Contender::PlainSame,
            Contender::PlainDefaults,
            Contender::HbdeployNoMagic,
            Contender::HbdeployEvaluating,
        ];
        if self.default_parallel() {
            order.push(Contender::HbdeployParallel10);
        }
        if reverse {
            order.reverse();
        }
        let before = (
            point.deploy_cold.0.len(),
            point.deploy_plain_same.0.len(),
            point.deploy_plain_defaults.0.len(),
            point.cpu_hbdeploy.tree.0.len(),
            point.cpu_plain_same.tree.0.len(),
        );
        for contender in order {
            self.lab.bump_all()?;
            crate::files::run(
                &mut self.baseline.command(Mode::Prebuild),
                "build the new closures beforehand (baseline.sh prebuild)",
            )?;
            self.deploy_one(point, contender, say)?;
        }
        if let Some(cold) = added(&point.deploy_cold, before.0) {
            if let Some(same) = added(&point.deploy_plain_same, before.1) {
                point.paired_deploy_same.push(cold / same);
            }
            if let Some(defaults) = added(&point.deploy_plain_defaults, before.2) {
                point.paired_deploy_defaults.push(cold / defaults);
            }
        }
        if let (Some(ours), Some(theirs)) = (
            added(&point.cpu_hbdeploy.tree, before.3),
            added(&point.cpu_plain_same.tree, before.4),
        ) && theirs > 0.0
        {
            point.paired_cpu_same.push(ours / theirs);
        }
        let before = (point.warm.0.len(), point.logins_floor.0.len());
        if reverse {
            self.login_floor(point, say)?;
            self.warm(point, say)?;
        } else {
            self.warm(point, say)?;
            self.login_floor(point, say)?;
        }
        if let (Some(warm), Some(floor)) = (
            added(&point.warm, before.0),
            added(&point.logins_floor, before.1),
        ) {
            point.paired_warm_minus_logins.push(warm - floor);
        }
        if self.default_parallel() {
            let mut warm = self.hbdeploy(10, &[]);
            let label = "hbdeploy apply --parallel 10 (warm)";
            if let Some((m, _)) = self.timed(point, label, &mut warm, true)? {
                say(&format!(
                    "  hbdeploy warm --parallel 10: {:.2}s{}",
                    m.wall.as_secs_f64(),
                    rss_text(&m)
                ));
                record_rss(&mut point.rss_warm_parallel_10, &m);
            }
        }
        let mut build = self.baseline.command(Mode::Build);
        if let Some((m, _)) = self.timed(point, "nix build (no-op)", &mut build, false)? {
            record(&mut point.build_noop, &m, say, "nix build (no-op)");
        }
        Ok(())
    }

    /// hbdeploy warm: every host unchanged, one login each to read what it runs.
    fn warm(&mut self, point: &mut Point, say: &mut dyn FnMut(&str)) -> Result<(), LabError> {
        let mut warm = self.hbdeploy(self.hosts, &[]);
        let Some((m, logins, (machine, tree))) =
            self.timed_cpu(point, "hbdeploy apply (warm)", &mut warm, true)?
        else {
            return Ok(());
        };
        point.warm.push(m.wall.as_secs_f64());
        point.cpu_warm.push((machine, tree));
        say(&format!(
            "  hbdeploy warm: {:.2}s, CPU/host {tree:.2}s (machine {machine:.2}s){}",
            m.wall.as_secs_f64(),
            rss_text(&m)
        ));
        record_rss(&mut point.rss_warm, &m);
        point.logins_warm.push(logins);
        if let Some(profile) = profile::parse(&m.stdout) {
            for (samples, value) in point.profile_warm.iter_mut().zip(&profile.median) {
                if let Some(value) = value {
                    samples.push(*value);
                }
            }
        }
        Ok(())
    }

    /// The login floor of a warm deployment: `baseline.sh logins`, plain `ssh … true` to every
    /// host at once with hbdeploy's SSH algorithms. A failed login fails the measurement.
    fn login_floor(
        &mut self,
        point: &mut Point,
        say: &mut dyn FnMut(&str),
    ) -> Result<(), LabError> {
        let mut logins = self
            .baseline
            .command_with(Mode::Logins, Algorithms::Same, &self.same);
        let label = "plain logins to every host at once (baseline.sh logins)";
        let Some((m, count, (machine, tree))) = self.timed_cpu(point, label, &mut logins, false)?
        else {
            return Ok(());
        };
        point.logins_floor.push(m.wall.as_secs_f64());
        point.cpu_logins_floor.push((machine, tree));
        point.logins_of_floor.push(count);
        say(&format!(
            "  plain logins to every host at once (warm floor): {:.2}s, CPU/host {tree:.2}s \
             (machine {machine:.2}s)",
            m.wall.as_secs_f64()
        ));
        Ok(())
    }

    /// One timed deployment of the closures built beforehand.
    fn deploy_one(
        &mut self,
        point: &mut Point,
        contender: Contender,
        say: &mut dyn FnMut(&str),
    ) -> Result<(), LabError> {
        let (label, mut command, rss) = match contender {
            Contender::Hbdeploy => ("hbdeploy cold", self.hbdeploy_built(self.hosts, &[])?, true),
            Contender::HbdeployNoMagic => (
                "hbdeploy cold --no-magic-rollback",
                self.hbdeploy_built(self.hosts, &["--no-magic-rollback"])?,
                true,
            ),
            Contender::HbdeployParallel10 => (
                "hbdeploy cold --parallel 10",
                self.hbdeploy_built(10, &[])?,
                true,
            ),
            Contender::HbdeployEvaluating => (
                "hbdeploy cold, evaluating",
                self.hbdeploy(self.hosts, &[]),
                true,
            ),
            Contender::PlainSame => (
                "plain, hbdeploy's SSH algorithms",
                self.baseline
                    .command_with(Mode::Deploy, Algorithms::Same, &self.same),
                false,
            ),
            Contender::PlainDefaults => (
                "plain, OpenSSH defaults",
                self.baseline
                    .command_with(Mode::Deploy, Algorithms::Defaults, &self.same),
                false,
            ),
        };
        let Some((m, logins, (machine, tree))) = self.timed_cpu(point, label, &mut command, rss)?
        else {
            return Ok(());
        };
        // Wall time and peak RSS only, no CPU figures: the runs beside the headline.
        let aside = match contender {
            Contender::HbdeployEvaluating => {
                Some((&mut point.deploy_evaluating, &mut point.rss_cold))
            }
            Contender::HbdeployParallel10 => {
                Some((&mut point.deploy_parallel_10, &mut point.rss_parallel_10))
            }
            _ => None,
        };
        if let Some((samples, rss)) = aside {
            record_rss(rss, &m);
            samples.push(m.wall.as_secs_f64());
            say(&format!(
                "  deployment alone, {label}: {:.2}s{}",
                m.wall.as_secs_f64(),
                rss_text(&m)
            ));
            return Ok(());
        }
        let (samples, cpu) = match contender {
            Contender::Hbdeploy => (&mut point.deploy_cold, &mut point.cpu_hbdeploy),
            Contender::HbdeployNoMagic => (&mut point.deploy_no_magic, &mut point.cpu_no_magic),
            Contender::HbdeployParallel10 | Contender::HbdeployEvaluating => return Ok(()),
            Contender::PlainSame => (&mut point.deploy_plain_same, &mut point.cpu_plain_same),
            Contender::PlainDefaults => (
                &mut point.deploy_plain_defaults,
                &mut point.cpu_plain_defaults,
            ),
        };
        samples.push(m.wall.as_secs_f64());
        cpu.push((machine, tree));
        say(&format!(
            "  deployment alone, {label}: {:.2}s, CPU/host {tree:.2}s (machine {machine:.2}s){}",
            m.wall.as_secs_f64(),
            rss_text(&m)
        ));
        match contender {
            Contender::Hbdeploy => {
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
            Contender::HbdeployNoMagic => {
                record_rss(&mut point.rss_cold, &m);
                point.logins_no_magic.push(logins);
            }
            Contender::PlainSame | Contender::PlainDefaults => point.logins_plain.push(logins),
            Contender::HbdeployParallel10 | Contender::HbdeployEvaluating => {}
        }
        Ok(())
    }
}

/// Adds this run's paired ratios, for the variants that succeeded in it (`before` holds the
/// sample counts of hbdeploy cold, plain parallel and plain sequential before the run).
fn pair(point: &mut Point, before: (usize, usize, usize)) {
    if let Some(cold) = added(&point.cold, before.0) {
        if let Some(parallel) = added(&point.plain_parallel, before.1) {
            point.paired_parallel.push(cold / parallel);
        }
        if let Some(sequential) = added(&point.plain_sequential, before.2) {
            point.paired_sequential.push(sequential / cold);
        }
    }
}

/// The sample this run added to `samples`, which held `count` before it; `None` when the run's
/// measurement failed.
fn added(samples: &Samples, count: usize) -> Option<f64> {
    (samples.0.len() == count + 1)
        .then(|| samples.0.last().copied())
        .flatten()
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

/// ", peak RSS 12.3 MiB" when the peak was sampled.
fn rss_text(m: &Measured) -> String {
    m.peak_rss_kib
        .map(|kib| format!(", peak RSS {:.1} MiB", kib as f64 / 1024.0))
        .unwrap_or_default()
}

fn record_rss(samples: &mut Samples, m: &Measured) {
    if let Some(kib) = m.peak_rss_kib {
        samples.push(kib as f64 * 1024.0 / MIB);
    }
}

/// Keeps root's user manager (`user@0.service`) running on every systemd host for the whole
/// point. A login's logind session starts it, and logind stops it 10 s (`UserStopDelaySec`) after
/// the last session ends; so between runs, closures being built beforehand, it would stop or not
/// by how long that took, and start again inside whichever run came first after a longer pause
/// (in `deploy_block`'s order, hbdeploy's more often than not), at about 0.08 s of the machine's
/// CPU per host. Lingering (`loginctl enable-linger`) keeps it up for every run alike, so each
/// contender's figures hold its own work. On a host nobody is logged into, each contender's
/// deployment starts it once, alike.
pub fn keep_user_managers<'a>(
    hosts: impl IntoIterator<Item = &'a LabHost>,
) -> Result<(), LabError> {
    for host in hosts {
        host.sh("loginctl enable-linger root && systemctl start user@0.service")?;
    }
    Ok(())
}

/// Measures one sweep point of `hosts` hosts.
pub fn run_point(
    config: &Config,
    kind: HostKind,
    hosts: usize,
    say: &mut dyn FnMut(&str),
) -> Result<Point, LabError> {
    let lab_label = lab_name(kind);
    say(&format!("{hosts} {lab_label} hosts: starting the lab"));
    let names = names(&prefix(), hosts);
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let started = std::time::Instant::now();
    let mut lab = match kind {
        HostKind::Namespace => Lab::start(&refs)?,
        HostKind::Systemd => Lab::start_systemd(&refs)?,
    };
    let lab_start_s = started.elapsed().as_secs_f64();
    say(&format!(
        "{hosts} {lab_label} hosts: the lab started in {lab_start_s:.1}s"
    ));
    let spec = SystemSpec {
        payload_bytes: config.payload_mib * 1024 * 1024,
        ..SystemSpec::default()
    };
    lab.set_systems(refs.iter().map(|name| (*name, spec.clone())))?;
    let fleet = lab.write_fleet(&[], "")?;
    with_default_connect_timeout(&fleet)?;
    let baseline = Baseline::write(&lab)?;
    let mut bed = Bed {
        config,
        lab,
        fleet,
        baseline,
        hosts,
        cores: std::thread::available_parallelism().map_or(1, usize::from),
        same: same_algorithms()?,
    };
    let mut point = Point {
        lab: kind,
        lab_start_s,
        hosts,
        profile: vec![Samples::default(); COLUMNS.len()],
        profile_warm: vec![Samples::default(); COLUMNS.len()],
        load: (load_average(), None),
        ..Point::default()
    };
    if kind == HostKind::Systemd {
        keep_user_managers(bed.lab.hosts())?;
    }
    // The first deployment is not measured: afterwards every host runs a system, as real ones do.
    say(&format!(
        "{hosts} {lab_label} hosts: first deployment (not measured)"
    ));
    measure(&mut bed.hbdeploy(hosts, &[]), None)?.check("hbdeploy apply (first deployment)")?;

    for run in 0..config.runs {
        say(&format!(
            "{hosts} {lab_label} hosts: run {}/{}",
            run + 1,
            config.runs
        ));
        let before = (
            point.cold.0.len(),
            point.plain_parallel.0.len(),
            point.plain_sequential.0.len(),
        );
        bed.deploy_block(&mut point, run % 2 == 1, say)?;
        if config.build_included {
            if run % 2 == 0 {
                bed.hbdeploy_block(&mut point, say)?;
                bed.plain_block(&mut point, say)?;
            } else {
                bed.plain_block(&mut point, say)?;
                bed.hbdeploy_block(&mut point, say)?;
            }
            pair(&mut point, before);
        }
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
    crate::files::run(
        Command::new("nix-store").arg("--delete").args(&paths),
        "nix-store --delete (bench systems)",
    )?;
    Ok(paths.len())
}

/// hbdeploy's default `connect-timeout` (10 s) instead of the lab's 5 s, as users run it: with
/// 5 s, at 100 hosts on 2 cores the hosts whose evaluation ends last (their handshakes begun while
/// 90 copies run) timed out in most runs ("no answer … within 5s"). The plain commands get the
/// same (`ConnectTimeout=10` in `baseline.rs`).
fn with_default_connect_timeout(fleet: &std::path::Path) -> Result<(), LabError> {
    let io = |what: &str, source| LabError::Io {
        what: format!("{what} {}", fleet.display()),
        source,
    };
    let text = std::fs::read_to_string(fleet).map_err(|e| io("read", e))?;
    let (lab, ours) = ("\nconnect-timeout = 5\n", "\nconnect-timeout = 10\n");
    if !text.contains(lab) {
        return Err(io(
            "find the lab's connect-timeout in",
            std::io::Error::other("the lab's fleet.toml changed; update the benchmark"),
        ));
    }
    std::fs::write(fleet, text.replacen(lab, ours, 1)).map_err(|e| io("write", e))
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
