//! The benchmark harness of issues 9 and 16, end to end on the smallest sweep (one namespace
//! host, one run, a 1 MiB payload): it measures every variant and reports the documented JSON keys. Durations
//! are never asserted; SSH login counts are, since they are counts, not timings.

use hbdeploy_lab::bench::{self, Config, JSON_KEYS, POINT_KEYS};

use crate::support::HBDEPLOY;

#[test]
fn the_smallest_sweep_reports_every_documented_key() {
    let config = Config {
        hosts: vec![1],
        runs: 1,
        payload_mib: 1,
        hbdeploy: HBDEPLOY.into(),
        default_parallel: false,
        labs: vec![hbdeploy_lab::HostKind::Namespace],
        build_included: true,
    };
    let mut lines = Vec::new();
    let result = bench::run(&config, &mut |line: &str| lines.push(line.to_owned()));
    assert!(
        result.failed.is_empty(),
        "the bench runs (needs root, nix, sshd): {:?}",
        result.failed
    );
    let json = bench::json(&result);
    assert_eq!(json["failed"], serde_json::json!([]), "{json:#}");
    for key in JSON_KEYS {
        assert!(json.get(key).is_some(), "no {key} in {json:#}");
    }
    let point = &json["points"][0];
    for key in POINT_KEYS {
        assert!(point.get(key).is_some(), "no {key} in {point:#}");
    }
    assert_eq!(point["errors"], serde_json::json!([]), "{point:#}");
    for measured in [
        "deploy_hbdeploy_cold_s",
        "deploy_hbdeploy_cold_no_magic_rollback_s",
        "deploy_hbdeploy_cold_evaluating_s",
        "deploy_plain_same_algorithms_s",
        "deploy_plain_openssh_defaults_s",
        "hbdeploy_cold_s",
        "hbdeploy_warm_s",
        "plain_parallel_s",
        "plain_sequential_s",
        "nix_build_noop_s",
        "plain_logins_floor_s",
        "paired_warm_minus_plain_logins_s",
    ] {
        assert!(
            point[measured]["median"].is_number(),
            "{measured}: {point:#}"
        );
    }
    assert!(
        point["peak_rss_mib"]["cold"]["median"].is_number(),
        "{point:#}"
    );
    // Cold: one russh connection (which `nix copy` rides), and the new connection that
    // confirms the activation (magic rollback is armed: every cold run has a previous
    // generation). Warm: one connection. Plain: `nix copy` + ssh.
    let logins = &point["ssh_logins_per_host"];
    assert_eq!(logins["hbdeploy_cold"]["median"], 2.0, "{point:#}");
    // Without magic rollback there is no confirmation connection: one login in all.
    assert_eq!(
        logins["hbdeploy_cold_no_magic_rollback"]["median"], 1.0,
        "{point:#}"
    );
    assert_eq!(logins["hbdeploy_warm"]["median"], 1.0, "{point:#}");
    assert_eq!(logins["plain"]["median"], 2.0, "{point:#}");
    // The login floor of a warm apply: one plain `ssh … true` per host.
    assert_eq!(logins["plain_logins_floor"]["median"], 1.0, "{point:#}");
    assert!(
        point["profile_cold_s"]["copy"]["median"].is_number(),
        "{point:#}"
    );
    // A warm apply connects (one login) and copies nothing.
    assert!(
        point["profile_warm_s"]["connect"]["median"].is_number(),
        "{point:#}"
    );
    assert!(
        point["profile_warm_s"]["copy"]["median"].is_null(),
        "{point:#}"
    );
    let cpu = &point["cpu_s_per_host"];
    for contender in [
        "hbdeploy_cold",
        "plain_same_algorithms",
        "hbdeploy_warm",
        "plain_logins_floor",
    ] {
        assert!(
            cpu[contender]["tree"]["median"].is_number(),
            "{contender}: {point:#}"
        );
    }
    assert!(json["targets"].is_array(), "{json:#}");

    let markdown = bench::markdown(&result);
    assert!(
        markdown.contains("| lab | hosts | runs | hbdeploy |"),
        "{markdown}"
    );
    assert!(markdown.contains("\n| namespace | 1 | 1 | "), "{markdown}");
    assert!(markdown.contains("**Build included**"), "{markdown}");
    assert!(markdown.contains("| plain logins (floor) |"), "{markdown}");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("plain logins to every host at once (warm floor)")),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("deployment alone, hbdeploy cold")),
        "{lines:?}"
    );
}

/// A point that cannot be measured (here: the "hbdeploy" given exits 1 at once, so the first,
/// unmeasured deployment fails) is reported with its error, and the sweep goes on with the next
/// point instead of discarding what it has measured.
#[test]
fn a_point_that_cannot_be_measured_is_reported_and_the_sweep_goes_on() {
    let config = Config {
        hosts: vec![1, 2],
        runs: 1,
        payload_mib: 1,
        hbdeploy: "/bin/false".into(),
        default_parallel: false,
        labs: vec![hbdeploy_lab::HostKind::Namespace],
        build_included: false,
    };
    let mut lines = Vec::new();
    let result = bench::run(&config, &mut |line: &str| lines.push(line.to_owned()));
    assert!(result.points.is_empty(), "{:?}", result.points);
    let failed: Vec<usize> = result.failed.iter().map(|f| f.hosts).collect();
    assert_eq!(
        failed,
        [1, 2],
        "both points were tried: {:?}",
        result.failed
    );
    for f in &result.failed {
        assert!(f.error.contains("first deployment"), "{}", f.error);
    }
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("2 namespace hosts: not measured:")),
        "{lines:?}"
    );
    let json = bench::json(&result);
    assert_eq!(json["failed"][1]["hosts"], 2, "{json:#}");
    assert_eq!(json["failed"][1]["lab"], "namespace", "{json:#}");
    let markdown = bench::markdown(&result);
    assert!(
        markdown.contains("**Not measured: 2 namespace hosts.**"),
        "{markdown}"
    );
}
