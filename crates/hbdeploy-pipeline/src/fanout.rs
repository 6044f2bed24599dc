//! Running one task per host, at most `parallel` at a time, with results in host order.

use std::future::Future;
use std::num::NonZeroUsize;
use std::sync::Arc;

use std::time::Instant;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::HostPlan;
use crate::event::{EventSender, Stage};
use crate::report::{HostReport, Report};

/// Runs `work` for every host (or per-host item), at most `parallel` at once. The result for a
/// host whose task panicked is `None`; callers turn it into an explicit failure, never a gap.
pub(crate) async fn each_host<T, F, Fut, R>(
    hosts: Vec<T>,
    parallel: NonZeroUsize,
    work: F,
) -> Vec<(T, Option<R>)>
where
    T: Clone,
    F: Fn(T) -> Fut,
    Fut: Future<Output = R> + Send + 'static,
    R: Send + 'static,
{
    let permits = Arc::new(Semaphore::new(parallel.get()));
    let mut tasks = JoinSet::new();
    for (index, plan) in hosts.iter().enumerate() {
        let job = work(plan.clone());
        let permits = Arc::clone(&permits);
        tasks.spawn(async move {
            // The semaphore is never closed, so acquiring only waits; if it ever failed, running
            // the host without a permit is safer than not running it.
            let _permit = permits.acquire_owned().await.ok();
            (index, job.await)
        });
    }
    let mut results: Vec<Option<R>> = hosts.iter().map(|_| None).collect();
    while let Some(joined) = tasks.join_next().await {
        if let Ok((index, result)) = joined
            && let Some(slot) = results.get_mut(index)
        {
            *slot = Some(result);
        }
    }
    hosts.into_iter().zip(results).collect()
}

/// [`each_host`] for the commands whose result is a [`Report`] (rollback, reboot): `work` gets
/// each host's plan and the run's start, and a host whose task was lost is reported failed at
/// `stage`, never left out.
pub(crate) async fn report_each<F, Fut>(
    hosts: Vec<HostPlan>,
    parallel: NonZeroUsize,
    (events, stage): (&EventSender, Stage),
    work: F,
) -> Report
where
    F: Fn(HostPlan, Instant) -> Fut,
    Fut: Future<Output = HostReport> + Send + 'static,
{
    let start = Instant::now();
    let results = each_host(hosts, parallel, |plan| work(plan, start)).await;
    let hosts = results
        .into_iter()
        .map(|(plan, report)| {
            report.unwrap_or_else(|| events.lost(&plan.name, stage, start.elapsed()))
        })
        .collect();
    Report {
        hosts,
        build_time: std::time::Duration::ZERO,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::HostPlan;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    pub(crate) fn plan(name: &str) -> HostPlan {
        HostPlan {
            name: name.to_owned(),
            attr: name.to_owned(),
            target: hbdeploy_ssh::Target {
                address: "127.0.0.1".to_owned(),
                port: 22,
                user: "root".to_owned(),
                identity_file: None,
                known_hosts: "/dev/null".into(),
                pinned_keys: Vec::new(),
                accept_new: false,
                jump: None,
                connect_timeout: Duration::from_secs(1),
                escalation: None,
                keepalive: None,
                compress: false,
            },
            safety: crate::HostSafety::default(),
            health: Vec::new(),
            transfer: crate::HostTransfer::default(),
            system: None,
            secrets: Vec::new(),
            wave: 0,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn results_keep_host_order_and_parallelism_is_bounded() {
        let running = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let hosts = ["a", "b", "c", "d", "e"].map(plan).to_vec();
        let results = each_host(hosts, NonZeroUsize::MIN.saturating_add(1), |plan| {
            let running = Arc::clone(&running);
            let peak = Arc::clone(&peak);
            async move {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                // Later hosts finish first, so completion order differs from host order.
                let delay = 10 - plan.name.len() as u64 * (plan.name.as_bytes()[0] - b'a') as u64;
                tokio::time::sleep(Duration::from_millis(delay)).await;
                running.fetch_sub(1, Ordering::SeqCst);
                plan.name.to_uppercase()
            }
        })
        .await;
        let names: Vec<(String, Option<String>)> =
            results.into_iter().map(|(p, r)| (p.name, r)).collect();
        assert_eq!(
            names,
            ["a", "b", "c", "d", "e"].map(|n| (n.to_owned(), Some(n.to_uppercase())))
        );
        assert_eq!(peak.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_panicking_task_leaves_none() {
        let results = each_host(
            vec![plan("ok"), plan("boom")],
            NonZeroUsize::MIN,
            |plan| async move {
                assert_ne!(plan.name, "boom", "deliberate panic");
                1
            },
        )
        .await;
        assert_eq!(results[0].1, Some(1));
        assert_eq!(results[1].1, None);
    }

    #[tokio::test]
    async fn a_lost_task_is_a_failed_host_in_the_report_in_its_place() {
        let (events, _received) = EventSender::channel();
        let hosts = vec![plan("boom"), plan("ok")];
        let report = report_each(
            hosts,
            NonZeroUsize::MIN,
            (&events, Stage::Reboot),
            |plan, _| async move {
                assert_ne!(plan.name, "boom", "deliberate panic");
                HostReport::new(&plan.name, Stage::Reboot)
            },
        )
        .await;
        let hosts: Vec<&str> = report.hosts.iter().map(|h| h.host.as_str()).collect();
        assert_eq!(hosts, ["boom", "ok"]);
        assert!(
            matches!(
                (&report.hosts[0].outcome, report.hosts[0].stage),
                (
                    crate::Outcome::Failed(crate::HostError::TaskLost),
                    Stage::Reboot
                )
            ),
            "{:?}",
            report.hosts[0]
        );
    }
}
