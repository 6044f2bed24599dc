//! The JSON documents of `apply` and `rollback` (shapes in docs/json.md): one object per host
//! with every key always present, `null` when not known.

use hbdeploy_files::Hint;
use hbdeploy_pipeline::{HostReport, Outcome, Report};
use serde_json::{Value, json};

/// One host of an `apply` or `rollback` result.
pub fn host(report: &HostReport) -> Value {
    let (error, hint, tail) = match &report.outcome {
        Outcome::Failed(error) => (
            Some(hbdeploy_files::chain(error)),
            error.hint(),
            error.tail(),
        ),
        _ => (None, None, Vec::new()),
    };
    json!({
        "host": report.host,
        "outcome": report.outcome.kind(),
        "stage": report.stage.as_str(),
        "old_path": report.old_path.as_ref().map(|p| p.as_str()),
        "new_path": report.new_path.as_ref().map(|p| p.as_str()),
        "generation": report.generation,
        "copied": report.copy.map(|c| json!({ "sent": c.sent, "total": c.total })),
        "duration_secs": seconds(report.duration),
        "error": error,
        "hint": hint,
        "output_tail": tail,
        "settled": report.settled,
        "secrets": report.secrets.iter().map(|s| json!({
            "name": s.name,
            "sha256": s.sha256,
        })).collect::<Vec<_>>(),
    })
}

/// Seconds with millisecond precision, as a JSON number.
pub fn seconds(duration: std::time::Duration) -> f64 {
    (duration.as_secs_f64() * 1000.0).round() / 1000.0
}

/// The whole document: the command, the ledger's ID for this run (if it was recorded), whether
/// every host succeeded, and the hosts in selection order.
pub fn report(command: &str, deployment: Option<&str>, report: &Report) -> Value {
    json!({
        "command": command,
        "deployment": deployment,
        "succeeded": report.all_succeeded(),
        "hosts": report.hosts.iter().map(host).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use hbdeploy_pipeline::{HostError, Stage};

    #[test]
    fn every_key_is_present_for_a_failed_and_a_succeeded_host() {
        let ok = HostReport::new("a", Stage::Activate);
        let failed = HostReport::failed(
            "b",
            Stage::Activate,
            HostError::NoEarlierGeneration { current: Some(1) },
            std::time::Duration::from_millis(1234),
        );
        let doc = report(
            "rollback",
            Some("x"),
            &Report {
                hosts: vec![ok, failed],
                ..Report::default()
            },
        );
        assert_eq!(doc["succeeded"], false);
        let keys = |v: &Value| v.as_object().map(|o| o.len()).unwrap_or(0);
        assert_eq!(keys(&doc["hosts"][0]), keys(&doc["hosts"][1]));
        assert_eq!(doc["hosts"][0]["outcome"], "succeeded");
        assert_eq!(doc["hosts"][1]["outcome"], "failed");
        assert_eq!(doc["hosts"][1]["duration_secs"], 1.234);
        assert!(
            doc["hosts"][1]["error"]
                .as_str()
                .is_some_and(|e| e.contains("no generation before generation 1"))
        );
    }
}
