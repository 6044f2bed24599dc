//! The evaluation benchmark of issue 17: N lab hosts whose evaluation each costs a chosen CPU
//! time and holds a chosen memory (`Evaluation::Costs`), evaluated one at a time, in parallel
//! (chunks decided as the work goes, and one host per process), in parallel under a memory
//! budget, and a whole cold `apply`.
//!
//! Times come from hbdeploy's plain progress on stderr, timestamped as each line arrives: a
//! host's evaluation is over at its `[host] build` line (the build starts the moment it is
//! evaluated) and it is finished at its `[host] done` line. The memory is the sum of the
//! resident memory of hbdeploy's `nix` children, sampled every [`SAMPLE_EVERY`].

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::cpu::CpuSnapshot;
use super::machine::load_average;
use crate::{Lab, LabError, NIX_CONFIG, SystemSpec, eval_cost, hashes_per_cpu_second};

/// How often the nix processes' memory is read.
const SAMPLE_EVERY: Duration = Duration::from_millis(20);

/// What to measure.
#[derive(Debug, Clone)]
pub struct EvalConfig {
    /// Hosts.
    pub hosts: usize,
    /// CPU time of one host's evaluation.
    pub cpu: Duration,
    /// Memory one host's evaluation holds, MiB.
    pub memory_mib: u64,
    /// The budget of the budgeted run, MiB.
    pub budget_mib: u64,
    /// Runs.
    pub runs: usize,
    /// The hbdeploy binary.
    pub hbdeploy: PathBuf,
}

/// One measured hbdeploy run.
#[derive(Debug, Clone, Default)]
pub struct EvalRun {
    /// Which variant.
    pub label: String,
    /// Until the last host was evaluated, seconds.
    pub evaluated_s: f64,
    /// Until the first host finished (with `--goal switch`: activated and confirmed), seconds.
    pub first_done_s: f64,
    /// The whole run, seconds.
    pub wall_s: f64,
    /// The largest sum of the `nix` children's resident memory seen, MiB.
    pub peak_nix_mib: f64,
    /// CPU seconds of hbdeploy and its children.
    pub cpu_s: f64,
    /// CPU seconds other processes used meanwhile, as a share of the machine (0 to 1).
    pub others_share: f64,
    /// Hosts that failed.
    pub failed: usize,
}

/// The whole evaluation benchmark.
#[derive(Debug, Clone)]
pub struct EvalBench {
    /// What was asked for.
    pub config: EvalConfig,
    /// Cores of the machine.
    pub cores: usize,
    /// 1 MiB hashes per CPU-second measured here.
    pub hash_rate: f64,
    /// Every run, in order.
    pub runs: Vec<EvalRun>,
    /// 1-minute load average before and after.
    pub load: (Option<f64>, Option<f64>),
}

/// The sum of `VmRSS` of the processes named `nix` whose parent is `parent`, in KiB.
fn nix_children_rss(parent: u32) -> u64 {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    let mut total = 0;
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
            continue;
        };
        let field = |key: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .map(|v| v.trim().trim_end_matches("kB").trim().to_owned())
        };
        if field("Name:").as_deref() == Some("nix")
            && field("PPid:").and_then(|p| p.parse::<u32>().ok()) == Some(parent)
        {
            total += field("VmRSS:").and_then(|v| v.parse().ok()).unwrap_or(0);
        }
    }
    total
}

/// Runs hbdeploy with `args` against `fleet`, timestamping its progress lines.
fn timed_run(
    hbdeploy: &Path,
    fleet: &Path,
    label: &str,
    args: &[&str],
) -> Result<EvalRun, LabError> {
    let cpu = CpuSnapshot::take();
    let start = Instant::now();
    let mut child = Command::new(hbdeploy)
        .arg("--fleet")
        .arg(fleet)
        .args(args)
        .env("NIX_CONFIG", NIX_CONFIG)
        .env("NO_COLOR", "1")
        .env_remove("HBDEPLOY_FLEET")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| LabError::Io {
            what: format!("run {}", hbdeploy.display()),
            source,
        })?;
    let pid = child.id();
    let done = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicU64::new(0));
    let sampler = {
        let (done, peak) = (Arc::clone(&done), Arc::clone(&peak));
        std::thread::spawn(move || {
            while !done.load(Ordering::SeqCst) {
                peak.fetch_max(nix_children_rss(pid), Ordering::SeqCst);
                std::thread::sleep(SAMPLE_EVERY);
            }
        })
    };
    let mut run = EvalRun {
        label: label.to_owned(),
        ..EvalRun::default()
    };
    let mut tail: Vec<String> = Vec::new();
    if let Some(stderr) = child.stderr.take() {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let at = start.elapsed().as_secs_f64();
            if line.ends_with("] build") {
                run.evaluated_s = at;
            } else if line.ends_with("] done") && run.first_done_s == 0.0 {
                run.first_done_s = at;
            } else if line.contains("] FAILED at ") {
                run.failed += 1;
                tail.push(line.clone());
            }
        }
    }
    let status = child.wait().map_err(|source| LabError::Io {
        what: "wait for hbdeploy".to_owned(),
        source,
    })?;
    run.wall_s = start.elapsed().as_secs_f64();
    done.store(true, Ordering::SeqCst);
    let _ = sampler.join();
    run.peak_nix_mib = peak.load(Ordering::SeqCst) as f64 / 1024.0;
    let (others, ours) = cpu.since(CpuSnapshot::take());
    run.cpu_s = ours;
    let cores = std::thread::available_parallelism().map_or(1, usize::from) as f64;
    run.others_share = others / (cores * run.wall_s).max(f64::MIN_POSITIVE);
    if !status.success() && run.failed == 0 {
        return Err(LabError::Command {
            what: format!("hbdeploy ({label})"),
            status: status.to_string(),
            stderr: tail.join("\n"),
        });
    }
    Ok(run)
}

/// Runs the evaluation benchmark. `say` gets one line per step.
pub fn run_eval(config: &EvalConfig, say: &mut dyn FnMut(&str)) -> Result<EvalBench, LabError> {
    let prefix = format!("e{}h", std::process::id());
    let names: Vec<String> = (1..=config.hosts)
        .map(|i| format!("{prefix}{i:03}"))
        .collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    say(&format!(
        "evaluation: {} hosts, starting the lab",
        config.hosts
    ));
    let mut lab = Lab::start(&refs)?;
    let hash_rate = hashes_per_cpu_second()?;
    let spec = SystemSpec {
        evaluation: eval_cost(config.cpu, config.memory_mib)?,
        ..SystemSpec::default()
    };
    lab.set_systems(refs.iter().map(|name| (*name, spec.clone())))?;
    let fleet = lab.write_fleet(&[], "")?;
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let load_before = load_average();
    let budget = format!("{}MiB", config.budget_mib);
    let build = ["apply", "--all", "--goal", "build"];
    let variants: Vec<(&str, Vec<&str>)> = vec![
        ("serial: --eval-workers 1", vec!["--eval-workers", "1"]),
        ("parallel (defaults)", vec![]),
        ("parallel, one host per process", vec!["--eval-chunk", "1"]),
        (
            "parallel, --eval-memory budget",
            vec!["--eval-memory", &budget],
        ),
    ];
    let mut runs = Vec::new();
    for run in 1..=config.runs {
        for (label, extra) in &variants {
            // A new generation: new derivations, so every variant builds what it evaluates.
            lab.bump_all()?;
            say(&format!("run {run}: --goal build, {label}"));
            let mut args: Vec<&str> = build.to_vec();
            args.extend(extra);
            runs.push(timed_run(&config.hbdeploy, &fleet, label, &args)?);
        }
        lab.bump_all()?;
        say(&format!("run {run}: apply --all (switch, cold)"));
        runs.push(timed_run(
            &config.hbdeploy,
            &fleet,
            "apply --all (switch)",
            &["apply", "--all"],
        )?);
    }
    Ok(EvalBench {
        config: config.clone(),
        cores,
        hash_rate,
        runs,
        load: (load_before, load_average()),
    })
}

/// The report as markdown.
pub fn eval_markdown(bench: &EvalBench) -> String {
    let config = &bench.config;
    let serial_sum = config.hosts as f64 * config.cpu.as_secs_f64();
    let mut text = format!(
        "{} hosts, each evaluation {:.1} CPU-s and {} MiB held; {} cores; {:.0} hashes of 1 MiB \
         per CPU-second; load average {} → {}.\n\nSerial sum of the evaluations: {serial_sum:.1} s; \
         ÷ {} cores: {:.1} s; target ≤ 1.2 × that: {:.1} s.\n\n\
         | run | last host evaluated (s) | first host done (s) | whole run (s) | peak of all nix (MiB) | CPU (s) | others' CPU share | failed |\n\
         | --- | --- | --- | --- | --- | --- | --- | --- |\n",
        config.hosts,
        config.cpu.as_secs_f64(),
        config.memory_mib,
        bench.cores,
        bench.hash_rate,
        bench.load.0.map_or("?".to_owned(), |l| format!("{l:.2}")),
        bench.load.1.map_or("?".to_owned(), |l| format!("{l:.2}")),
        bench.cores,
        serial_sum / bench.cores as f64,
        1.2 * serial_sum / bench.cores as f64,
    );
    for run in &bench.runs {
        text.push_str(&format!(
            "| {} | {:.1} | {:.1} | {:.1} | {:.0} | {:.1} | {:.2} | {} |\n",
            run.label,
            run.evaluated_s,
            run.first_done_s,
            run.wall_s,
            run.peak_nix_mib,
            run.cpu_s,
            run.others_share,
            run.failed
        ));
    }
    text.push_str(&format!(
        "\nThe budgeted runs used --eval-memory {}MiB.\n",
        config.budget_mib
    ));
    text
}
