//! `hbdeploy-bench`: how long `hbdeploy apply --all` takes for N simulated hosts, the deployment
//! alone (closures built beforehand) against plain `nix copy` + `ssh` with hbdeploy's SSH
//! algorithms and with OpenSSH's defaults, on namespace and systemd hosts, with CPU seconds per
//! host, warm applies, hbdeploy's peak memory and SSH logins per host (issue 16); and with the
//! build included (issue 9). Prints progress on stderr and the markdown report on stdout (or into
//! `--markdown`); `--json` writes every sample. Needs root, nix, sshd (see `scripts/bench.sh`).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use hbdeploy_lab::HostKind;
use hbdeploy_lab::bench::{self, Config};

/// Benchmark hbdeploy against the plain-command floor on a lab of simulated NixOS hosts.
#[derive(Debug, Parser)]
#[command(name = "hbdeploy-bench")]
struct Args {
    /// Numbers of hosts to sweep (at most 240).
    #[arg(long, value_delimiter = ',', default_value = "1,3,5,20,50,100")]
    hosts: Vec<usize>,

    /// Kinds of lab host to sweep: `namespace` (fast, no systemd), `systemd` (containers booted
    /// with systemd as PID 1, like NixOS hosts; a boot per host).
    #[arg(long, value_delimiter = ',', default_value = "systemd,namespace", value_parser = parse_lab)]
    lab: Vec<HostKind>,

    /// Measure the deployment alone only: skip the second table (build included).
    #[arg(long)]
    no_build_included: bool,

    /// Runs per number of hosts; each run measures every variant once.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u16).range(1..))]
    runs: u16,

    /// Size of each host's closure payload (random, incompressible bytes), in MiB.
    #[arg(long, default_value_t = 10)]
    payload_mib: u64,

    /// Write the results with every sample as JSON to this file.
    #[arg(long, value_name = "PATH")]
    json: Option<PathBuf>,

    /// Write the markdown report to this file instead of stdout.
    #[arg(long, value_name = "PATH")]
    markdown: Option<PathBuf>,

    /// The hbdeploy binary to measure (default: the one next to this binary).
    #[arg(long, value_name = "PATH")]
    hbdeploy: Option<PathBuf>,

    /// Skip the runs with the fleet's default `--parallel 10` (measured above 10 hosts: the
    /// deployment alone and warm, with their peak RSS, and cold with the build included).
    #[arg(long)]
    no_default_parallel: bool,

    /// Measure evaluation instead (issue 17): hosts whose evaluation costs --eval-cpu-ms and
    /// holds --eval-mib, evaluated serially, in parallel, one host per process and under a
    /// memory budget, then a whole cold apply; --runs applies, --hosts does not.
    #[arg(long)]
    eval: bool,

    /// With --eval: hosts.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u16).range(1..=240))]
    eval_hosts: u16,

    /// With --eval: CPU time of one host's evaluation, milliseconds.
    #[arg(long, default_value_t = 2000)]
    eval_cpu_ms: u64,

    /// With --eval: memory one host's evaluation holds, MiB.
    #[arg(long, default_value_t = 300)]
    eval_mib: u64,

    /// With --eval: the --eval-memory of the budgeted run, MiB.
    #[arg(long, default_value_t = 1024)]
    eval_budget_mib: u64,
}

fn parse_lab(text: &str) -> Result<HostKind, String> {
    match text {
        "namespace" => Ok(HostKind::Namespace),
        "systemd" => Ok(HostKind::Systemd),
        _ => Err(format!(
            "unknown lab kind {text:?}: use namespace or systemd"
        )),
    }
}

fn say(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

fn write(path: &PathBuf, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|err| format!("cannot write {}: {err}", path.display()))
}

fn run(args: Args) -> Result<(), String> {
    if let Some(bad) = args.hosts.iter().find(|n| **n == 0 || **n > 240) {
        return Err(format!("--hosts {bad}: a lab holds 1 to 240 hosts"));
    }
    let hbdeploy = match args.hbdeploy {
        Some(path) => path,
        None => std::env::current_exe()
            .map_err(|err| format!("cannot find this binary: {err}"))?
            .with_file_name("hbdeploy"),
    };
    if !hbdeploy.is_file() {
        return Err(format!(
            "no hbdeploy binary at {} (build it, or pass --hbdeploy PATH)",
            hbdeploy.display()
        ));
    }
    if args.eval {
        let config = bench::eval::EvalConfig {
            hosts: args.eval_hosts.into(),
            cpu: std::time::Duration::from_millis(args.eval_cpu_ms),
            memory_mib: args.eval_mib,
            budget_mib: args.eval_budget_mib,
            runs: args.runs.into(),
            hbdeploy,
        };
        let mut progress = |line: &str| say(line);
        let bench = bench::eval::run_eval(&config, &mut progress).map_err(|e| e.to_string())?;
        let markdown = bench::eval::eval_markdown(&bench);
        return match &args.markdown {
            Some(path) => write(path, &markdown),
            None => {
                let _ = std::io::stdout().write_all(markdown.as_bytes());
                Ok(())
            }
        };
    }
    let config = Config {
        hosts: args.hosts,
        runs: args.runs.into(),
        payload_mib: args.payload_mib,
        hbdeploy,
        default_parallel: !args.no_default_parallel,
        labs: args.lab,
        build_included: !args.no_build_included,
    };
    let mut progress = |line: &str| say(line);
    let bench = bench::run(&config, &mut progress);
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&bench::json(&bench))
            .map_err(|err| format!("cannot render JSON: {err}"))?;
        write(path, &(text + "\n"))?;
    }
    say("targets (issue 16):");
    for target in bench::targets(&bench.points, bench.machine.cores) {
        let verdict = match target.met {
            Some(true) => "met",
            Some(false) => "MISSED",
            None => "not measured",
        };
        say(&format!("  {verdict}: {} — {}", target.name, target.detail));
    }
    let markdown = bench::markdown(&bench);
    match &args.markdown {
        Some(path) => write(path, &markdown)?,
        None => {
            let _ = std::io::stdout().write_all(markdown.as_bytes());
        }
    }
    // The points measured are written above; those that could not be are an error all the same.
    if bench.failed.is_empty() {
        return Ok(());
    }
    let failed: Vec<String> = bench
        .failed
        .iter()
        .map(|f| format!("{} {} hosts: {}", f.hosts, bench::lab_name(f.lab), f.error))
        .collect();
    Err(format!(
        "{} of the sweep's points could not be measured (the others are in the report):\n{}",
        failed.len(),
        failed.join("\n")
    ))
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            say(&format!("error: {message}"));
            ExitCode::FAILURE
        }
    }
}
