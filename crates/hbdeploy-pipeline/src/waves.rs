//! Rolling waves: which hosts are deployed together, in which order. Canary hosts first, as a
//! wave of their own; then hosts by their fleet.toml `wave` number; each wave cut into batches of
//! at most `batch` hosts. A wave starts only when every host of the previous ones succeeded.

use std::collections::BTreeMap;
use std::num::NonZeroUsize;

use crate::HostPlan;

/// The waves, as indices into `hosts`, in the order they run.
pub(crate) fn plan_waves(
    hosts: &[HostPlan],
    canary: &[String],
    batch: Option<NonZeroUsize>,
) -> Vec<Vec<usize>> {
    let is_canary = |plan: &HostPlan| canary.contains(&plan.name);
    let mut groups: Vec<Vec<usize>> = Vec::new();
    let canaries: Vec<usize> = (0..hosts.len()).filter(|&i| is_canary(&hosts[i])).collect();
    if !canaries.is_empty() {
        groups.push(canaries);
    }
    let mut by_wave: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
    for (index, plan) in hosts.iter().enumerate() {
        if !is_canary(plan) {
            by_wave.entry(plan.wave).or_default().push(index);
        }
    }
    groups.extend(by_wave.into_values());
    match batch {
        None => groups,
        Some(size) => groups
            .into_iter()
            .flat_map(|group| {
                group
                    .chunks(size.get())
                    .map(<[usize]>::to_vec)
                    .collect::<Vec<_>>()
            })
            .collect(),
    }
}

/// Holds each host back until every wave before its own has ended, and says whether they all
/// succeeded. Hosts report their end with [`Gate::ended`] (a task that panicked counts as failed:
/// see `deploy::Ending`).
#[derive(Debug)]
pub(crate) struct Gate {
    /// Each host's wave, by index into the hosts.
    wave_of: Vec<usize>,
    state: std::sync::Mutex<GateState>,
    changed: tokio::sync::Notify,
}

#[derive(Debug)]
struct GateState {
    /// Per wave, its hosts that have not ended yet.
    left: Vec<usize>,
    /// Per wave, whether one of its hosts did not succeed.
    failed: Vec<bool>,
}

impl Gate {
    /// A gate for `hosts` hosts run in `waves` (as [`plan_waves`] makes them).
    pub(crate) fn new(hosts: usize, waves: &[Vec<usize>]) -> Gate {
        let mut wave_of = vec![0; hosts];
        for (wave, members) in waves.iter().enumerate() {
            for &host in members {
                if let Some(slot) = wave_of.get_mut(host) {
                    *slot = wave;
                }
            }
        }
        Gate {
            wave_of,
            state: std::sync::Mutex::new(GateState {
                left: waves.iter().map(Vec::len).collect(),
                failed: vec![false; waves.len()],
            }),
            changed: tokio::sync::Notify::new(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, GateState> {
        // The state is two counters; a panic elsewhere cannot leave them half-written.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether `host` is in the first wave (it waits for no other host).
    pub(crate) fn first_wave(&self, host: usize) -> bool {
        self.wave_of.get(host) == Some(&0)
    }

    /// Waits until every wave before `host`'s has ended: `true` if all their hosts succeeded.
    pub(crate) async fn wait(&self, host: usize) -> bool {
        let wave = self.wave_of.get(host).copied().unwrap_or(0);
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let state = self.state();
                if state.left.iter().take(wave).all(|left| *left == 0) {
                    return !state.failed.iter().take(wave).any(|failed| *failed);
                }
            }
            notified.await;
        }
    }

    /// `host` has ended, successfully or not.
    pub(crate) fn ended(&self, host: usize, succeeded: bool) {
        let wave = self.wave_of.get(host).copied().unwrap_or(0);
        {
            let mut state = self.state();
            if let Some(left) = state.left.get_mut(wave) {
                *left = left.saturating_sub(1);
            }
            if !succeeded && let Some(failed) = state.failed.get_mut(wave) {
                *failed = true;
            }
        }
        self.changed.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(waves: &[(&str, u32)]) -> Vec<HostPlan> {
        waves
            .iter()
            .map(|(name, wave)| HostPlan {
                wave: *wave,
                ..crate::fanout::tests::plan(name)
            })
            .collect()
    }

    fn check(plan: &[(&str, u32)], canary: &[&str], batch: Option<usize>, expected: &[&[&str]]) {
        let hosts = hosts(plan);
        let canary: Vec<String> = canary.iter().map(|c| (*c).to_owned()).collect();
        let waves = plan_waves(&hosts, &canary, batch.and_then(NonZeroUsize::new));
        let names: Vec<Vec<&str>> = waves
            .iter()
            .map(|w| w.iter().map(|&i| hosts[i].name.as_str()).collect())
            .collect();
        let expected: Vec<Vec<&str>> = expected.iter().map(|w| w.to_vec()).collect();
        assert_eq!(names, expected);
    }

    #[test]
    fn one_wave_by_default() {
        check(
            &[("a", 0), ("b", 0), ("c", 0)],
            &[],
            None,
            &[&["a", "b", "c"]],
        );
    }

    #[test]
    fn canaries_first_then_fleet_waves_in_order() {
        check(
            &[("a", 1), ("b", 0), ("c", 2), ("d", 0)],
            &["c"],
            None,
            &[&["c"], &["b", "d"], &["a"]],
        );
    }

    #[test]
    fn batches_cut_every_wave() {
        check(
            &[("a", 0), ("b", 0), ("c", 0), ("d", 1)],
            &["a"],
            Some(1),
            &[&["a"], &["b"], &["c"], &["d"]],
        );
        check(
            &[("a", 0), ("b", 0), ("c", 0)],
            &[],
            Some(2),
            &[&["a", "b"], &["c"]],
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_wave_waits_for_the_earlier_ones_and_learns_whether_they_failed() {
        // Hosts 0 and 1 are wave 0, host 2 wave 1, host 3 wave 2.
        let gate = std::sync::Arc::new(Gate::new(4, &[vec![0, 1], vec![2], vec![3]]));
        assert!(gate.wait(0).await, "the first wave starts at once");
        let waiting = {
            let gate = std::sync::Arc::clone(&gate);
            tokio::spawn(async move { gate.wait(2).await })
        };
        gate.ended(0, true);
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        assert!(
            !waiting.is_finished(),
            "host 1 of the first wave has not ended"
        );
        gate.ended(1, true);
        assert!(
            waiting.await.expect("joined"),
            "every earlier host succeeded"
        );
        gate.ended(2, false);
        assert!(!gate.wait(3).await, "wave 1 failed, so wave 2 is skipped");
    }
}
