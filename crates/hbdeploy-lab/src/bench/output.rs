//! The benchmark's two outputs: a markdown report (tables for `docs/benchmarks.md`) and JSON
//! with every sample. The JSON's keys are [`super::JSON_KEYS`] and, per point,
//! [`super::POINT_KEYS`].

use serde_json::{Value, json};

use super::profile::COLUMNS;
use super::stats::round;
use super::{Bench, Cpu, Point, Samples, lab_name, targets};

/// How the sweep was asked for, as a command line.
fn command(bench: &Bench) -> String {
    let hosts: Vec<String> = bench.config.hosts.iter().map(usize::to_string).collect();
    let labs: Vec<&str> = bench.config.labs.iter().map(|l| lab_name(*l)).collect();
    format!(
        "hbdeploy-bench --lab {} --hosts {} --runs {} --payload-mib {}{}{}",
        labs.join(","),
        hosts.join(","),
        bench.config.runs,
        bench.config.payload_mib,
        if bench.config.default_parallel {
            ""
        } else {
            " --no-default-parallel"
        },
        if bench.config.build_included {
            ""
        } else {
            " --no-build-included"
        }
    )
}

fn cpu_json(cpu: &Cpu) -> Value {
    json!({ "tree": cpu.tree.to_json(), "machine": cpu.machine.to_json() })
}

fn point_json(point: &Point) -> Value {
    let columns = |profile: &[Samples]| -> serde_json::Map<String, Value> {
        COLUMNS
            .iter()
            .zip(profile)
            .map(|(column, samples)| (column.to_lowercase(), samples.to_json()))
            .collect()
    };
    let profile = columns(&point.profile);
    json!({
        "lab": lab_name(point.lab),
        "hosts": point.hosts,
        "runs": point.runs,
        "lab_start_s": round(point.lab_start_s),
        "deploy_hbdeploy_cold_s": point.deploy_cold.to_json(),
        "deploy_hbdeploy_cold_no_magic_rollback_s": point.deploy_no_magic.to_json(),
        "deploy_hbdeploy_cold_evaluating_s": point.deploy_evaluating.to_json(),
        "deploy_plain_same_algorithms_s": point.deploy_plain_same.to_json(),
        "deploy_plain_openssh_defaults_s": point.deploy_plain_defaults.to_json(),
        "deploy_hbdeploy_cold_parallel_10_s": point.deploy_parallel_10.to_json(),
        "paired_deploy_cold_over_plain_same_algorithms": point.paired_deploy_same.to_json(),
        "paired_deploy_cold_over_plain_openssh_defaults": point.paired_deploy_defaults.to_json(),
        "paired_cpu_hbdeploy_over_plain_same_algorithms": point.paired_cpu_same.to_json(),
        "cpu_s_per_host": {
            "hbdeploy_cold": cpu_json(&point.cpu_hbdeploy),
            "hbdeploy_cold_no_magic_rollback": cpu_json(&point.cpu_no_magic),
            "plain_same_algorithms": cpu_json(&point.cpu_plain_same),
            "plain_openssh_defaults": cpu_json(&point.cpu_plain_defaults),
            "hbdeploy_warm": cpu_json(&point.cpu_warm),
            "plain_logins_floor": cpu_json(&point.cpu_logins_floor),
        },
        "hbdeploy_cold_s": point.cold.to_json(),
        "hbdeploy_cold_no_magic_rollback_s": point.cold_no_magic.to_json(),
        "hbdeploy_warm_s": point.warm.to_json(),
        "hbdeploy_cold_parallel_10_s": point.cold_parallel_10.to_json(),
        "plain_parallel_s": point.plain_parallel.to_json(),
        "plain_sequential_s": point.plain_sequential.to_json(),
        "nix_build_noop_s": point.build_noop.to_json(),
        "plain_logins_floor_s": point.logins_floor.to_json(),
        "paired_warm_minus_plain_logins_s": point.paired_warm_minus_logins.to_json(),
        "paired_cold_over_parallel": point.paired_parallel.to_json(),
        "paired_sequential_over_cold": point.paired_sequential.to_json(),
        "peak_rss_mib": {
            "cold": point.rss_cold.to_json(),
            "warm": point.rss_warm.to_json(),
            "cold_parallel_10": point.rss_parallel_10.to_json(),
            "warm_parallel_10": point.rss_warm_parallel_10.to_json(),
        },
        "ssh_logins_per_host": {
            "hbdeploy_cold": point.logins_cold.to_json(),
            "hbdeploy_cold_no_magic_rollback": point.logins_no_magic.to_json(),
            "hbdeploy_warm": point.logins_warm.to_json(),
            "plain": point.logins_plain.to_json(),
            "plain_logins_floor": point.logins_of_floor.to_json(),
        },
        "profile_cold_s": profile,
        "profile_cold_table": point.profile_table,
        "profile_warm_s": columns(&point.profile_warm),
        "others_cpu_share": point.others_cpu_share.to_json(),
        "load_average": { "before": point.load.0, "after": point.load.1 },
        "errors": point.errors,
    })
}

/// The whole benchmark as JSON.
pub fn json(bench: &Bench) -> Value {
    let (machine, versions) = bench.machine.to_json();
    let targets: Vec<Value> = targets(&bench.points, bench.machine.cores)
        .into_iter()
        .map(|t| json!({ "target": t.name, "met": t.met, "detail": t.detail }))
        .collect();
    json!({
        "schema": "hbdeploy-bench/2",
        "date": bench.machine.date,
        "machine": machine,
        "versions": versions,
        "config": {
            "command": command(bench),
            "hosts": bench.config.hosts,
            "runs": bench.config.runs,
            "payload_mib": bench.config.payload_mib,
            "labs": bench.config.labs.iter().map(|l| lab_name(*l)).collect::<Vec<_>>(),
            "build_included": bench.config.build_included,
            "parallel": "N: every host at once (--parallel N), and 10 (the default) where measured",
        },
        "points": bench.points.iter().map(point_json).collect::<Vec<_>>(),
        "failed": bench.failed.iter().map(|f| json!({
            "lab": lab_name(f.lab),
            "hosts": f.hosts,
            "error": f.error,
        })).collect::<Vec<_>>(),
        "targets": targets,
    })
}

/// `a ÷ b` of the medians, two decimals.
fn ratio(a: &Samples, b: &Samples) -> String {
    match (a.median(), b.median()) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}×", a / b),
        _ => "–".to_owned(),
    }
}

/// `shown`, then the ratio of the medians of `a` and `b`: "1.02 · 1.05×".
fn with_ratio(shown: &Samples, a: &Samples, b: &Samples) -> String {
    format!("{} · {}", shown.cell(2), ratio(a, b))
}

fn difference(a: &Samples, b: &Samples) -> String {
    match (a.median(), b.median()) {
        (Some(a), Some(b)) => format!("{:+.2}", round(a - b)),
        _ => "–".to_owned(),
    }
}

fn row(cells: &[String]) -> String {
    format!("| {} |\n", cells.join(" | "))
}

/// `hbdeploy · no magic rollback · plain same · plain defaults` of one CPU figure.
fn cpu_cells(p: &Point, pick: fn(&Cpu) -> &Samples) -> String {
    format!(
        "{} · {} · {} · {}",
        pick(&p.cpu_hbdeploy).cell(2),
        pick(&p.cpu_no_magic).cell(2),
        pick(&p.cpu_plain_same).cell(2),
        pick(&p.cpu_plain_defaults).cell(2)
    )
}

/// The markdown report: results, where the time goes, targets, noise.
pub fn markdown(bench: &Bench) -> String {
    let mut text = format!(
        "Machine: {}.\n\nCommand: `{}`. Each cell is the median (min–max) over the runs, in seconds \
         unless noted. hbdeploy ran with `--parallel N` (every host at once), like the plain \
         commands.\n\n",
        bench.machine.describe(),
        command(bench)
    );
    text.push_str(
        "**The deployment alone** (every contender's new closures built beforehand, untimed: \
         hbdeploy deploys them with `apply --all --systems FILE`, FILE written untimed by \
         `hbdeploy build --all --systems-out`, as the plain commands deploy the paths built \
         beforehand; *hbdeploy evaluating* is `apply --all`, which evaluates the fleet again and \
         finds everything built; the plain commands are `nix copy` + one `ssh` per host, all \
         hosts at once, with the SSH algorithms hbdeploy's russh negotiates, \
         `-o KexAlgorithms=… -o Ciphers=…`, and with OpenSSH's defaults):\n\n\
         | lab | hosts | runs | hbdeploy | hbdeploy `--no-magic-rollback` | hbdeploy evaluating \
         | hbdeploy, default `--parallel 10` | plain, same algorithms \
         | plain, OpenSSH defaults | hbdeploy ÷ plain same: per run · of medians \
         | hbdeploy ÷ plain defaults: per run | lab start (s) |\n",
    );
    text.push_str(&row(&vec!["---".to_owned(); 12]));
    for p in &bench.points {
        text.push_str(&row(&[
            lab_name(p.lab).to_owned(),
            p.hosts.to_string(),
            p.runs.to_string(),
            p.deploy_cold.cell(2),
            p.deploy_no_magic.cell(2),
            p.deploy_evaluating.cell(2),
            p.deploy_parallel_10.cell(2),
            p.deploy_plain_same.cell(2),
            p.deploy_plain_defaults.cell(2),
            with_ratio(&p.paired_deploy_same, &p.deploy_cold, &p.deploy_plain_same),
            p.paired_deploy_defaults.cell(2),
            format!("{:.1}", p.lab_start_s),
        ]));
    }
    for f in &bench.failed {
        // Every line of the error would break the table's neighbours: the JSON has it whole.
        let why: String = f
            .error
            .lines()
            .next()
            .unwrap_or_default()
            .chars()
            .take(300)
            .collect();
        text.push_str(&format!(
            "\n**Not measured: {} {} hosts.** {}\n",
            f.hosts,
            lab_name(f.lab),
            why
        ));
    }
    text.push_str(
        "\nCPU seconds per host of the deployment alone, hbdeploy · hbdeploy \
         `--no-magic-rollback` · plain with the same algorithms · plain with OpenSSH's defaults. \
         *Deployment*: the CPU time of the benchmark's process tree (the deployer, its `nix` and \
         `ssh` processes, and every lab host's sshd, nix-daemon and activation), from \
         `/proc/<pid>/stat` deltas, other sessions left out. *Machine*: the machine's busy time \
         from `/proc/stat`, other sessions included. Then hbdeploy warm (nothing changed) \
         against a no-op `nix build` of the same hosts and against the login floor: plain \
         `ssh … true` to every host at once with the same algorithms, one login per host as \
         warm hbdeploy needs to read what each host runs (a tool that logs in to every host is \
         hardly faster); *warm − logins* is per run, hbdeploy's own cost above the logins. Then \
         the CPU seconds per host (deployment) of warm · the logins, hbdeploy's own peak RSS \
         (`VmHWM`; cold (with and without magic rollback) · warm, with `--parallel N`, then · \
         cold · warm with the default `--parallel 10` where measured), and SSH logins per \
         host:\n\n\
         | lab | hosts | CPU s/host, deployment | CPU s/host, machine | hbdeploy warm \
         | `nix build` no-op | warm − no-op | plain logins (floor) | warm − logins: per run \
         | CPU s/host warm · logins | peak RSS (MiB) \
         | SSH logins/host cold · cold without magic rollback · warm · plain · logins |\n",
    );
    text.push_str(&row(&vec!["---".to_owned(); 12]));
    for p in &bench.points {
        let mut rss = format!("{} · {}", p.rss_cold.cell(1), p.rss_warm.cell(1));
        if !p.rss_parallel_10.0.is_empty() || !p.rss_warm_parallel_10.0.is_empty() {
            rss.push_str(&format!(
                "; `--parallel 10`: {} · {}",
                p.rss_parallel_10.cell(1),
                p.rss_warm_parallel_10.cell(1)
            ));
        }
        text.push_str(&row(&[
            lab_name(p.lab).to_owned(),
            p.hosts.to_string(),
            cpu_cells(p, |c| &c.tree),
            cpu_cells(p, |c| &c.machine),
            p.warm.cell(2),
            p.build_noop.cell(2),
            difference(&p.warm, &p.build_noop),
            p.logins_floor.cell(2),
            p.paired_warm_minus_logins.cell(2),
            format!(
                "{} · {}",
                p.cpu_warm.tree.cell(2),
                p.cpu_logins_floor.tree.cell(2)
            ),
            rss,
            format!(
                "{} · {} · {} · {} · {}",
                p.logins_cold.cell(1),
                p.logins_no_magic.cell(1),
                p.logins_warm.cell(1),
                p.logins_plain.cell(1),
                p.logins_of_floor.cell(1)
            ),
        ]));
    }

    if bench.config.build_included {
        text.push_str(
            "\n**Build included** (issue 9's figures: the new closures are built inside the timed \
             run, serially, by both sides):\n\n\
             | lab | hosts | hbdeploy cold | plain parallel | plain sequential \
             | cold ÷ parallel: per run · of medians | sequential ÷ cold: per run · of medians \
             | cold, `--no-magic-rollback` · ÷ parallel | cold, `--parallel 10` |\n",
        );
        text.push_str(&row(&vec!["---".to_owned(); 9]));
        for p in &bench.points {
            text.push_str(&row(&[
                lab_name(p.lab).to_owned(),
                p.hosts.to_string(),
                p.cold.cell(2),
                p.plain_parallel.cell(2),
                p.plain_sequential.cell(2),
                with_ratio(&p.paired_parallel, &p.cold, &p.plain_parallel),
                with_ratio(&p.paired_sequential, &p.plain_sequential, &p.cold),
                with_ratio(&p.cold_no_magic, &p.cold_no_magic, &p.plain_parallel),
                p.cold_parallel_10.cell(2),
            ]));
        }
    }

    text.push_str(
        "\nWhere the deployment's time goes (hbdeploy's `--timings` of the deployment alone: per \
         run the median over hosts, then the median over runs; BUILD is the host's evaluation \
         and its no-op build, CONNECT what is left of the host's connection once its system is \
         built (it is made meanwhile), OTHER is waiting for a parallel slot and reading the \
         host's state):\n\n",
    );
    text.push_str(&profile_table(&bench.points, |p| &p.profile));
    text.push_str(
        "\nWhere a warm apply's time goes (every host unchanged; the same medians; CONNECT is \
         what is left of the one SSH connection, OTHER the lock with the state read under \
         it):\n\n",
    );
    text.push_str(&profile_table(&bench.points, |p| &p.profile_warm));

    text.push_str("\nTargets:\n\n| target | result | figures |\n| --- | --- | --- |\n");
    for t in targets(&bench.points, bench.machine.cores) {
        let verdict = match t.met {
            Some(true) => "met",
            Some(false) => "**missed**",
            None => "not measured",
        };
        text.push_str(&row(&[t.name, verdict.to_owned(), t.detail]));
    }

    text.push_str(
        "\nNoise: the share of the machine's CPU (all cores) that processes outside the benchmark \
         used during each measurement, and the 1-minute load average before and after each \
         point:\n\n",
    );
    text.push_str(
        "| lab | hosts | CPU taken by others | load before | load after | failed runs |\n\
         | --- | --- | --- | --- | --- | --- |\n",
    );
    for p in &bench.points {
        let load = |l: Option<f64>| l.map_or("–".to_owned(), |l| format!("{l:.2}"));
        let share = Samples(p.others_cpu_share.0.iter().map(|s| s * 100.0).collect());
        text.push_str(&row(&[
            lab_name(p.lab).to_owned(),
            p.hosts.to_string(),
            format!("{} %", share.cell(0)),
            load(p.load.0),
            load(p.load.1),
            if p.errors.is_empty() {
                "0".to_owned()
            } else {
                // The JSON has every error in full; the table gets the last line of the first.
                let first = p.errors[0].lines().rfind(|l| !l.trim().is_empty());
                let first: String = first.unwrap_or_default().chars().take(160).collect();
                format!("{} (first: {})", p.errors.len(), first.replace('|', "\\|"))
            },
        ]));
    }
    text
}

/// A `--timings` table: a row per point, its columns' medians from `profile`.
fn profile_table(points: &[Point], profile: impl Fn(&Point) -> &Vec<Samples>) -> String {
    let mut header = vec!["lab".to_owned(), "hosts".to_owned()];
    header.extend(COLUMNS.iter().map(|c| c.to_lowercase()));
    let mut text = row(&header);
    text.push_str(&row(&vec!["---".to_owned(); header.len()]));
    for p in points {
        let mut cells = vec![lab_name(p.lab).to_owned(), p.hosts.to_string()];
        cells.extend(profile(p).iter().map(|s| s.cell(2)));
        text.push_str(&row(&cells));
    }
    text
}
