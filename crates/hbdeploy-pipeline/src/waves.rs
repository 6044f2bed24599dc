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

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(waves: &[(&str, u32)]) -> Vec<HostPlan> {
        waves
            .iter()
            .map(|(name, wave)| HostPlan {
                name: (*name).to_owned(),
                attr: (*name).to_owned(),
                target: hbdeploy_ssh::Target {
                    address: "127.0.0.1".to_owned(),
                    port: 22,
                    user: "root".to_owned(),
                    identity_file: None,
                    identities: hbdeploy_ssh::Identities::default(),
                    known_hosts: "/dev/null".into(),
                    pinned_keys: Vec::new(),
                    accept_new: false,
                    jump: None,
                    connect_timeout: std::time::Duration::from_secs(1),
                    escalation: None,
                    keepalive: None,
                    compress: false,
                },
                safety: crate::HostSafety::default(),
                health: Vec::new(),
                transfer: crate::HostTransfer::default(),
                system: None,
                secrets: Vec::new(),
                wave: *wave,
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
}
